"""Broadcasts whose source is not a WebRTC publisher: media files (``vod://``,
``vod-live://``) and, next, streams pulled from other servers.

A player asking for a name that is a URI, with no broadcast of that name, makes the
engine ask the ``media_source_for_uri`` hook for a source:

- a *shared* source (``vod-live://``) becomes a broadcast like a publisher's: a stream
  of that name, ``published`` and ``PUBLISHING`` while it runs, which every later player
  joins at the current position (from the last keyframe: the source keeps that group of
  pictures). It stops once it has had no player and no recording for
  ``vod_live_idle_timeout`` seconds, or at the end of the file (``UNPUBLISHED``,
  ``End of file``) unless it loops. REST ``/vod/startup`` starts one under any name.
- a *personal* source (``vod://``) is the player's own: read from the start once the
  player is connected, closed with it; at the end of the file the player is
  ``STOPPED`` with ``End of file``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hookcast.engine.admission import describe
from hookcast.engine.broadcast import Broadcast
from hookcast.engine.media import MediaSource, SourceUnavailable
from hookcast.engine.streams import NameInUse, Status, Stream
from hookcast.events import SessionInfo
from hookcast.rtc.peer import PublisherLeg
from hookcast.rtc.relay import PublishedTrack

if TYPE_CHECKING:
    from hookcast.engine.engine import Engine

log = logging.getLogger(__name__)

END_OF_FILE = "End of file"
IDLE = "Stopped by idle timeout"
#: seconds between two looks for idle shared sources
IDLE_CHECK = 1.0
#: seconds the last frames of a file get to reach a player before it is told STOPPED
END_GRACE = 0.5


def is_uri(name: str) -> bool:
    return "://" in name


def ended_because(leg: PublisherLeg) -> str:
    """The info of a source's end: End of file, or why it ended before (the file
    vanished or changed)."""
    return getattr(leg.source, "failure", "") or END_OF_FILE


class ServerClient:
    """The client of a stream the server runs itself (a shared source, a push): nobody
    to tell. ``remote`` is what plugins see as its address ("server", or the URI of the
    server a pulled stream comes from or a push goes to)."""

    def __init__(self, remote: str = "server") -> None:
        self._info = SessionInfo(session_id="", app_key="", status="ESTABLISHED",
                                 remote=remote)

    @property
    def info(self) -> SessionInfo:
        return self._info

    @property
    def gone(self) -> bool:
        return False

    async def send(self, message: str, *data: Any) -> None:
        return None


@dataclass
class Shared:
    """A running shared source: its stream, URI, loop flag and since when it is idle.
    ``hosted``: started through hookcast.engine.hosted (a pulled stream): not a VOD
    reading, never stopped for being idle."""

    stream: Stream
    uri: str
    loop: bool
    hosted: bool = False
    idle_since: float | None = field(default_factory=time.monotonic)


TOO_MANY = "Too many VOD readings"


class Counted:
    """A source counted in ``readings`` from its opening to its closing."""

    def __init__(self, source: MediaSource, readings: set[Counted]) -> None:
        self.source = source
        self.readings = readings
        readings.add(self)

    @property
    def failure(self) -> str:
        return str(getattr(self.source, "failure", ""))

    def start(self) -> None:
        self.source.start()

    async def close(self) -> None:
        self.readings.discard(self)
        await self.source.close()


async def open_leg(source: MediaSource, name: str, keep_gop: bool,
                   readings: set[Counted] | None = None) -> PublisherLeg:
    """Open ``source`` as a broadcast's leg (tracks not started). Raises SourceUnavailable."""
    counted = Counted(source, readings if readings is not None else set())
    try:
        tracks = await source.open()
    except BaseException:
        await counted.close()
        raise
    leg = PublisherLeg(None, source=counted)
    try:
        for track in tracks:
            mime = getattr(track, "mime", "")
            if track.kind not in ("audio", "video") or not mime or track.kind in leg.tracks:
                raise SourceUnavailable("File has wrong format", f"track {track.kind} {mime}")
            # a source that can make keyframes (a pulled stream) is asked for them; one that
            # cannot (a file) keeps its group of pictures for joiners when ``keep_gop``
            send_pli = getattr(track, "request_keyframe", None)
            leg.tracks[track.kind] = PublishedTrack(
                track, name=f"{name}/{track.kind}", send_pli=send_pli,
                keep_gop=keep_gop and send_pli is None)
            leg.codecs[track.kind] = mime
    except BaseException:
        await leg.close()
        raise
    if not leg.tracks:
        await leg.close()
        raise SourceUnavailable("File has wrong format", "no tracks")
    return leg


def start_leg(leg: PublisherLeg) -> None:
    """Begin reading a source leg."""
    if isinstance(leg.source, Counted):
        leg.source.start()
    for track in leg.tracks.values():
        track.start()


