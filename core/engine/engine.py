"""The media engine: publish, play and stop streams, independent of how clients talk.

The engine owns the stream registry, the broadcasts (one per published name) and
every stream's media leg. Signalling sessions (and later the REST API) call it; it
reports each status change to the stream's client and to the plugins, in that order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.sdp import candidate_from_sdp

from hookcast.bus import HookBus
from hookcast.config.properties import Rotation
from hookcast.config.settings import Settings
from hookcast.engine.admission import Client, amend, describe, setup_failure
from hookcast.engine.broadcast import Broadcast
from hookcast.engine.hosted import MediaCore
from hookcast.engine.keepalive import KeepAlive
from hookcast.engine.media import SourceUnavailable
from hookcast.engine.memory import HeapTrim
from hookcast.engine.metrics import Meters, stream_metrics
from hookcast.engine.pending import MADE_ROOM, PendingStreams
from hookcast.engine.router import Router
from hookcast.engine.sessions import Sessions
from hookcast.engine.sources import Sources, is_uri
from hookcast.engine.streams import IdInUse, Info, NameInUse, Status, Stream, StreamRegistry
from hookcast.engine.tasks import Tasks
from hookcast.events import SessionInfo, StreamInfo, thaw
from hookcast.recording.formats import NotRecordable
from hookcast.recording.manager import Recordings
from hookcast.recording.naming import login_of
from hookcast.rtc.peer import (
    PlayerLeg,
    PublisherLeg,
    open_player,
    open_publisher,
    rtc_configuration,
)
from hookcast.untrusted import printable

log = logging.getLogger(__name__)


@dataclass
class _Live:
    """A stream's client, media leg and connect watchdog."""

    client: Client
    leg: PublisherLeg | PlayerLeg | None = None
    watchdog: asyncio.TimerHandle | None = None


@dataclass
class _Ending:
    """A stream being stopped: its client, then when its media stopped and when plugins
    were told."""

    client: Client | None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    announced: asyncio.Event = field(default_factory=asyncio.Event)


