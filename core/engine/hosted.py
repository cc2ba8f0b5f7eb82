"""What plugins may do with the media core: run a source under a stream name, feed a
published stream to a sink of their own, stop streams, name this server.

Plugins get it as ``ServerInfo.media`` (``hookcast.MediaCore``). The built-in ``pull``
plugin is made of it: a stream pulled from another server is a ``MediaSource``
published here (``publish``); a push is a player of a local stream that the server runs
itself (``play``), whose subscriber tracks it sends on. Both are ordinary streams: they
are listed by ``/stream/find_all``, recorded, kept alive and stopped like any other.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiortc import RTCConfiguration, RTCRtpSender
from aiortc.mediastreams import MediaStreamTrack

from hookcast.engine.admission import Client, describe
from hookcast.engine.broadcast import Broadcast
from hookcast.engine.media import MediaSource, SourceUnavailable
from hookcast.engine.sources import ServerClient
from hookcast.engine.streams import Info, Status, Stream
from hookcast.events import StreamInfo
from hookcast.nodes import Cluster
from hookcast.rtc.peer import PlayerLeg, serve_fast
from hookcast.rtc.relay import SubscriberTrack

if TYPE_CHECKING:
    from hookcast.engine.engine import Engine


class NotPublished(LookupError):
    """No stream of that name is published here."""


class Feed:
    """A player the server runs itself: a stream (``published: false``) fed by a local
    broadcast. ``subscribe()`` hands out the broadcast's tracks (again after a
    reconnection: the previous ones stop); ``ended`` is set once the stream stopped (its
    publisher stopped, REST terminated it, or ``MediaCore.stop``)."""

    def __init__(self, stream: Stream, broadcast: Broadcast, leg: PlayerLeg,
                 fast_path: bool = True, gso: bool = True) -> None:
        self._stream = stream
        self._broadcast = broadcast
        self._leg = leg
        self._fast = (fast_path, gso)
        self.ended = asyncio.Event()

    @property
    def info(self) -> StreamInfo:
        return self._stream.snapshot()

    @property
    def codecs(self) -> dict[str, str]:
        """The MIME type (``video/H264``, ``audio/opus``, ...) of each kind."""
        return dict(self._broadcast.codecs)

    def subscribe(self) -> dict[str, SubscriberTrack]:
        """New subscriber tracks by kind ({} once ended); video waits for a keyframe,
        which is requested."""
        self.unsubscribe()
        if self.ended.is_set():
            return {}
        tracks = {kind: published.subscribe()
                  for kind, published in self._broadcast.tracks.items()}
        self._leg.subscribers.extend(tracks.values())
        return tracks

    def sent_by(self, sender: RTCRtpSender, track: MediaStreamTrack) -> None:
        """``track`` (one of ``subscribe()``'s) is sent by ``sender`` of a peer connection
        of the plugin's: once that sender has started, it goes on the dedicated forwarding
        path, as a player's would (``relay_fast_path``). Call it before the offer."""
        fast_path, gso = self._fast
        published = self._broadcast.tracks.get(track.kind)
        if fast_path and published is not None and track in self._leg.subscribers:
            serve_fast(published, track, sender, gso)

    def unsubscribe(self) -> None:
        """Stop the subscriber tracks handed out (the stream goes on)."""
        for old in self._leg.subscribers:
            old.stop()
        self._leg.subscribers.clear()

    async def close(self) -> None:
        """Called by the engine as the stream stops (the leg's sink)."""
        self.ended.set()


@dataclass(frozen=True)
class Reading:
    """A media source being read (``MediaCore.readings``): the stream it is (a shared
    reading's published stream, or the player of a personal one), the URI, whether it
    loops, and whether it is shared."""

    stream: StreamInfo
    uri: str
    loop: bool
    shared: bool


class MediaCore:
    """The media core as plugins may use it; see the module docstring."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        #: this server's identity while it runs (a loop of pulls is found by it)
        self.server_id = uuid.uuid4().hex
        #: the cluster this server is a node of, set by the plugin that joins one: the
        #: REST API then answers for the whole cluster through it (``hookcast.Cluster``)
        self.cluster: Cluster | None = None

    def rtc_configuration(self) -> RTCConfiguration:
        """The ICE configuration the server's own peer connections use."""
        return self._engine.rtc_configuration

    def find(self, name: str) -> StreamInfo | None:
        """The stream published under ``name``, if any."""
        broadcast = self._engine.router.get(name)
        publisher = broadcast.publisher if broadcast is not None else None
        return publisher.snapshot() if publisher is not None else None

    def published(self) -> list[StreamInfo]:
        """Every stream published here now (clients', plugins', edge copies)."""
        return [broadcast.publisher.snapshot() for broadcast in self._engine.router
                if broadcast.publisher is not None]

    def players(self, name: str) -> int:
        """How many players the stream published as ``name`` has now (0 if none is)."""
        broadcast = self._engine.router.get(name)
        return len(broadcast.players) if broadcast is not None else 0

    async def publish(self, name: str, source: MediaSource, uri: str,
                      node: str = "") -> StreamInfo:
        """Publish ``source`` (opened here) as ``name``; it runs until its tracks end or
        the stream is stopped, then the source is closed. ``node``: the cluster node
        whose stream this is a copy of (``StreamInfo.node``: hooks meant for users skip
        it). Raises NameInUse (the name is published) or SourceUnavailable."""
        if self._engine.closing:
            raise SourceUnavailable("Server is shutting down")
        broadcast = await self._engine.sources.start_shared(uri, name, source, join=False,
                                                            hosted=True, node=node)
        assert broadcast.publisher is not None  # a listed broadcast
        return broadcast.publisher.snapshot()

    def readings(self) -> list[Reading]:
        """Every media source read now that a plugin did not host (``publish``): shared
        ones (``vod-live://``) and players' own (``vod://``)."""
        engine = self._engine
        found = [Reading(b.publisher.snapshot(), b.origin.uri, b.origin.loop, True)
                 for b in engine.sources.shared()
                 if b.origin is not None and not b.origin.hosted and b.publisher is not None]
        for media_session_id, broadcast in engine.sources.personal():
            player = engine.registry.get(media_session_id)
            if player is not None and broadcast.origin is not None:
                found.append(Reading(player.snapshot(), broadcast.origin.uri, False, False))
        return found

    async def start_reading(self, uri: str, name: str, loop: bool | None = None) -> Reading:
        """Start the shared source of ``uri`` (``media_source_for_uri``) as the stream
        ``name``, as the first player of it would. Raises LookupError (no plugin knows
        the URI), ValueError (its source is a player's own, not shared), NameInUse or
        SourceUnavailable (``info``: ``File not found``, ``Too many VOD readings``, ...)."""
        engine = self._engine
        if engine.closing:
            raise SourceUnavailable("Server is shutting down")
        source = engine.sources.source(uri, loop)
        if source is None:
            raise LookupError(uri)
        if not source.shared:
            raise ValueError(f"{uri} is not a shared source")
        broadcast = await engine.sources.start_shared(uri, name, source, join=False)
        assert broadcast.publisher is not None and broadcast.origin is not None  # listed
        return Reading(broadcast.publisher.snapshot(), uri, broadcast.origin.loop, True)

    async def play(self, name: str, remote: str) -> Feed:
        """A player of the stream published as ``name``, run by the server; ``remote`` is
        where it goes (plugins see it as the session's address). Raises NotPublished."""
        engine = self._engine
        broadcast = engine.router.get(name)
        if broadcast is None or broadcast.publisher is None or broadcast.publisher.final \
                or engine.closing:
            raise NotPublished(name)
        stream = Stream(media_session_id=str(uuid.uuid4()), name=name, published=False,
                        session_id="", app_key="")
        leg = PlayerLeg(None, codecs=dict(broadcast.codecs))
        settings = engine.settings
        feed = Feed(stream, broadcast, leg, settings.relay_fast_path, settings.relay_gso)
        leg.feed = feed
        describe(stream, leg.codecs)
        await engine.begin_sink(ServerClient(remote), stream, leg, broadcast)
        return feed

    async def offer(self, client: Client, name: str, sdp: str, published: bool, *,
                    custom: Mapping[str, Any] | None = None,
                    record: bool = False) -> StreamInfo:
        """A WebRTC publisher (``published``) or player of ``name`` whose SDP offer came
        another way than WCS signalling (WHIP, WHEP): an ordinary stream, admitted by
        the same hooks, counted among the pending streams, its answer
        (``setRemoteSDP``) and status events sent to ``client`` as to a WCS session
        (``hookcast.Client``). Returns once it is answered or has failed: the stream as
        it is then (FAILED, with the ``info`` a WCS client would see, when it failed)."""
        engine = self._engine
        stream = Stream(media_session_id=str(uuid.uuid4()), name=name, published=published,
                        session_id=client.info.session_id, app_key=client.info.app_key,
                        record=record, custom=dict(custom or {}), sdp=sdp,
                        node=client.info.node)
        if engine.closing:
            stream.status, stream.info = Status.FAILED, Info.SHUTDOWN
            return stream.snapshot()
        problem = engine.reserve(client, stream)
        if problem is not None:
            stream.status, stream.info = Status.FAILED, f"{Info.ERROR}: {problem}"
            return stream.snapshot()
        engine.expect(client, stream)
        await (engine.publish if published else engine.play)(client, stream, sdp)
        return engine.refresh(stream).snapshot()

    async def add_candidate(self, media_session_id: str, sdp_mid: str | None,
                            candidate: str) -> bool:
        """A trickled ICE candidate (``candidate:...`` as in SDP) of a stream's client;
        False if the stream or its connection is gone. Raises ValueError for a candidate
        that cannot be read."""
        return await self._engine.add_candidate(media_session_id, sdp_mid, candidate)

    async def stop(self, media_session_id: str, info: str = Info.REST_TERMINATE) -> None:
        """Stop a stream the normal way (a publisher UNPUBLISHED and its players
        STOPPED, a player STOPPED) with ``info``; nothing if it is gone."""
        stream = self._engine.registry.get(media_session_id)
        if stream is not None:
            await self._engine.end(stream, info)

