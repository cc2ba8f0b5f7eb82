r"""Fan-out of encoded frames (av.Packet) from one source track to many subscribers.

    source track --recv()--> PublishedTrack --same av.Packet--> SubscriberTrack x N
                                  |      \    \                      |
                                  |       \    +--sink(packet)--> a recorder (synchronous)
                                  |        +--Fanout.forward(packet)--> fast-path players
                          KeyframeController <--request_keyframe()---+ (gating, PLI)

A WebRTC player starts as a SubscriberTrack read by its aiortc sender; once connected it
can move to the dedicated forwarding path (go_fast(), hookcast.rtc.fastpath), where the
same gating applies without a queue or a task of its own.

Nothing here decodes or copies media. The packets are shared: no one may mutate them
(hookcast.rtc.packets.copy_packet() before muxing). All of it runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender

from hookcast.rtc.aiortc import SenderPath
from hookcast.rtc.fastpath import Fanout
from hookcast.rtc.gate import KeyframeGate, gate_for
from hookcast.rtc.keyframes import PLI_INTERVAL, KeyframeController, SendPli, cancel_and_wait
from hookcast.rtc.packets import EncodedPacket, FrameMeta

logger = logging.getLogger(__name__)

VIDEO_QUEUE_SIZE = 60  # packets = frames: 2 s at 30 fps
#: longest group of pictures kept for joiners (keep_gop): 20 s at 30 fps
GOP_LIMIT = 600
AUDIO_QUEUE_SIZE = 50  # packets: 1 s of 20 ms Opus


@dataclass(slots=True)
class SubscriberCounters:
    """forwarded: packets handed to recv(); bytes: their payload bytes; dropped: packets
    never handed out (gated, flushed or evicted); overflows: times the queue was full;
    keyframe_requests: PLIs this subscriber's remote peer sent; on the fast path,
    retransmits: packets resent on NACK, send_errors: sends its socket refused."""

    forwarded: int = 0
    bytes: int = 0
    dropped: int = 0
    overflows: int = 0
    keyframe_requests: int = 0
    retransmits: int = 0
    send_errors: int = 0


@dataclass(slots=True)
class PublishedCounters:
    """Per source track: packets and payload bytes read, keyframes seen, frames that
    followed a loss (complete=False), and keyframe requests received (subscribers
    joining, overflowing or asking). PLIs actually sent upstream are counted by the
    KeyframeController; stats() reports both."""

    packets: int = 0
    bytes: int = 0
    keyframes: int = 0
    discontinuities: int = 0
    keyframe_requests: int = 0


class SinkTrack(Protocol):
    """One kind of a sink of a broadcast (a recorder's track, ...): ``gate`` decides
    what it takes (hookcast.rtc.gate), ``offer`` takes it, synchronously, never blocking."""

    kind: str
    gate: KeyframeGate

    def offer(self, packet: EncodedPacket) -> None: ...


class SubscriberTrack(MediaStreamTrack):
    """One subscriber's view of a PublishedTrack; recv() returns the shared av.Packet.

    Queue: at most `queue_size` packets. Video starts unsynced and accepts nothing
    until a keyframe; when its queue is full it is flushed, unsynced again and a
    keyframe is requested (the viewer freezes, then resumes cleanly). Audio is never
    gated: when full, the oldest packet is dropped. Until the first recv() (the remote
    peer is still connecting) video keeps only the newest keyframe's group and requests
    no keyframes on overflow; the first recv() of an unsynced subscriber requests one.
    recv() raises MediaStreamError
    once the source has ended and the queue is drained, or after stop(). stop() (which
    aiortc's RTCRtpSender calls when it ends) detaches from the publisher.
    """

    def __init__(self, publisher: PublishedTrack, queue_size: int) -> None:
        super().__init__()
        self.kind = publisher.kind
        self.counters = SubscriberCounters()
        self._publisher = publisher
        self._queue: deque[EncodedPacket] = deque()
        self._queue_size = queue_size
        self.gate = gate_for(self.kind, publisher.request_keyframe)
        self._source_ended = False
        self._reading = False
        self._wakeup = asyncio.Event()
        #: True once its player is served by the publisher's Fanout (recv() then parks)
        self.fast = False

    @property
    def synced(self) -> bool:
        """False while a video subscriber waits for a keyframe."""
        return self.gate.synced

    @property
    def queued(self) -> int:
        return len(self._queue)

    def request_keyframe(self) -> None:
        """The remote viewer lost a picture: ask the publisher for a keyframe."""
        self.counters.keyframe_requests += 1
        self._publisher.request_keyframe()

    async def recv(self) -> EncodedPacket:
        if not self._reading:
            # the remote peer connected and its sender starts reading: now a keyframe helps
            self._reading = True
            if not self.gate.synced:
                self._publisher.request_keyframe()
        while not self._queue:
            if self.readyState != "live" or self._source_ended:
                self.stop()
                raise MediaStreamError
            self._wakeup.clear()
            await self._wakeup.wait()
        packet = self._queue.popleft()
        self.counters.forwarded += 1
        self.counters.bytes += packet.size
        return packet

    def stop(self) -> None:
        super().stop()
        self._publisher._detach(self)
        self.counters.dropped += len(self._queue)
        self._queue.clear()
        self._wakeup.set()

    def offer(self, packet: EncodedPacket) -> None:
        """A packet its gate admitted, from the publisher, synchronously; never blocks."""
        if packet.is_keyframe and not self._reading and self.kind == "video":
            # nobody reads yet (ICE still connecting): keep only the newest picture's GOP
            self.counters.dropped += len(self._queue)
            self._queue.clear()
        if len(self._queue) >= self._queue_size:
            self._overflow()
            if not self.gate.admit(packet):
                self.counters.dropped += 1
                return
        self._queue.append(packet)
        self._wakeup.set()

    def _overflow(self) -> None:
        self.counters.overflows += 1
        if self.kind != "video":
            self._queue.popleft()
            self.counters.dropped += 1
            return
        self.counters.dropped += len(self._queue)
        self._queue.clear()
        # before the first recv() a keyframe would only overflow again: none is asked
        self.gate.unsync(ask=self._reading)

    def _end_of_source(self) -> None:
        self._source_ended = True
        self._wakeup.set()


class PublishedTrack:
    """The only reader of one source track; fans each packet out to its subscribers.

    `source` yields av.Packet (a RemoteStreamTrack with hookcast.rtc.aiortc installed, or a
    VOD reader). start() launches the reading task, which reads without pause so that
    aiortc's unbounded track queue never grows, and hands the *same* packet to every
    subscriber synchronously. Video: a keyframe is recorded in `last_keyframe`; a
    non-keyframe whose FrameMeta says complete=False (frames were lost before it)
    unsyncs every subscriber and requests a keyframe. `send_pli` (for example
    `lambda: compat.request_keyframe(receiver)`) is how keyframes are requested; with
    None (a source that cannot make keyframes) requests are only counted.

    When the source ends (MediaStreamError) or fails, every subscriber ends after its
    queue drains. close() cancels the reading and keyframe tasks and waits for them;
    it does not stop the source, whose peer connection is closed by its owner.
    """

    def __init__(
        self,
        source: MediaStreamTrack | None,
        *,
        kind: str = "",
        send_pli: SendPli | None = None,
        pli_interval: float = PLI_INTERVAL,
        name: str = "",
        keep_gop: bool = False,
    ) -> None:
        self.source = source
        self.kind = source.kind if source is not None else kind
        self.name = name or (f"{source.kind}:{source.id}" if source is not None else self.kind)
        self.counters = PublishedCounters()
        self.last_keyframe: EncodedPacket | None = None
        self.last_keyframe_at: float | None = None
        self._subscribers: dict[SubscriberTrack, None] = {}
        #: other sinks of this track (a recorder's): offered every packet their gate admits
        self._sinks: dict[SinkTrack, None] = {}
        self._keyframes = (
            KeyframeController(send_pli, interval=pli_interval, name=self.name)
            if send_pli is not None and self.kind == "video"
            else None
        )
        self._task: asyncio.Task[None] | None = None
        #: video packets since the last keyframe, handed to each joiner (a source that
        #: cannot make keyframes: a joiner's first picture comes at once); None: not kept
        self._gop: list[EncodedPacket] | None = [] if keep_gop and self.kind == "video" else None
        self._keep_gop = self._gop is not None
        #: called with every keyframe (rare: the owner reads its picture size); must not block
        self.on_keyframe: Callable[[EncodedPacket], None] | None = None
        #: the players on the dedicated forwarding path (go_fast()); None until the first
        self._fanout: Fanout | None = None
        self._ended = False
        self._started = False
        self._done = asyncio.Event()

    @property
    def ended(self) -> bool:
        """True once the source has ended or close() was called."""
        return self._ended

    @property
    def subscribers(self) -> tuple[SubscriberTrack, ...]:
        """Every subscriber, on the fast path or not."""
        fast = tuple(p.subscriber for p in self._fanout.players) if self._fanout else ()
        return tuple(self._subscribers) + fast

    @property
    def fanout(self) -> Fanout | None:
        """The players on the dedicated forwarding path, once there is one."""
        return self._fanout

    def go_fast(self, subscriber: SubscriberTrack, sender: RTCRtpSender, path: SenderPath,
                gso: bool = True) -> bool:
        """Serve ``subscriber``'s player on the dedicated forwarding path from now on:
        ``sender`` (started, connected, its path known) is the aiortc sender that reads it,
        which from now on only does RTCP. What the subscriber had queued is sent first;
        an unsynced video player still waits for a keyframe, which is requested. False
        (nothing changed) when the subscriber is no longer attached."""
        if self._ended or subscriber not in self._subscribers:
            return False
        if self._fanout is None:
            self._fanout = Fanout(self.kind, path.codec, gso)
        del self._subscribers[subscriber]
        queued = list(subscriber._queue)
        subscriber._queue.clear()
        subscriber._reading = subscriber.fast = True
        self._fanout.add(subscriber, sender, path, queued)
        if not subscriber.synced and self.kind == "video":
            self.request_keyframe()
        return True

    def start(self) -> None:
        """Start reading the source, or taking what is pushed (idempotent)."""
        if self._started or self._ended:
            return
        self._started = True
        if self.source is not None:
            self._task = asyncio.create_task(self._read(), name=f"relay {self.name}")
        if self._keyframes is not None:
            self._keyframes.start()

    def push(self, packet: EncodedPacket) -> None:
        """A frame from a source that pushes (a publisher's receive path, on the loop)."""
        if not self._ended:
            self._dispatch(packet)

    def subscribe(self, queue_size: int | None = None) -> SubscriberTrack:
        """A new SubscriberTrack; video ones wait for a keyframe, which is requested.

        queue_size defaults to VIDEO_QUEUE_SIZE or AUDIO_QUEUE_SIZE. Subscribing to an
        ended track returns a subscriber whose recv() raises MediaStreamError.
        """
        default = VIDEO_QUEUE_SIZE if self.kind == "video" else AUDIO_QUEUE_SIZE
        cached = self._gop or []
        subscriber = SubscriberTrack(self, queue_size or (default + len(cached)))
        if self._ended:
            subscriber._end_of_source()
            return subscriber
        for packet in cached:  # from the last keyframe: the picture comes at once
            if subscriber.gate.admit(packet):
                subscriber.offer(packet)
        self._subscribers[subscriber] = None
        if self.kind == "video":
            self.request_keyframe()
        return subscriber

    def attach(self, sink: SinkTrack) -> None:
        """Offer ``sink`` every packet its gate admits from now on, synchronously, as the
        packet comes (no queue, no task, no wake-up: the sink must not block, and owns
        what it keeps). Video: a keyframe is requested, so the sink can start at once."""
        self._sinks[sink] = None
        if self.kind == "video":
            self.request_keyframe()

    def detach(self, sink: SinkTrack) -> None:
        self._sinks.pop(sink, None)

    def request_keyframe(self) -> None:
        """Ask the source for a keyframe (coalesced and rate-limited)."""
        self.counters.keyframe_requests += 1
        if self._keyframes is not None and not self._ended:
            self._keyframes.request()

    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters, with one entry per current subscriber."""
        counters = asdict(self.counters)
        counters["plis_sent"] = self._keyframes.plis_sent if self._keyframes else 0
        counters["subscribers"] = {s.id: asdict(s.counters) for s in self.subscribers}
        return counters

    async def close(self) -> None:
        """Stop reading, stop requesting keyframes, end every subscriber. Idempotent."""
        await cancel_and_wait(self._task)
        if self._keyframes is not None:
            await self._keyframes.close()
        self._finish()

    async def wait_ended(self) -> None:
        """Wait until the source has ended, failed or the track was closed."""
        await self._done.wait()
        if self._task is not None:
            await asyncio.wait({self._task})

    def _detach(self, subscriber: SubscriberTrack) -> None:
        self._subscribers.pop(subscriber, None)
        if self._fanout is not None:
            self._fanout.remove(subscriber)

    def _finish(self) -> None:
        self._ended = True
        self._done.set()
        self._gop = None
        self._sinks.clear()
        for subscriber in self.subscribers:
            subscriber._end_of_source()
        self._subscribers.clear()

    async def _read(self) -> None:
        assert self.source is not None  # started only for a source that is read
        try:
            while True:
                packet = await self.source.recv()
                if not isinstance(packet, av.Packet):
                    raise TypeError(f"relay sources yield av.Packet, got {type(packet).__name__}")
                self._dispatch(packet)
        except MediaStreamError:
            logger.debug("%s: source ended", self.name)
        except Exception:
            logger.exception("%s: relay failed, ending its subscribers", self.name)
        self._finish()
        if self._keyframes is not None:
            await self._keyframes.close()

    def _dispatch(self, packet: EncodedPacket) -> None:
        self.counters.packets += 1
        self.counters.bytes += packet.size
        if self.kind == "video":
            self._track_video(packet)
        for subscriber in tuple(self._subscribers):
            if self._admitted(subscriber.gate, subscriber.counters, packet):
                subscriber.offer(packet)
        if self._fanout is not None:
            players = [p for p in self._fanout.players
                       if self._admitted(p.gate, p.counters, packet)]
            try:
                self._fanout.forward(packet, players)
            except Exception:  # a frame aiortc's packetiser cannot take: skipped
                logger.exception("%s: a frame could not be forwarded; skipped", self.name)
                for player in self._fanout.players:
                    player.gate.unsync(ask=False)
                self.request_keyframe()
        for sink in tuple(self._sinks):
            if not sink.gate.admit(packet):
                continue
            try:
                sink.offer(packet)
            except Exception:  # a sink's bug never stops the relay
                logger.exception("%s: a sink failed; detached", self.name)
                self._sinks.pop(sink, None)

    def _track_video(self, packet: EncodedPacket) -> None:
        if self._keep_gop:
            if packet.is_keyframe:
                self._gop = [packet]
            elif self._gop is not None:
                self._gop.append(packet)
                if len(self._gop) > GOP_LIMIT:  # too long to replay: joiners wait instead
                    self._gop = None
        if packet.is_keyframe:
            self.counters.keyframes += 1
            self.last_keyframe = packet
            self.last_keyframe_at = time.monotonic()
            if self._keyframes is not None:
                self._keyframes.keyframe_seen()
            if self.on_keyframe is not None:
                self.on_keyframe(packet)
            return
        meta = packet.opaque
        if isinstance(meta, FrameMeta) and not meta.complete:
            self.counters.discontinuities += 1
            self._unsync_all()

    @staticmethod
    def _admitted(gate: KeyframeGate, counters: SubscriberCounters,
                  packet: EncodedPacket) -> bool:
        if gate.admit(packet):
            return True
        counters.dropped += 1
        return False

    def _unsync_all(self) -> None:
        """Frames were lost upstream (or could not be sent): every sink of this track
        waits for the next keyframe, which is asked for once."""
        for gate in self._gates():
            gate.unsync(ask=False)
        self.request_keyframe()

    def _gates(self) -> list[KeyframeGate]:
        fast = [p.gate for p in self._fanout.players] if self._fanout is not None else []
        return [*(s.gate for s in self._subscribers), *(s.gate for s in self._sinks), *fast]
