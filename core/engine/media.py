"""What a media source looks like to the core (VOD files, pulled streams, ...)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from aiortc.mediastreams import MediaStreamTrack


@runtime_checkable
class MediaSource(Protocol):
    """A source of encoded media that is not a WebRTC publisher.

    ``open`` returns the tracks (yielding ``av.Packet`` from ``recv()``), ``close``
    releases whatever ``open`` acquired; both are called by the core, once each.
    """

    uri: str

    async def open(self) -> Sequence[MediaStreamTrack]: ...

    async def close(self) -> None: ...
