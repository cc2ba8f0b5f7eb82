"""Real aiortc peers on 127.0.0.1: publisher -> "SFU" (relay) -> subscribers.

Every peer lives in this process, so compat.install() gives the subscribers'
receivers passthrough decoders too: they get av.Packet and DecodingSink decodes them
with PyAV, which is the proof that what the relay forwards is decodable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpTransceiver,
    VideoStreamTrack,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack

from hookcast.rtc import aiortc as compat
from hookcast.rtc.keyframes import SendPli
from hookcast.rtc.packets import EncodedPacket, meta_of
from hookcast.rtc.relay import PublishedTrack, SubscriberTrack

WIDTH, HEIGHT = 320, 240
DECODERS = {"video/vp8": "vp8", "video/h264": "h264", "audio/opus": "opus"}
#: the share of the publisher's frames every receiver must get over the same window
KEPT_UP = 0.9


def new_peer() -> RTCPeerConnection:
    """A peer that never contacts a STUN server (iceServers=[])."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


class PatternVideoTrack(VideoStreamTrack):
    """Moving diagonal stripes and a sliding block, 320x240 at aiortc's 30 fps.

    ``count`` is the number of frames handed to the encoder so far: what was sent."""

    _ramp = bytes((i * 7) & 0xFF for i in range(WIDTH + 512))

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        luma, cb, cr = frame.planes
        stride = luma.line_size
        shift = (self.count * 3) % 256
        block = (self.count * 4) % (WIDTH - 40)
        rows = []
        for row in range(HEIGHT):
            line = self._ramp[(row + shift) % 256 :][:WIDTH]
            if 100 <= row < 140:
                line = line[:block] + b"\xeb" * 40 + line[block + 40 :]
            rows.append(line.ljust(stride, b"\x00"))
        luma.update(b"".join(rows))
        for plane in (cb, cr):
            plane.update(bytes([128 + self.count % 64]) * (plane.line_size * plane.height))
        frame.pts, frame.time_base = pts, time_base
        self.count += 1
        return frame


class CountingAudioTrack(AudioStreamTrack):
    """aiortc's silence (20 ms frames); ``count`` is the number of frames sent so far."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    async def recv(self) -> av.frame.Frame:
        frame = await super().recv()
        self.count += 1
        return frame


async def counted_over(seconds: float, *counters: Callable[[], int]) -> list[int]:
    """How far each counter moved over the same ``seconds``.

    Every counter is read at the same instant (no await between the reads) at both
    ends of the window, so a slow machine slows the sender and the receivers alike
    and only their ratio matters."""
    before = [count() for count in counters]
    await asyncio.sleep(seconds)
    return [count() - start for count, start in zip(counters, before, strict=True)]


def reading(counted: Any, attribute: str) -> Callable[[], int]:
    """A counter for counted_over: ``source.count`` (sent) or ``sink.frames`` (decoded)."""
    return lambda: int(getattr(counted, attribute))


def assert_kept_up(sent: int, received: list[int], what: str = "frames") -> None:
    """Every receiver got at least KEPT_UP of what the sender sent over the window."""
    assert sent > 0, f"the publisher sent no {what} during the window"
    short = [count for count in received if count < KEPT_UP * sent]
    assert not short, (
        f"{what}: the publisher sent {sent} in the window, receivers got {received} "
        f"(each must get at least {KEPT_UP:.0%})"
    )


class DecodingSink:
    """Reads a track of relayed av.Packet and decodes it with PyAV.

    Like a real viewer it decodes video only from a keyframe on, and waits again for a
    keyframe after a frame marked complete=False. `errors` counts decode failures of
    packets it did feed to the decoder: it must stay 0.
    """

    def __init__(self, track: MediaStreamTrack, mime: str) -> None:
        self.track = track
        self.video = mime.startswith("video/")
        self.context: Any = av.CodecContext.create(DECODERS[mime.lower()], "r")
        self.codecs: set[str] = set()
        self.packets = self.frames = self.errors = self.keyframes = self.skipped = 0
        self.synced = not self.video
        self.sizes: set[tuple[int, int]] = set()
        self.started = time.monotonic()
        self.first_frame_at: float | None = None
        self.task = asyncio.create_task(self._run(), name=f"sink {track.kind}")

    async def _run(self) -> None:
        try:
            while True:
                packet = await self.track.recv()
                assert isinstance(packet, av.Packet), "compat.install() yields av.Packet"
                self._consume(packet)
        except MediaStreamError:
            pass

    def _consume(self, packet: EncodedPacket) -> None:
        meta = meta_of(packet)
        self.codecs.add(meta.codec)
        self.packets += 1
        self.keyframes += packet.is_keyframe
        if self.video and not packet.is_keyframe and (not self.synced or not meta.complete):
            self.synced = False
            self.skipped += 1
            return
        self.synced = True
        try:
            frames = self.context.decode(packet)
        except av.FFmpegError:
            self.errors += 1
            return
        for frame in frames:
            if self.video:
                self.sizes.add((frame.width, frame.height))
            self.first_frame_at = self.first_frame_at or time.monotonic()
        self.frames += len(frames)

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def connect(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    """Offer/answer in-process; aiortc gathers every candidate before returning."""
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


def add_forced(
    pc: RTCPeerConnection, track_or_kind: MediaStreamTrack | str, direction: str, mime: str
) -> RTCRtpTransceiver:
    transceiver = pc.addTransceiver(track_or_kind, direction=direction)
    compat.force_codec(transceiver, mime)
    return transceiver


@dataclass
class Viewer:
    """One subscriber peer and the SFU-side peer sending to it."""

    pc: RTCPeerConnection
    sfu_pc: RTCPeerConnection
    tracks: dict[str, SubscriberTrack]
    sinks: dict[str, DecodingSink]
    joined_at: float
    connected_at: float


@dataclass
class Room:
    """A publisher, the SFU's ingest peer, its PublishedTracks and the viewers."""

    mime: str
    publisher: RTCPeerConnection
    ingest: RTCPeerConnection
    published: dict[str, PublishedTrack]
    publisher_keyframe_requests: list[float]
    #: the publisher's own tracks: their ``count`` is what it has sent
    video_source: PatternVideoTrack
    audio_source: CountingAudioTrack
    viewers: list[Viewer] = field(default_factory=list)
    #: viewers move to the dedicated forwarding path once connected, as the server's do
    fast: bool = False

    async def add_viewer(self, *, sender_hook: bool = True) -> Viewer:
        """Subscribe a new viewer, forcing the publisher's codecs on this leg too."""
        joined = time.monotonic()
        pc, sfu_pc = new_peer(), new_peer()
        mimes = {"video": self.mime, "audio": "audio/opus"}
        tracks = {kind: self.published[kind].subscribe() for kind in mimes}
        for kind, mime in mimes.items():
            add_forced(pc, kind, "recvonly", mime)
            sender = add_forced(sfu_pc, tracks[kind], "sendonly", mime).sender
            if sender_hook:
                compat.on_keyframe_request(sender, tracks[kind].request_keyframe)
            if self.fast:
                compat.remember_parameters(sender, go_fast(self.published[kind], tracks[kind]))
        await connect(pc, sfu_pc)
        await wait_connected(pc)
        if self.fast:  # each track moved once its sender started (just after DTLS)
            moved = await wait_for(lambda: all(t.fast for t in tracks.values()), within=5)
            assert moved, "a viewer on 127.0.0.1 was not moved to the fast path"
        receivers = {t.kind: t.receiver.track for t in pc.getTransceivers()}
        sinks = {kind: DecodingSink(receivers[kind], mimes[kind]) for kind in mimes}
        viewer = Viewer(pc, sfu_pc, tracks, sinks, joined, time.monotonic())
        self.viewers.append(viewer)
        return viewer

    async def close(self) -> None:
        """Close viewers, the relay, then the publisher side; the order a server uses."""
        for viewer in self.viewers:
            for sink in viewer.sinks.values():
                await sink.close()
            await viewer.pc.close()
            await viewer.sfu_pc.close()
        for published in self.published.values():
            await published.close()
        await self.ingest.close()
        await self.publisher.close()


