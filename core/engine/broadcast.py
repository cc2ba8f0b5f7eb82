"""A broadcast: one source of encoded media and the sinks it feeds.

    sources                          Broadcast                         sinks
    a WebRTC publisher's leg   ┐                                   ┌ a WebRTC player (PlayerLeg)
    a media file's reading     ├─▶  tracks by kind (PublishedTrack) ─┤ the recorder
    a stream pulled elsewhere  ┘    and their codecs                 └ a push (a Feed's leg)

A **source** offers one ``PublishedTrack`` per kind, with its codec, and is closed once
(``Source``). A **sink** takes what it needs from those tracks (each of its tracks holds
a keyframe gate, hookcast.rtc.gate) and is closed once (``Sink``); a sink that is a
stream (a player, a push) has that stream, which the engine stops the normal way, a sink
that is not (the recorder) is closed by the broadcast when the broadcast ends. "Idle" is
a broadcast without sinks. A *listed* broadcast is the one published under its name
(the router's); a private one serves a single sink (a ``vod://`` reading of one player)
and starts its source only when that sink is ready. The broadcast knows its source and
sinks only through these two interfaces; the engine creates them and the router owns
them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from hookcast.engine.streams import Stream
from hookcast.rtc.packets import FrameMeta
from hookcast.rtc.relay import PublishedTrack

log = logging.getLogger(__name__)


class Source(Protocol):
    """What feeds a broadcast: its tracks by kind, their codecs (MIME types), and what it
    holds, released by ``close`` (once)."""

    tracks: dict[str, PublishedTrack]
    codecs: dict[str, str]

    def start(self) -> None:
        """Begin producing frames (a file's reading); nothing for a live publisher."""

    async def close(self) -> None: ...

    @property
    def failure(self) -> str:
        """Why it ended before its end ("" when it did not)."""


class Sink(Protocol):
    """What a broadcast feeds. ``stream``: the stream it plays, if it is one (a player, a
    push), which ends the normal way; ``close`` releases it (once)."""

    @property
    def stream(self) -> Stream | None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Origin:
    """Where a source that is not a WebRTC publisher comes from: its URI, whether it
    loops, and whether a plugin runs it (``hosted``: a pulled stream, never stopped for
    being idle, not a VOD reading)."""

    uri: str
    loop: bool = False
    hosted: bool = False


class Broadcast:
    """One source and its sinks (see the module docstring)."""

    def __init__(self, name: str, source: Source, publisher: Stream | None,
                 listed: bool = True, origin: Origin | None = None) -> None:
        self.name = name
        self.source = source
        #: the published stream (None for a private reading: its sink's stream is all)
        self.publisher = publisher
        self.listed = listed
        self.origin = origin
        self.sinks: dict[str, Sink] = {}
        self._closed = False
        self._started = listed  # a private source waits for its sink

    @property
    def tracks(self) -> dict[str, PublishedTrack]:
        return self.source.tracks

    @property
    def codecs(self) -> dict[str, str]:
        return self.source.codecs

    @property
    def idle(self) -> bool:
        return not self.sinks

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def players(self) -> dict[str, Stream]:
        """The streams playing it (players and pushes), by mediaSessionId."""
        return {key: sink.stream for key, sink in self.sinks.items() if sink.stream is not None}

    def streams(self) -> tuple[Stream, ...]:
        """The publisher (if any) and every stream playing it."""
        own = (self.publisher,) if self.publisher is not None else ()
        return (*own, *self.players.values())

    def attach(self, key: str, sink: Sink) -> None:
        self.sinks[key] = sink

    def detach(self, key: str) -> Sink | None:
        return self.sinks.pop(key, None)

    def sink_ready(self) -> None:
        """A sink can receive now (its connection is up): a private source starts."""
        if not self._started and not self._closed:
            self._started = True
            self.source.start()

    def picture_size(self) -> tuple[int, int] | None:
        """Width and height of the last keyframe the source sent, if any."""
        video = self.tracks.get("video")
        keyframe = video.last_keyframe if video is not None else None
        meta = keyframe.opaque if keyframe is not None else None
        if isinstance(meta, FrameMeta) and meta.width and meta.height:
            return meta.width, meta.height
        return None

    async def until_ended(self) -> str:
        """Wait until every track of the source has ended; why ("" for its end)."""
        await asyncio.gather(*(track.wait_ended() for track in self.tracks.values()))
        return self.source.failure

    async def close(self) -> None:
        """End it: every sink that is not a stream (the recorder) is closed, then the
        source. Streams still attached are the caller's to stop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        others = [key for key, sink in self.sinks.items() if sink.stream is None]
        for outcome in await asyncio.gather(*(self.sinks.pop(key).close() for key in others),
                                            return_exceptions=True):
            if isinstance(outcome, Exception):
                log.error("%s: closing a sink failed", self.name, exc_info=outcome)
        await self.source.close()