class Engine:
    def __init__(self, settings: Settings, bus: HookBus, records: Path,
                 resolve: Callable[[str, bool | None], Any] = lambda uri, loop: None) -> None:
        self.settings = settings
        self.bus = bus
        self.registry = StreamRegistry()
        #: published names and their broadcasts; which broadcast each player plays
        self.router = Router()
        self._live: dict[str, _Live] = {}
        self._config = rtc_configuration(settings.stun_server)
        self._tasks = Tasks("engine operation")
        #: streams being admitted (mediaSessionId -> client), and those of them to stop
        #: once registered (their client asked, or they made room): the final status
        #: (None: the normal end) and info
        self._admitting: dict[str, Client] = {}
        self._stop_early: dict[str, tuple[Status | None, str]] = {}
        #: streams requested and not connected yet, bounded
        self.pending = PendingStreams(settings)
        #: streams ending, until plugins have heard of it: mediaSessionId -> _Ending
        self._ending: dict[str, _Ending] = {}
        #: signalling sessions by sessionId (they are admitted and leave themselves)
        self.sessions: Sessions[Any] = Sessions(settings)
        self.meters = Meters(self._legs)
        #: memory freed by streams and sessions that ended goes back to the system
        self.heap = HeapTrim()
        self.recordings = Recordings(settings, bus, records)
        self.sources = Sources(self, resolve, settings.vod_live_idle_timeout)
        self.media = MediaCore(self)
        self._closing = False
        self._closed = False
        self.keep_alive: KeepAlive | None = None
        if settings.keep_alive_streaming_sessions_enabled:
            interval = settings.streaming_sessions_keep_alive_interval / 1000
            self.keep_alive = KeepAlive(lambda: self.registry, bus, self.terminate, interval)

    def start(self) -> None:
        """Start the metrics sampler and, when enabled, the stream keep-alive."""
        self.meters.start()
        self.heap.start()
        self.sources.start()
        if self.keep_alive is not None:
            self.keep_alive.start()

    def _legs(self) -> Iterator[tuple[str, PublisherLeg | PlayerLeg]]:
        return ((i, live.leg) for i, live in self._live.items() if live.leg is not None)

    def streams_of(self, client: Client) -> list[Stream]:
        return [s for s in self.registry if (live := self._live.get(s.media_session_id))
                and live.client is client]

    def count_streams_of(self, client: Client) -> int:
        return sum(1 for live in self._live.values() if live.client is client)

    def leg_of(self, stream: Stream) -> PublisherLeg | PlayerLeg | None:
        live = self._live.get(stream.media_session_id)
        return live.leg if live is not None else None

    def metrics(self, stream: Stream) -> dict[str, int | float | str]:
        """The WCS metrics map of a live stream (see hookcast.engine.metrics)."""
        return stream_metrics(self.refresh(stream), self.leg_of(stream), self.meters.rates)

    def reserve(self, client: Client, stream: Stream) -> str | None:
        """Count a new publish or play request among the streams not connected yet:
        why it is refused (naming the property), or None. At the total bound the oldest
        pending stream fails to make room."""
        session = client.info
        refused, oldest = self.pending.reserve(stream.media_session_id, session.session_id,
                                               session.remote)
        if oldest is not None:
            self._fail_pending(oldest, f"{Info.ERROR}: {MADE_ROOM}")
        return refused

    def _fail_pending(self, media_session_id: str, info: str) -> None:
        stream = self.registry.get(media_session_id)
        if stream is not None:
            self.spawn(self.stop(stream, Status.FAILED, info))
        elif media_session_id in self._admitting:
            self._stop_early[media_session_id] = (Status.FAILED, info)

    async def terminate(self, streams: list[Stream], info: str = Info.REST_TERMINATE) -> None:
        """Stop every given stream the normal way, each with ``info``; all at once."""
        await asyncio.gather(*(self.end(s, info) for s in streams))

    # --- publish and play -----------------------------------------------------------

    async def publish(self, client: Client, stream: Stream, offer_sdp: str) -> None:
        """Admit, answer and relay a publisher; failures end as FAILED with their info."""
        try:
            await self._publish(client, stream, offer_sdp)
        finally:
            self._settled(stream)

    def _settled(self, stream: Stream) -> None:
        """A request's work is done: if its stream never got registered, or is over, it
        no longer counts as pending (a registered one does until it connects)."""
        if stream.final or self.registry.get(stream.media_session_id) is not stream:
            self.pending.release(stream.media_session_id)

    async def _publish(self, client: Client, stream: Stream, offer_sdp: str) -> None:
        live = await self._begin(client, stream, self.bus.before_publish)
        if live is None:
            return
        try:
            leg, answer = await open_publisher(offer_sdp, self._config, stream.name,
                                               self.settings.relay_lean_receive)
        except Exception as error:
            return await self.stop(stream, Status.FAILED, setup_failure(stream, error))
        if stream.final:  # stopped while the answer was being made
            await leg.close()
            return
        live.leg = leg
        broadcast = self._publish_broadcast(stream, Broadcast(stream.name, leg, stream))
        if stream.record and self.settings.record_streams:
            await self._record(stream, broadcast)
        assert leg.pc is not None  # a WebRTC publisher's leg
        self._watch(stream, leg.pc, Status.PUBLISHING)
        await self._answer(client, stream, answer)

    def _publish_broadcast(self, stream: Stream, broadcast: Broadcast) -> Broadcast:
        """List a publisher's broadcast under its name (the registry reserved it)."""
        describe(stream, broadcast.codecs)
        self.router.publish(broadcast)
        video = broadcast.tracks.get("video")
        if video is not None:
            video.on_keyframe = lambda _: self._resized(broadcast)
        return broadcast

    async def _record(self, stream: Stream, broadcast: Broadcast) -> None:
        """Record a publisher that asked for it (``record: true``); a recording that cannot
        start is logged, and the stream goes on without one."""
        try:
            await self.start_recording(stream)
        except (NotRecordable, OSError) as error:
            log.error("stream %s asked to be recorded, but cannot be: %s", stream.name, error)

    async def start_recording(self, stream: Stream, template: str | None = None,
                              rotation: Rotation | None = None) -> Path:
        """Record the published ``stream`` (a recording running already is replaced):
        the recorder is a sink of its broadcast. Returns the first file's path. Raises
        LookupError (no media yet), NotRecordable or OSError."""
        broadcast = self.router.get(stream.name)
        if broadcast is None or broadcast.publisher is not stream:
            raise LookupError(stream.name)
        first = await self.recordings.start(stream.snapshot(), broadcast, template, rotation,
                                            self.login_of(stream))
        stream.record, stream.record_name = True, first.name
        return first

    def login_of(self, stream: Stream) -> str:
        """The ``{login}`` of a stream's signalling session (empty when none)."""
        session = self.sessions.get(stream.session_id)
        return login_of(getattr(session, "client_fields", None) or {})

    async def play(self, client: Client, stream: Stream, offer_sdp: str) -> None:
        """Admit and answer a player of a published name, or of a media source's URI
        (FAILED `Stream not found` if neither)."""
        try:
            await self._play(client, stream, offer_sdp)
        finally:
            self._settled(stream)

    async def _play(self, client: Client, stream: Stream, offer_sdp: str) -> None:
        live = await self._begin(client, stream, self.bus.before_play)
        if live is None:
            return
        broadcast = self.router.get(stream.name)
        if broadcast is None and is_uri(stream.name):
            try:
                broadcast = await self.sources.for_player(stream)
            except (SourceUnavailable, NameInUse) as error:
                info = error.info if isinstance(error, SourceUnavailable) else Info.NOT_FOUND
                log.info("player of %s: %s", stream.name, error)
                return await self.stop(stream, Status.FAILED, info)
            except Exception as error:  # a source plugin's bug: the player hears of it
                log.error("player of %s: its source failed to open: %s: %s", stream.name,
                          type(error).__name__, printable(str(error)))
                return await self.stop(stream, Status.FAILED, Info.ERROR)
        if broadcast is None:
            return await self.stop(stream, Status.FAILED, Info.NOT_FOUND)
        try:
            leg, answer = await open_player(offer_sdp, self._config, broadcast.tracks,
                                            broadcast.codecs, self.settings.relay_fast_path,
                                            self.settings.relay_gso)
            pc = leg.pc
            assert pc is not None  # a WebRTC player's leg
        except Exception as error:
            await self._let_go(broadcast)
            return await self.stop(stream, Status.FAILED, setup_failure(stream, error))
        gone = broadcast.listed and self.router.get(stream.name) is not broadcast
        if stream.final or gone:
            await leg.close()
            await self._let_go(broadcast)
            if not stream.final:
                await self.stop(stream, Status.STOPPED, Info.PUBLISHER_STOP)
            return
        live.leg = leg
        self._play_broadcast(stream, broadcast, leg)
        # a private source (a player's own reading) starts once its player can receive
        self._watch(stream, pc, Status.PLAYING, connected=broadcast.sink_ready)
        await self._answer(client, stream, answer)

    def _play_broadcast(self, stream: Stream, broadcast: Broadcast, leg: PlayerLeg) -> None:
        leg.stream = stream
        self.router.attach(broadcast, stream, leg)
        describe(stream, leg.codecs)

    async def _let_go(self, broadcast: Broadcast) -> None:
        """A private broadcast with no sink left is over."""
        if not broadcast.listed and broadcast.idle:
            await broadcast.close()

    async def begin_source(self, client: Client, stream: Stream, broadcast: Broadcast) -> None:
        """Register a stream the server runs itself (a shared source) and list its
        broadcast. Raises NameInUse."""
        self.registry.add(stream)
        self._live[stream.media_session_id] = _Live(client, leg=broadcast.source)  # type: ignore[arg-type]
        self._publish_broadcast(stream, broadcast)

    async def begin_sink(self, client: Client, stream: Stream, leg: PlayerLeg,
                         broadcast: Broadcast) -> None:
        """Register a player the server runs itself (a push), PLAYING at once."""
        self.registry.add(stream)
        self._live[stream.media_session_id] = _Live(client, leg=leg)
        self._play_broadcast(stream, broadcast, leg)
        await self._set_status(stream, Status.PLAYING)

    @property
    def closing(self) -> bool:
        """True once shutdown began: no new stream is started."""
        return self._closing

    @property
    def rtc_configuration(self) -> RTCConfiguration:
        return self._config

    async def source_running(self, stream: Stream) -> None:
        await self._set_status(stream, Status.PUBLISHING)

    async def _answer(self, client: Client, stream: Stream, answer: str) -> None:
        """Send the SDP answer; a client gone meanwhile ends the stream here."""
        try:
            await client.send("setRemoteSDP", stream.media_session_id, answer)
        except ConnectionError:
            log.debug("client of %s left before its answer was sent", stream.name)
            await self.end(stream, Info.SESSION_DISCONNECT)

    async def add_candidate(self, media_session_id: str, sdp_mid: str | None,
                            candidate: str) -> bool:
        """Add a client's trickled ICE candidate to its stream's peer connection."""
        live = self._live.get(media_session_id)
        pc = getattr(live.leg, "pc", None) if live is not None and live.leg else None
        if pc is None or pc.connectionState in ("closed", "failed"):
            return False
        parsed = candidate_from_sdp(candidate.removeprefix("candidate:"))
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = None if sdp_mid is not None else 0
        await pc.addIceCandidate(parsed)
        return True

    def expect(self, client: Client, stream: Stream) -> None:
        """A request of ``client`` is on its way in: a stop it sends for that stream
        before the stream is registered is kept for it."""
        self._admitting[stream.media_session_id] = client

    async def _begin(
        self, client: Client, stream: Stream,
        admit: Callable[[SessionInfo, Any], Awaitable[Any]],
    ) -> _Live | None:
        """Admit and register a new stream (PENDING); None after failing it if refused,
        or after stopping it if its client asked to stop it while it was admitted."""
        self._admitting[stream.media_session_id] = client
        try:
            if not await self._admit(client, stream, admit):
                return None
            if client.gone or self._closing:  # left (or shutdown began) while plugins decided
                await self._fail_unregistered(client, stream, Info.SESSION_DISCONNECT)
                return None
            try:
                self.registry.add(stream)
            except (NameInUse, IdInUse) as error:
                info = Info.NAME_IN_USE if isinstance(error, NameInUse) else Info.ID_IN_USE
                await self._fail_unregistered(client, stream, info)
                return None
        finally:
            self._admitting.pop(stream.media_session_id, None)
            if self.registry.get(stream.media_session_id) is not stream:
                self._stop_early.pop(stream.media_session_id, None)
        live = self._live[stream.media_session_id] = _Live(client)
        await self._set_status(stream, Status.PENDING)
        early = self._stop_early.pop(stream.media_session_id, None)
        if early is not None:  # asked while it was admitted
            status, info = early
            if status is None:
                await self.end(stream, info)
            else:
                await self.stop(stream, status, info)
            return None
        return live

    async def _admit(
        self, client: Client, stream: Stream,
        admit: Callable[[SessionInfo, Any], Awaitable[Any]],
    ) -> bool:
        # plugins see the request as the client sent it: status PENDING
        verdict = await admit(client.info, replace(stream.snapshot(), status=str(Status.PENDING)))
        if not verdict.admitted:
            await self._fail_unregistered(client, stream, verdict.reason)
            return False
        amend(stream, thaw(verdict.fields))
        return True

    async def _fail_unregistered(self, client: Client, stream: Stream, info: str) -> None:
        """Tell a client its stream failed before it was ever registered."""
        self.pending.release(stream.media_session_id)
        stream.status, stream.info = Status.FAILED, info
        try:
            await client.send("notifyStreamStatusEvent", stream.to_wcs())
        except ConnectionError:
            log.debug("client of %s is gone; FAILED %s not delivered", stream.name, info)
        await self.bus.after_stream_status(stream.snapshot(), None)

    # --- connection state -----------------------------------------------------------

    def _watch(self, stream: Stream, pc: RTCPeerConnection, status: Status,
               connected: Callable[[], None] | None = None) -> None:
        live = self._live[stream.media_session_id]

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            if stream.final:
                return
            if state == "connected" and stream.status is Status.PENDING:
                self._cancel_watchdog(live)
                if connected is not None:
                    connected()
                await self._set_status(stream, status)
            elif state in ("failed", "closed"):
                # closed while the stream goes on: not by the server (it makes a stream
                # final before it closes its media) but by the client (DTLS close) or by
                # ICE consent running out (aiortc reports a vanished peer as closed, not
                # failed): a WHIP or WHEP client has no socket whose end would end it
                await self.stop(stream, Status.FAILED, Info.ICE_ERROR)

        loop = asyncio.get_running_loop()
        timeout = self.settings.ice_connect_timeout
        live.watchdog = loop.call_later(timeout, self._connect_timeout, stream)

    def _connect_timeout(self, stream: Stream) -> None:
        if stream.status is Status.PENDING:
            self.spawn(self.stop(stream, Status.FAILED, Info.ICE_TIMEOUT))

    @staticmethod
    def _cancel_watchdog(live: _Live) -> None:
        if live.watchdog is not None:
            live.watchdog.cancel()
            live.watchdog = None

    # --- stopping -------------------------------------------------------------------

    async def stop(self, stream: Stream, status: Status, info: str = "") -> None:
        """End a stream with a final status; a publisher's players stop too. Returns once
        the media has stopped and the clients were told; plugins hear of the end in the
        background (a slow hook never holds a REST caller or a client). Idempotent: a
        second call returns once the first one's media has stopped."""
        if stream.final:
            ending = self._ending.get(stream.media_session_id)
            if ending is not None:
                await ending.stopped.wait()
            return
        live = self._live.pop(stream.media_session_id, None)
        ending = self._ending[stream.media_session_id] = _Ending(live.client if live else None)
        try:
            previous, players = await self._stop_media(stream, status, info, live)
        except BaseException:
            self._ending.pop(stream.media_session_id, None)
            raise
        finally:
            ending.stopped.set()
        self.spawn(self._announce_end(stream.snapshot(), previous, ending))
        await asyncio.gather(*(self.stop(p, Status.STOPPED, Info.PUBLISHER_STOP) for p in players))

    async def _stop_media(
        self, stream: Stream, status: Status, info: str, live: _Live | None
    ) -> tuple[str | None, list[Stream]]:
        """Unregister, tell the client, close the media; (previous status, its players)."""
        # counted as it leaves _live, so the relay totals never go down
        self.meters.ended(stream.media_session_id, live.leg if live is not None else None)
        self.heap.freed()
        self.registry.remove(stream)
        players: list[Stream] = []
        ending: Broadcast | None = None
        if stream.published:
            broadcast = self.router.get(stream.name)
            if broadcast is not None and broadcast.publisher is stream:
                self.router.unpublish(broadcast)
                players = list(broadcast.players.values())
                ending = broadcast
        else:
            played = self.router.detach(stream)
            if played is not None and not played.listed and played.idle:
                ending = played  # a player's own reading ends with it
        previous = await self._tell(stream, status, info, live)
        if live is not None:  # media ends before plugins hear of it: a hook never holds it
            self._cancel_watchdog(live)
            try:
                if ending is not None and ending.source is live.leg:
                    await ending.close()  # its sinks (the recorder), then its source
                elif live.leg is not None:
                    await live.leg.close()
            except Exception:  # its players and plugins must hear of the end all the same
                log.exception("closing the media of %s failed", stream.name)
        if ending is not None and not ending.closed:
            await ending.close()
        return previous, players

    async def _announce_end(
        self, snapshot: StreamInfo, previous: str | None, ending: _Ending
    ) -> None:
        try:
            await self.bus.after_stream_status(snapshot, previous)
        finally:
            self._ending.pop(snapshot.media_session_id, None)
            ending.announced.set()

    def request_stop(self, client: Client, media_session_id: str, published: bool) -> bool:
        """unPublishStream / stopStream from the stream's own client: the stop runs in
        the background (plugins may take their time); False if it is not its stream."""
        stream = self.registry.get(media_session_id)
        live = self._live.get(media_session_id)
        if stream is None and self._admitting.get(media_session_id) is client:
            self._stop_early[media_session_id] = (None, Info.USER)  # once it is registered
            return True
        if stream is None or live is None or live.client is not client:
            return False
        if stream.published != published:
            return False
        self.spawn(self.end(stream, Info.USER))
        return True

    async def client_gone(self, client: Client) -> None:
        """A session closed: every stream it owned stops (`Stopped by session disconnect`)."""
        await self.terminate(self.streams_of(client), Info.SESSION_DISCONNECT)
        # plugins hear of the end of every stream of this client (those stopped here and
        # those already stopping elsewhere) before they hear the session ended
        await asyncio.gather(*(e.announced.wait() for e in list(self._ending.values())
                               if e.client is client))

    async def end(self, stream: Stream, info: str) -> None:
        """Stop a stream the normal way: a publisher UNPUBLISHED, a player STOPPED."""
        await self.stop(stream, Status.UNPUBLISHED if stream.published else Status.STOPPED, info)

    @property
    def broadcasts(self) -> dict[str, Broadcast]:
        """The published names and their broadcasts (the router's)."""
        return self.router.broadcasts

    def _resized(self, broadcast: Broadcast) -> None:
        """A keyframe arrived: its picture size is the stream's (and its players')."""
        for stream in broadcast.streams():
            self.refresh(stream)

    def refresh(self, stream: Stream) -> Stream:
        """Update what the media knows and signalling does not: the picture size."""
        broadcast = self.router.get(stream.name) or self.router.playing(stream)
        size = broadcast.picture_size() if broadcast is not None else None
        if size is not None:
            stream.width, stream.height = size
        return stream

    async def _set_status(
        self, stream: Stream, status: Status, info: str = "", live: _Live | None = None
    ) -> None:
        """Change a stream's status: tell its client, then the plugins."""
        previous = await self._tell(stream, status, info, live)
        await self.bus.after_stream_status(stream.snapshot(), previous)

    async def _tell(
        self, stream: Stream, status: Status, info: str, live: _Live | None
    ) -> str | None:
        """Set the status and tell the stream's client; returns the previous status."""
        self.refresh(stream)
        previous = None if stream.status is Status.NEW else str(stream.status)
        stream.status, stream.info = status, info
        if status is not Status.PENDING:  # connected or over
            self.pending.release(stream.media_session_id)
        log.info(
            "%s %s (%s): %s -> %s %s", "publisher" if stream.published else "player",
            stream.name, stream.media_session_id, previous, status, info,
        )
        live = live or self._live.get(stream.media_session_id)
        # The SDK sets PENDING itself when it sends its offer; WCS does not echo it.
        if live is not None and status is not Status.PENDING:
            try:
                await live.client.send("notifyStreamStatusEvent", stream.to_wcs())
            except ConnectionError:
                log.debug("client of %s is gone; status %s not delivered", stream.name, status)
        return previous

    # --- tasks and shutdown ---------------------------------------------------------

    def spawn(self, coroutine: Awaitable[Any]) -> asyncio.Future[Any]:
        """Run an engine operation in the background, owned by the engine."""
        return self._tasks.spawn(coroutine)

    async def settle(self) -> None:
        """Return once every background operation (stops, plugin notifications) is done."""
        await self._tasks.wait()

    async def stop_background(self) -> None:
        """Stop the sampler and the keep-alive (shutdown begins). Idempotent."""
        await self.meters.stop()
        await self.heap.close()
        await self.sources.close()
        if self.keep_alive is not None:
            await self.keep_alive.close()

    async def end_streams(self) -> None:
        """Shutdown, in order: no new stream; the background work stops; every sink ends
        (players and pushes `STOPPED` `Requested stream shutdown`, then every recording:
        its file is finished), then every source (publishers `UNPUBLISHED`, media
        sources). Clients are told while their sockets are still open. Idempotent."""
        self._closing = True
        await self.stop_background()
        await asyncio.gather(*(self.end(s, Info.SHUTDOWN) for s in self.registry
                               if not s.published))
        await self.recordings.stop_all()
        await asyncio.gather(*(self.end(s, Info.SHUTDOWN) for s in self.registry))

    async def close(self) -> None:
        """The last step: every stream ended (end_streams, if it was not called), every
        background operation done, every file final and announced."""
        if self._closed:
            return
        self._closed = True
        await self.end_streams()
        await self.settle()
        await self.recordings.close()

