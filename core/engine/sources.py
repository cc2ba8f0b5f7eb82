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
from typing import TYPE_CHECKING, Any

from hookcast.engine.broadcast import Broadcast, Origin
from hookcast.engine.media import MediaSource, SourceUnavailable, missing_members
from hookcast.engine.streams import Info, NameInUse, Status, Stream
from hookcast.events import SessionInfo
from hookcast.rtc.peer import PublisherLeg
from hookcast.rtc.relay import PublishedTrack
from hookcast.untrusted import printable

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


TOO_MANY = "Too many VOD readings"


class Counted:
    """A source counted in ``readings`` from its opening to its closing."""

    def __init__(self, source: MediaSource, readings: set[Counted]) -> None:
        self.source = source
        self.readings = readings
        readings.add(self)

    @property
    def failure(self) -> str:
        return self.source.failure

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
            mime = track.mime
            if track.kind not in ("audio", "video") or not mime or track.kind in leg.tracks:
                raise SourceUnavailable("File has wrong format", f"track {track.kind} {mime}")
            # a source that can make keyframes (a pulled stream) is asked for them; one that
            # cannot (a file) keeps its group of pictures for joiners when ``keep_gop``
            on_request = track.keyframes_on_request
            leg.tracks[track.kind] = PublishedTrack(
                track, name=f"{name}/{track.kind}",  # type: ignore[arg-type]
                send_pli=track.request_keyframe if on_request else None,
                keep_gop=keep_gop and not on_request)
            leg.codecs[track.kind] = mime
    except BaseException:
        await leg.close()
        raise
    if not leg.tracks:
        await leg.close()
        raise SourceUnavailable("File has wrong format", "no tracks")
    return leg


class Sources:
    """The broadcasts whose source is a media source: opening them for players and REST,
    ending them at the end of their file, stopping idle shared ones."""

    def __init__(self, engine: Engine, resolve: Callable[[str, bool | None], Any],
                 idle_timeout: float) -> None:
        self.engine = engine
        self.resolve = resolve  # (uri, loop) -> MediaSource | None
        self.idle_timeout = idle_timeout
        self._starting: dict[str, asyncio.Lock] = {}
        #: sources open now (files being read), at most vod_max_readings
        self.readings: set[Counted] = set()
        #: since when each listed media broadcast has had no sink
        self._idle_since: dict[Broadcast, float] = {}
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
        """The plugins' source for ``uri`` (None when no plugin knows it). A plugin's
        answer that is not a whole MediaSource is refused, naming what it lacks."""
        found = self.resolve(uri, loop)
        if found is None:
            return None
        missing = missing_members(found)
        if missing:
            log.error("a media_source_for_uri plugin answered %s with a %s, which is not a "
                      "MediaSource: it lacks %s", printable(uri), type(found).__name__,
                      ", ".join(missing))
            raise SourceUnavailable(Info.ERROR, "not a MediaSource")
        return found  # type: ignore[no-any-return]

    def shared(self) -> list[Broadcast]:
        """The listed broadcasts a media source feeds (VOD readings and hosted ones)."""
        return [b for b in self.engine.router if b.origin is not None]

    def personal(self) -> list[tuple[str, Broadcast]]:
        """Each player's own reading, with its player's mediaSessionId."""
        return self.engine.router.private()

    async def for_player(self, player: Stream) -> Broadcast | None:
        """What a player of a URI plays: a shared broadcast (started if need be), or one
        of its own (not started: it starts once the player is connected); None when no
        plugin knows the URI. Raises SourceUnavailable."""
        source = self.source(player.name)
        if source is None:
            return None
        if source.shared:
            return await self.start_shared(player.name, player.name, source)
        self._check_room()
        leg = await open_leg(source, player.name, False, self.readings)
        broadcast = Broadcast(player.name, leg, None, listed=False, origin=Origin(player.name))
        self.engine.spawn(self._until_private_end(player, broadcast))
        return broadcast

    async def start_shared(self, uri: str, name: str, source: MediaSource,
                           join: bool = True, hosted: bool = False,
                           node: str = "") -> Broadcast:
        """The broadcast of the shared ``source`` named ``name``: the running one (when
        ``join``), else a new one. Raises SourceUnavailable, or NameInUse when ``name``
        is in use (by another stream, or by this source when not ``join``). ``hosted``:
        a source a plugin runs (see Origin), not counted in vod_max_readings."""
        lock = self._starting.setdefault(name, asyncio.Lock())
        async with lock:
            running = self.engine.router.get(name)
            if running is not None:
                if join and running.origin is not None:
                    return running
                raise NameInUse(name)
            try:
                return await self._open_shared(uri, name, source, hosted, node)
            finally:
                self._starting.pop(name, None)

    async def _open_shared(self, uri: str, name: str, source: MediaSource,
                           hosted: bool, node: str = "") -> Broadcast:
        stream = Stream(media_session_id=str(uuid.uuid4()), name=name, published=True,
                        session_id="", app_key="", node=node)
        if not hosted:
            self._check_room()
        leg = await open_leg(source, name, True, None if hosted else self.readings)
        origin = Origin(uri, source.loop, hosted)
        broadcast = Broadcast(name, leg, stream, origin=origin)
        try:
            await self.engine.begin_source(ServerClient(uri if hosted else "server"), stream,
                                           broadcast)
        except BaseException:
            await leg.close()
            raise
        leg.start()
        await self.engine.source_running(stream)
        self.engine.spawn(self._until_end(stream, broadcast))
        log.info("%s: reading %s for every player", name, uri)
        return broadcast

    async def _until_end(self, stream: Stream, broadcast: Broadcast) -> None:
        failure = await broadcast.until_ended()
        await asyncio.sleep(END_GRACE)
        if not stream.final:
            await self.engine.stop(stream, Status.UNPUBLISHED, failure or END_OF_FILE)

    async def _until_private_end(self, player: Stream, broadcast: Broadcast) -> None:
        """Stop a player once its own file has been sent."""
        failure = await broadcast.until_ended()
        await asyncio.sleep(END_GRACE)
        if not player.final:
            await self.engine.stop(player, Status.STOPPED, failure or END_OF_FILE)

    async def _watch_idle(self) -> None:
        while True:
            await asyncio.sleep(IDLE_CHECK)
            now = time.monotonic()
            running = [b for b in self.shared() if not b.origin.hosted]  # type: ignore[union-attr]
            self._idle_since = {b: self._idle_since.get(b, now) for b in running if b.idle}
            for broadcast, since in self._idle_since.items():
                stream = broadcast.publisher
                if now - since >= self.idle_timeout and stream is not None and not stream.final:
                    log.info("%s: no player for %g s, stopped", broadcast.name, self.idle_timeout)
                    self.engine.spawn(self.engine.stop(stream, Status.UNPUBLISHED, IDLE))
