"""A publisher's receive path through the real server (hookcast.rtc.aiortc.receiver):
frames assembled on the event loop without a decoder thread, loss on the publisher's
leg repaired by NACK, receiver reports and REMB back to the publisher, keyframes on
request; and aiortc's own receiver (relay_lean_receive=false) still serving."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtcpRrPacket

from hookcast.config.home import Home
from hookcast.keys import ENGINE
from hookcast.server import Server
from hookcast.signalling.client import ClientStream, WcsClient
from tests.core.engine.test_live import play, publish
from tests.core.rtc.relay_harness import (
    CountingAudioTrack,
    PatternVideoTrack,
    assert_kept_up,
    counted_over,
    reading,
)

Start = Callable[..., Any]
pytestmark = pytest.mark.usefixtures("loopback")


def decoder_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.endswith("-decoder")]


class DropOutgoing:
    """The publisher's ICE connection loses a share of its first transmissions of video
    RTP (payload type ``payload_type``); retransmissions (RTX) and everything else pass."""

    def __init__(self, stream: ClientStream, payload_type: int, rate: float) -> None:
        sender = next(s for s in stream.pc.getSenders() if s.kind == "video")
        self.connection = sender.transport.transport._connection
        self.original = self.connection.sendto
        self.payload_type, self.rate = payload_type, rate
        self.random = random.Random(23)
        self.dropped = 0
        self.connection.sendto = self.sendto

    async def sendto(self, data: bytes, component: int) -> None:
        if len(data) > 12 and 127 < data[0] < 192 and data[1] & 0x7F == self.payload_type \
                and self.random.random() < self.rate:
            self.dropped += 1
            return
        await self.original(data, component)


def video_payload_type(stream: ClientStream) -> int:
    sdp = stream.pc.localDescription.sdp
    video = sdp[sdp.index("m=video"):]
    return int(video.split("\r\n")[0].split()[3])


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "aiortc"])
async def test_a_publisher_is_received_with_or_without_a_decoder_thread(
    home: Home, start_server: Start, connect_client: Callable[..., Any], lean: bool
) -> None:
    server: Server = await start_server(home, relay_lean_receive=str(lean).lower())
    before = len(decoder_threads())
    video, audio = PatternVideoTrack(), CountingAudioTrack()
    await publish(await connect_client(server), "cam", "VP8", (video, audio))
    await asyncio.sleep(0.5)
    # the publisher's frames: on the loop (no thread), or through aiortc's decoder threads
    assert len(decoder_threads()) - before == (0 if lean else 2), decoder_threads()
    _, sinks = await play(await connect_client(server), "cam")
    while sinks["video"].first_frame_at is None:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    sent, got, sent_audio, got_audio = await counted_over(
        3.0, reading(video, "count"), reading(sinks["video"], "frames"),
        reading(audio, "count"), reading(sinks["audio"], "frames"))
    assert sinks["video"].errors == 0 and sinks["audio"].errors == 0
    assert_kept_up(sent, [got], "video frames")
    assert_kept_up(sent_audio, [got_audio], "audio frames")
    for sink in sinks.values():
        await sink.close()


async def test_loss_on_the_publishers_leg_is_repaired_by_nack(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    server: Server = await start_server(home)
    video, audio = PatternVideoTrack(), CountingAudioTrack()
    published = await publish(await connect_client(server), "cam", "VP8", (video, audio))
    loss = DropOutgoing(published, video_payload_type(published), 0.1)
    _, sinks = await play(await connect_client(server), "cam")
    while sinks["video"].first_frame_at is None:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    sent, got = await counted_over(6.0, reading(video, "count"), reading(sinks["video"], "frames"))
    assert loss.dropped > 10, "the publisher's leg lost too little to tell"
    engine = server.http_app[ENGINE]
    stream = engine.registry.publisher("cam")
    assert stream is not None
    nacks = engine.metrics(stream)["VIDEO_NACK"]
    assert nacks >= loss.dropped // 2, f"{loss.dropped} packets lost, {nacks} asked again"
    assert sinks["video"].errors == 0, "a player decoded a corrupt frame"
    assert got >= 0.95 * sent, f"the publisher sent {sent} frames, the player decoded {got}"
    for sink in sinks.values():
        await sink.close()


async def test_receiver_reports_and_remb_reach_the_publisher(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    server: Server = await start_server(home)
    client: WcsClient = await connect_client(server)
    published = await publish(client, "cam", "VP8")
    sender = next(s for s in published.pc.getSenders() if s.kind == "video")
    seen: list[Any] = []
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        seen.append(packet)
        await original(packet)

    sender._handle_rtcp_packet = handle
    for _ in range(100):
        await asyncio.sleep(0.05)
        reports = [p for p in seen if isinstance(p, RtcpRrPacket)]
        rembs = [p for p in seen if isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_APP]
        if reports and rembs:
            break
    assert reports, "no receiver report reached the publisher"
    assert any(r.ssrc == sender._ssrc for report in reports for r in report.reports)
    assert rembs, "no REMB reached the publisher"
    stats = await sender.getStats()
    remote = [s for s in stats.values() if s.type == "remote-inbound-rtp"]
    assert remote and remote[0].packetsLost == 0


def test_window_rate_answers_as_aiortcs_rate_counter() -> None:
    """The bitrate estimator reads the same incoming rate from hookcast's queue as from
    aiortc's per-millisecond buckets, at every packet of a random (monotonic) arrival."""
    from aiortc.rate import RateCounter

    from hookcast.rtc.aiortc.receiver import WindowRate

    rand = random.Random(5)
    for _ in range(20):
        theirs, ours = RateCounter(1000, 8000), WindowRate(1000, 8000)
        now = rand.randint(0, 10**6)
        for _ in range(2000):
            now += rand.choice([0, 0, 1, 2, 3, 5, 8, 20, 200, 1500])
            size = rand.randint(50, 1200)
            if rand.random() < 0.002:
                theirs.reset()
                ours.reset()
            theirs.add(size, now)
            ours.add(size, now)
            now += rand.choice([0, 0, 1, 50, 999, 1000, 1001, 3000])
            assert ours.rate(now) == theirs.rate(now)
