"""What the engine needs to know of a stream's client, and the rules of admission.

A client is where a stream's status events go (a signalling session, or an internal
one such as a server-to-server pull). Plugins admitting a stream may amend some of its
fields; a media leg that cannot be set up fails the stream with an ``info`` the client
can act on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from hookcast.engine.streams import Info, Stream
from hookcast.events import SessionInfo
from hookcast.rtc.peer import BadOffer, NoCommonCodecs

log = logging.getLogger(__name__)

CODEC_NAMES = {"video/VP8": "VP8", "video/H264": "H264", "audio/opus": "opus",
               "audio/PCMU": "PCMU", "audio/PCMA": "PCMA"}

#: Stream fields an admit plugin may amend, with what a valid value is.
AMENDABLE: dict[str, Callable[[Any], bool]] = {
    "name": lambda v: isinstance(v, str) and bool(v.strip()),
    "custom": lambda v: isinstance(v, dict),
    "record": lambda v: isinstance(v, bool),
    "has_audio": lambda v: isinstance(v, bool),
    "has_video": lambda v: isinstance(v, bool),
}


class Client(Protocol):
    """Where a stream's status events go (a signalling session)."""

    @property
    def info(self) -> SessionInfo: ...

    @property
    def gone(self) -> bool:
        """True once the client's connection has closed."""
        ...

    async def send(self, message: str, *data: Any) -> None: ...


def amend(stream: Stream, fields: Mapping[str, Any]) -> None:
    """Apply a plugin's amendments; a field that may not be amended, or a value of the
    wrong type, is logged and ignored."""
    for key, value in fields.items():
        check = AMENDABLE.get(key)
        if check is not None and check(value):
            setattr(stream, key, value)
        else:
            log.warning("ignoring amendment %s=%r of stream %s (not an amendable field "
                        "of the right type)", key, value, stream.name)


def setup_failure(stream: Stream, error: Exception) -> str:
    """The ``info`` of a stream whose media leg could not be set up (logged here)."""
    if isinstance(error, NoCommonCodecs):
        log.info("stream %s: no common codecs: %s", stream.name, error)
        return Info.NO_COMMON_CODECS
    if isinstance(error, BadOffer):
        return f"{Info.ERROR}: {error}"
    log.error("stream %s (%s): setting up media failed", stream.name,
              stream.media_session_id, exc_info=error)
    return Info.ERROR


def describe(stream: Stream, codecs: Mapping[str, str]) -> None:
    """Set a stream's media fields from the codecs its leg negotiated (kind -> mime)."""
    stream.has_video = "video" in codecs
    stream.has_audio = "audio" in codecs
    stream.video_codec = CODEC_NAMES.get(codecs.get("video", ""), "")
    stream.audio_codec = CODEC_NAMES.get(codecs.get("audio", ""), "")
