"""What a media source looks like to the core (VOD files, pulled streams, ...).

A plugin answering ``media_source_for_uri`` returns a ``MediaSource``. The core opens
it when a player asks for the URI (or REST starts it), relays its tracks to players,
recorders and pushes exactly as it relays a WebRTC publisher's, and closes it once.
``FileSource`` reads a media file (``hookcast.media.reader``); ``Unavailable`` is a
source that fails with the ``info`` the player should see.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from hookcast.config.home import UnsafePath, visible_inside
from hookcast.media.reader import (
    FILE_NOT_FOUND_INFO,
    WRONG_FORMAT_INFO,
    FileInfo,
    FileReading,
    WrongFormat,
    inspect_file,
)

FILE_NOT_FOUND = FILE_NOT_FOUND_INFO
WRONG_FORMAT = WRONG_FORMAT_INFO


class SourceUnavailable(Exception):
    """The source cannot be opened; ``info`` is what the player sees (FAILED)."""

    def __init__(self, info: str, detail: str = "") -> None:
        super().__init__(f"{info}: {detail}" if detail else info)
        self.info = info


@runtime_checkable
class SourceTrack(Protocol):
    """One track of a ``MediaSource``: everything the core reads of it.

    ``kind``: ``"audio"`` or ``"video"``. ``mime``: its codec, ``video/H264``,
    ``video/VP8``, ``audio/opus``, ``audio/PCMU`` or ``audio/PCMA`` (what WebRTC players
    take; the core never transcodes a track). ``keyframes_on_request``: True when
    ``request_keyframe()`` makes the source send a keyframe soon (a live or pulled
    stream): the core asks when a player joins or frames were lost; False (a file): the
    core keeps the last group of pictures for joiners instead.

    ``recv()`` returns the next frame when it is due (the core sends what it gets at once),
    as an ``av.Packet`` holding one encoded frame with ``pts`` in the codec's clock
    (1/90000 video, 1/48000 Opus, 1/8000 G.711), ``hookcast.make_frame`` builds it; it
    raises ``MediaStreamError`` at the end. ``request_keyframe()`` may be a coroutine
    function; requests are coalesced by the core (at most one in flight).
    """

    kind: str
    mime: str
    keyframes_on_request: bool

    async def recv(self) -> Any: ...

    def request_keyframe(self) -> Awaitable[None] | None: ...


@runtime_checkable
class MediaSource(Protocol):
    """A source of encoded media that is not a WebRTC publisher: everything the core
    reads of it.

    ``uri``: what it was asked for. ``shared``: True when every player of the name joins
    one reading (``vod-live://``), False when each player gets its own from the start
    (``vod://``). ``loop``: whether it starts again at its end (listed by ``/vod/*``).
    ``failure``: once its tracks have ended, why, when it was not simply their end
    (``File not found``, ``File has wrong format``: the player or stream ends with it);
    "" otherwise. ``open`` returns the tracks (``SourceTrack``: at most one per kind) or
    raises SourceUnavailable; ``start`` begins the reading (the core calls it when the
    first viewer is ready); ``close`` releases what ``open`` acquired. The core calls
    each once, ``open`` off nothing but the event loop (do blocking work in a thread).
    """

    uri: str
    shared: bool
    loop: bool

    @property
    def failure(self) -> str: ...

    async def open(self) -> Sequence[SourceTrack]: ...

    def start(self) -> None: ...

    async def close(self) -> None: ...


def missing_members(source: object) -> list[str]:
    """What ``source`` lacks of the MediaSource protocol ([] when nothing)."""
    names = ("uri", "shared", "loop", "failure", "open", "start", "close")
    return [name for name in names if not hasattr(source, name)]


class FileSource:
    """The file ``name`` of ``folder`` read in real time: MP4 (H.264, AAC) or WebM/MKV
    (VP8, Opus). A name that leads out of ``folder`` (``..``, an absolute path, a
    symlink out, NUL) or to a hidden file of it (a name or a symlink target starting
    with ``.``) is ``File not found``: nothing outside is ever opened."""

    def __init__(self, uri: str, folder: Path, name: str, shared: bool,
                 loop: bool = False) -> None:
        self.uri = uri
        self.folder = folder
        self.name = name
        self.shared = shared
        self.loop = loop
        self.reading: FileReading | None = None

    def _inspect(self) -> FileInfo:
        try:
            path = visible_inside(self.folder, self.name)
            return inspect_file(path)
        except WrongFormat as error:
            raise SourceUnavailable(WRONG_FORMAT, str(error)) from None
        except (UnsafePath, OSError, RuntimeError, ValueError) as error:
            # missing, outside, a symlink loop, a name too long for the file system
            raise SourceUnavailable(FILE_NOT_FOUND, type(error).__name__) from None

    async def open(self) -> Sequence[SourceTrack]:
        info = await asyncio.to_thread(self._inspect)
        self.reading = FileReading(info, self.loop, name=self.uri)
        return list(self.reading.tracks.values())

    def start(self) -> None:
        if self.reading is not None:
            self.reading.start()

    @property
    def failure(self) -> str:
        """Why the reading ended before the end of the file ("" if it did not)."""
        return self.reading.failure if self.reading is not None else ""

    async def close(self) -> None:
        if self.reading is not None:
            await self.reading.close()


class Unavailable:
    """A source that fails to open with ``info`` (a name outside media/, a bad URI)."""

    shared = False
    loop = False
    failure = ""

    def __init__(self, uri: str, info: str = FILE_NOT_FOUND, detail: str = "") -> None:
        self.uri = uri
        self.info = info
        self.detail = detail

    async def open(self) -> Sequence[SourceTrack]:
        raise SourceUnavailable(self.info, self.detail)

    def start(self) -> None:
        pass

    async def close(self) -> None:
        pass
