"""Streams and the one index of them.

A Stream is one published or played media session, with the fields WCS reports for
it. The StreamRegistry indexes every stream by ``mediaSessionId`` and every publisher
by name; find, find_all and terminate all use its filter semantics.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hookcast.events import StreamInfo, freeze


class Status(StrEnum):
    NEW = "NEW"
    PENDING = "PENDING"
    PUBLISHING = "PUBLISHING"
    PLAYING = "PLAYING"
    UNPUBLISHED = "UNPUBLISHED"
    STOPPED = "STOPPED"
    FAILED = "FAILED"


#: Statuses after which a stream is gone.
FINAL = frozenset({Status.UNPUBLISHED, Status.STOPPED, Status.FAILED})


class Info:
    """The ``info`` strings clients see, spelled exactly as the WCS Web SDK knows them."""

    ICE_ERROR = "Failed by ICE error"
    ICE_TIMEOUT = "Failed by ICE timeout"
    SESSION_DISCONNECT = "Stopped by session disconnect"
    REST_TERMINATE = "Stopped by rest /terminate"
    PUBLISHER_STOP = "Stopped by publisher stop"
    USER = "Stopped by user"
    ERROR = "Failed by error"
    NOT_FOUND = "Stream not found"
    NAME_IN_USE = "Stream name is already in use"
    ID_NULL = "MediaSessionId is null"
    ID_IN_USE = "MediaSessionId is already in use"
    NO_COMMON_CODECS = "No common codecs"
    KEEP_ALIVE = "Terminated by keep-alive"
    SHUTDOWN = "Requested stream shutdown"
    SESSION_NOT_READY = "Session not ready"


class NameInUse(Exception):
    """Another stream publishes this name."""


class IdInUse(Exception):
    """Another stream has this mediaSessionId."""


@dataclass
class Stream:
    """One stream's state; owned by the core, handed to plugins as a StreamInfo."""

    media_session_id: str
    name: str
    published: bool
    session_id: str
    app_key: str
    status: Status = Status.NEW
    info: str = ""
    has_audio: bool = True
    has_video: bool = True
    record: bool = False
    record_name: str = ""
    audio_codec: str = ""
    video_codec: str = ""
    width: int = 0
    height: int = 0
    create_date: int = field(default_factory=lambda: int(time.time() * 1000))
    custom: Mapping[str, Any] = field(default_factory=dict)
    sdp: str = field(default="", repr=False)
    #: the cluster node behind it (``StreamInfo.node``); empty for clients' streams
    node: str = ""
    #: the registry indexing this stream; every field change bumps its version
    registry: StreamRegistry | None = field(default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        registry = self.__dict__.get("registry")
        if registry is not None:
            registry.version += 1

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def snapshot(self) -> StreamInfo:
        return StreamInfo(
            media_session_id=self.media_session_id,
            name=self.name,
            published=self.published,
            status=str(self.status),
            session_id=self.session_id,
            app_key=self.app_key,
            info=self.info,
            has_audio=self.has_audio,
            has_video=self.has_video,
            record=self.record,
            record_name=self.record_name,
            audio_codec=self.audio_codec,
            video_codec=self.video_codec,
            width=self.width,
            height=self.height,
            create_date=self.create_date,
            custom=freeze(self.custom),
            sdp=self.sdp,
            node=self.node,
        )

    def to_wcs(self) -> dict[str, Any]:
        """The stream object as WCS sends it to clients and REST callers (no SDP)."""
        return self.snapshot().to_wcs()


class StreamRegistry:
    """Every live stream by mediaSessionId, and every publisher by name."""

    def __init__(self) -> None:
        self._by_id: dict[str, Stream] = {}
        self._publishers: dict[str, Stream] = {}
        #: bumped on every change to the set of streams or to any of their fields
        self.version = 0
        self._json: tuple[int, bytes] = (-1, b"")

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Stream]:
        return iter(list(self._by_id.values()))

    def add(self, stream: Stream) -> None:
        """Index a stream; raises IdInUse or NameInUse and indexes nothing."""
        if stream.media_session_id in self._by_id:
            raise IdInUse(stream.media_session_id)
        if stream.published and stream.name in self._publishers:
            raise NameInUse(stream.name)
        self._by_id[stream.media_session_id] = stream
        if stream.published:
            self._publishers[stream.name] = stream
        stream.registry = self

    def remove(self, stream: Stream) -> None:
        if self._by_id.get(stream.media_session_id) is stream:
            del self._by_id[stream.media_session_id]
        if stream.published and self._publishers.get(stream.name) is stream:
            del self._publishers[stream.name]
        if stream.registry is self:
            stream.registry = None
            self.version += 1

    def wcs_json(self) -> bytes:
        """Every stream as a JSON array of WCS objects; cached until anything changes,
        so a dashboard polling find_all costs one serialisation per change."""
        version, body = self._json
        if version != self.version:
            body = json.dumps([s.to_wcs() for s in self._by_id.values()],
                              separators=(",", ":")).encode()
            self._json = (self.version, body)
        return body

    def get(self, media_session_id: str) -> Stream | None:
        return self._by_id.get(media_session_id)

    def publisher(self, name: str) -> Stream | None:
        return self._publishers.get(name)

    def players_of(self, name: str) -> list[Stream]:
        return [s for s in self._by_id.values() if not s.published and s.name == name]

    def find(self, **filters: Any) -> list[Stream]:
        """Streams matching every given filter (AND); ``media_session_ids`` is a list.

        Filters: media_session_id, media_session_ids, name, published, status,
        has_audio, has_video, session_id. No filters: every stream.
        """
        ids = filters.pop("media_session_ids", None)
        candidates = (
            [s for i in ids if (s := self._by_id.get(i)) is not None]
            if ids is not None
            else list(self._by_id.values())
        )
        return [s for s in candidates if _matches(s, filters)]


def _matches(stream: Stream, filters: Mapping[str, Any]) -> bool:
    return all(getattr(stream, key) == value for key, value in filters.items())


def stream_name_problem(name: str, longest: int) -> str | None:
    """What keeps ``name`` from being the name a server gives a stream it publishes
    itself (a VOD reading, a pulled stream), or None."""
    if "\x00" in name:
        return "must not contain a NUL character"
    if len(name) > longest:
        return f"{len(name)} characters exceeds the limit of {longest} (max_stream_name_length)"
    if "://" in name:
        return "must not hold :// (players would take it for a source URI)"
    if not name.strip():
        return "must not be blank"
    return None