def go_fast(published: PublishedTrack, track: SubscriberTrack) -> Callable[[Any], None]:
    """What the server's player legs do once a sender starts (hookcast.rtc.peer)."""

    def started(sender: Any) -> None:  # add_viewer checks that it moved
        path = compat.sender_path(sender)
        if path is not None:
            published.go_fast(track, sender, path)

    return started


async def wait_connected(pc: RTCPeerConnection, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while pc.connectionState != "connected":
        if time.monotonic() > deadline:
            raise TimeoutError(f"peer stuck in {pc.connectionState}")
        await asyncio.sleep(0.02)


def pli_sender(receiver: RTCRtpReceiver) -> SendPli:
    """What the SFU calls to ask this receiver's publisher for a keyframe."""

    async def send() -> int:
        return await compat.request_keyframe(receiver)

    return send


async def open_room(mime: str, fast: bool = False) -> Room:
    """Publisher (synthetic video in `mime` + Opus silence) connected to the SFU; with
    ``fast``, viewers are served by the dedicated forwarding path."""
    publisher, ingest = new_peer(), new_peer()
    video, audio = PatternVideoTrack(), CountingAudioTrack()
    pub_video = add_forced(publisher, video, "sendonly", mime)
    add_forced(publisher, audio, "sendonly", "audio/opus")
    requests: list[float] = []
    compat.on_keyframe_request(pub_video.sender, lambda: requests.append(time.monotonic()))
    receivers = {
        "video": add_forced(ingest, "video", "recvonly", mime).receiver,
        "audio": add_forced(ingest, "audio", "recvonly", "audio/opus").receiver,
    }
    await connect(publisher, ingest)
    published = {}
    for kind, receiver in receivers.items():
        track = PublishedTrack(receiver.track, send_pli=pli_sender(receiver), name=kind)
        track.start()
        published[kind] = track
    await wait_connected(ingest)
    return Room(mime, publisher, ingest, published, requests, video, audio, fast=fast)


async def wait_for(predicate: Callable[[], bool], within: float, step: float = 0.05) -> bool:
    """Poll `predicate()` until it is true (-> True) or `within` seconds pass (-> False)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True