class Sources:
    """The engine's shared sources by stream name, and the start of personal ones."""

    def __init__(self, engine: Engine, resolve: Callable[[str, bool | None], Any],
                 idle_timeout: float) -> None:
        self.engine = engine
        self.resolve = resolve  # (uri, loop) -> MediaSource | None
        self.idle_timeout = idle_timeout
        self.shared: dict[str, Shared] = {}
        #: personal readings: player's mediaSessionId -> uri
        self.personal: dict[str, str] = {}
        self._starting: dict[str, asyncio.Lock] = {}
        #: sources open now (files being read), at most vod_max_readings
        self.readings: set[Counted] = set()
        self._idle_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._idle_task = asyncio.create_task(self._watch_idle(), name="vod idle")

    def _check_room(self) -> None:
        limit = self.engine.settings.vod_max_readings
        if len(self.readings) >= limit:
            log.warning("a reading refused: %d running (vod_max_readings)", limit)
            raise SourceUnavailable(TOO_MANY, f"{limit} running (vod_max_readings)")

    async def close(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
            await asyncio.gather(self._idle_task, return_exceptions=True)

    def source(self, uri: str, loop: bool | None = None) -> MediaSource | None:
        found = self.resolve(uri, loop)
        return found if isinstance(found, MediaSource) else None

    async def for_player(self, player: Stream) -> tuple[Broadcast | None, PublisherLeg | None]:
        """What a player of a URI plays: a shared broadcast (started if need be) or its
        own leg; (None, None) when no plugin knows the URI. Raises SourceUnavailable."""
        source = self.source(player.name)
        if source is None:
            return None, None
        if source.shared:
            return await self.start_shared(player.name, player.name, source), None
        self._check_room()
        return None, await open_leg(source, player.name, False, self.readings)

    async def start_shared(self, uri: str, name: str, source: MediaSource,
                           join: bool = True, hosted: bool = False) -> Broadcast:
        """The broadcast of the shared ``source`` named ``name``: the running one (when
        ``join``), else a new one. Raises SourceUnavailable, or NameInUse when ``name``
        is in use (by another stream, or by this source when not ``join``). ``hosted``:
        a source a plugin runs (see Shared), not counted in vod_max_readings."""
        lock = self._starting.setdefault(name, asyncio.Lock())
        async with lock:
            running = self.engine.broadcasts.get(name)
            if running is not None:
                if join and name in self.shared:
                    return running
                raise NameInUse(name)
            return await self._open_shared(uri, name, source, hosted)

    async def _open_shared(self, uri: str, name: str, source: MediaSource,
                           hosted: bool) -> Broadcast:
        stream = Stream(media_session_id=str(uuid.uuid4()), name=name, published=True,
                        session_id="", app_key="")
        if not hosted:
            self._check_room()
        leg = await open_leg(source, name, True, None if hosted else self.readings)
        client = ServerClient(uri if hosted else "server")
        try:
            await self.engine.begin_source(client, stream, leg)
        except BaseException:
            await leg.close()
            raise
        describe(stream, leg.codecs)
        broadcast = Broadcast(stream, leg)
        self.engine.broadcasts[name] = broadcast
        self.shared[name] = Shared(stream, uri, bool(getattr(source, "loop", False)), hosted)
        start_leg(leg)
        await self.engine.source_running(stream)
        self.engine.spawn(self._until_end(stream, leg))
        log.info("%s: reading %s for every player", name, uri)
        return broadcast

    async def _until_end(self, stream: Stream, leg: PublisherLeg) -> None:
        await asyncio.gather(*(t.wait_ended() for t in leg.tracks.values()))
        await asyncio.sleep(END_GRACE)
        if not stream.final:
            await self.engine.stop(stream, Status.UNPUBLISHED, ended_because(leg))

    async def until_personal_end(self, player: Stream, leg: PublisherLeg) -> None:
        """Stop a personal player once its file has been sent (listed meanwhile)."""
        self.personal[player.media_session_id] = player.name
        try:
            await asyncio.gather(*(t.wait_ended() for t in leg.tracks.values()))
            await asyncio.sleep(END_GRACE)
            if not player.final:
                await self.engine.stop(player, Status.STOPPED, ended_because(leg))
        finally:
            self.personal.pop(player.media_session_id, None)

    def ended(self, stream: Stream) -> None:
        """A stream ended: forget it if it was a shared source."""
        shared = self.shared.get(stream.name)
        if shared is not None and shared.stream is stream:
            del self.shared[stream.name]
            self._starting.pop(stream.name, None)

    async def _watch_idle(self) -> None:
        while True:
            await asyncio.sleep(IDLE_CHECK)
            now = time.monotonic()
            for name, shared in list(self.shared.items()):
                if shared.hosted:
                    continue
                broadcast = self.engine.broadcasts.get(name)
                busy = broadcast is not None and (
                    broadcast.players
                    or shared.stream.media_session_id in self.engine.recordings.active)
                if busy:
                    shared.idle_since = None
                elif shared.idle_since is None:
                    shared.idle_since = now
                elif now - shared.idle_since >= self.idle_timeout and not shared.stream.final:
                    log.info("%s: no player for %g s, stopped", name, self.idle_timeout)
                    self.engine.spawn(self.engine.stop(shared.stream, Status.UNPUBLISHED, IDLE))
