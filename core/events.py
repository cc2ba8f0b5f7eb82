"""The immutable objects hooks receive and return.

Plugins never see live internals: the core hands them frozen snapshots (a session,
a stream, a recording) taken when the event happened, and plugins answer with the
small result objects at the end of this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hookcast.config.settings import Settings
    from hookcast.engine.hosted import MediaCore


def freeze(value: Any) -> Any:
    """A read-only deep copy of JSON-like data: dicts become mappingproxies, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """The JSON-serialisable (mutable) copy of frozen data."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    return value


_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class ServerInfo:
    """The running server, as plugins see it. ``media`` is the media core plugins may
    drive (``hookcast.MediaCore``: publish a source, feed a sink, stop a stream)."""

    version: str
    home: Path
    settings: Settings
    ws_port: int
    http_port: int
    started_at: float
    media: MediaCore | None = None
    #: a worker of ``hookcast serve --workers N`` also listens on loopback ports of its
    #: own (the public ones are shared by every worker): what other nodes call it on
    internal_ws_port: int = 0
    internal_http_port: int = 0
    #: which worker of ``hookcast serve --workers N`` this process is (0..N-1); None
    #: when it runs alone
    worker: int | None = None


@dataclass(frozen=True)
class SessionInfo:
    """One signalling WebSocket session.

    ``client`` holds what the client sent in its ``connection`` message (appKey,
    clientVersion, authToken, custom, ...), read-only.
    """

    session_id: str
    app_key: str
    status: str
    remote: str
    client: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    #: the cluster node this session is, when it is another hookcast node (its
    #: ``connection`` carried a credential signed with ``cluster_secret``); empty for
    #: clients. Hooks meant for users (REST hooks, stream scripts) skip such sessions.
    node: str = ""

    @property
    def custom(self) -> Mapping[str, Any]:
        value = self.client.get("custom")
        return value if isinstance(value, Mapping) else _EMPTY


@dataclass(frozen=True)
class StreamInfo:
    """One published or played stream, with the fields WCS reports for it."""

    media_session_id: str
    name: str
    published: bool
    status: str
    session_id: str
    app_key: str
    info: str = ""
    has_audio: bool = True
    has_video: bool = True
    record: bool = False
    record_name: str = ""
    audio_codec: str = ""
    video_codec: str = ""
    width: int = 0
    height: int = 0
    create_date: int = 0
    custom: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    #: the client's SDP offer (sent to REST hooks as WCS does; never to clients)
    sdp: str = ""
    #: the cluster node behind this stream: a node's session (``SessionInfo.node``), or
    #: this node's own copy of a stream another node publishes (an edge copy); empty for
    #: the streams of clients. Hooks meant for users skip such streams.
    node: str = ""

    def to_wcs(self, *, with_sdp: bool = False) -> dict[str, Any]:
        """The stream object as WCS sends it to clients, hooks and REST callers."""
        wcs: dict[str, Any] = {
            "mediaSessionId": self.media_session_id,
            "name": self.name,
            "published": self.published,
            "status": self.status,
            "info": self.info,
            "sessionId": self.session_id,
            "appKey": self.app_key,
            "hasAudio": self.has_audio,
            "hasVideo": self.has_video,
            "record": self.record,
            "audioCodec": self.audio_codec,
            "videoCodec": self.video_codec,
            "width": self.width,
            "height": self.height,
            "createDate": self.create_date,
            "mediaProvider": "WebRTC",
            "mediaType": "publish" if self.published else "play",
            "custom": thaw(self.custom),
        }
        if self.record_name:
            wcs["recordName"] = self.record_name
        if with_sdp and self.sdp:
            wcs["sdp"] = self.sdp
        return wcs


@dataclass(frozen=True)
class RecordingInfo:
    """One recording file (a part, when rotation is on).

    ``started_at``/``finished_at`` are Unix times; ``duration`` is seconds of media in
    the file; ``size`` its bytes once finished. ``recovered`` is True for a file the
    server found cut short at start (a crash) and made final; ``error`` says why a
    recording ended early (disk full, records/ not writable), else it is empty.
    """

    stream: StreamInfo
    path: Path
    part: int
    started_at: float
    finished_at: float | None = None
    size: int = 0
    duration: float = 0.0
    video_codec: str = ""
    audio_codec: str = ""
    recovered: bool = False
    error: str = ""

    @property
    def file_name(self) -> str:
        return self.path.name


# --- what plugins return ------------------------------------------------------------


@dataclass(frozen=True)
class Refuse:
    """Returned by an admit hook to refuse; ``reason`` is what the client sees."""

    reason: str


@dataclass(frozen=True)
class Amend:
    """Returned by an admit hook to admit with changed fields (e.g. ``{"name": "x"}``)."""

    fields: Mapping[str, Any]

    def __init__(self, fields: Mapping[str, Any] | None = None, **more: Any) -> None:
        object.__setattr__(self, "fields", freeze({**(fields or {}), **more}))


@dataclass(frozen=True)
class Verdict:
    """The outcome of an admit hook over every plugin."""

    admitted: bool
    reason: str = ""
    fields: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True)
class Terminate:
    """Returned by ``on_stream_keep_alive`` to end the stream; ``reason`` is its info."""

    reason: str = "Terminated by keep-alive"
