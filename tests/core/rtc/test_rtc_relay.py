"""PublishedTrack, SubscriberTrack and KeyframeController with an in-memory source."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
import pytest_asyncio
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from hookcast.rtc.keyframes import KeyframeController
from hookcast.rtc.packets import EncodedPacket, make_packet
from hookcast.rtc.relay import PublishedTrack

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(20)]

VP8_KEY = b"\x10\x02\x00\x9d\x01\x2a\x40\x01\xf0\x00" + bytes(20)  # 320x240 key frame
VP8_DELTA = b"\x31\x01\x00" + bytes(20)


class QueueTrack(MediaStreamTrack):
    """A source track fed by the test; None ends it."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.queue: asyncio.Queue[EncodedPacket | None] = asyncio.Queue()

    async def recv(self) -> EncodedPacket:
        packet = await self.queue.get()
        if packet is None:
            raise MediaStreamError
        return packet


def video(keyframe: bool, pts: int, complete: bool = True) -> EncodedPacket:
    return make_packet(
        "video/VP8", 90000, VP8_KEY if keyframe else VP8_DELTA, pts, complete=complete
    )


def audio(pts: int) -> EncodedPacket:
    return make_packet("audio/opus", 48000, b"\xf8\xff\xfe", pts)


VideoRelay = tuple[QueueTrack, "PublishedTrack", "PliLog"]


class PliLog:
    def __init__(self) -> None:
        self.sent = 0

    async def __call__(self) -> None:
        self.sent += 1


async def push(track: QueueTrack, packets: Sequence[EncodedPacket | None]) -> None:
    for packet in packets:
        track.queue.put_nowait(packet)
    for _ in range(len(packets) + 2):
        await asyncio.sleep(0)


@pytest_asyncio.fixture
async def video_relay() -> AsyncIterator[tuple[QueueTrack, PublishedTrack, PliLog]]:
    source, plis = QueueTrack("video"), PliLog()
    published = PublishedTrack(source, send_pli=plis, pli_interval=0.05, name="test")
    published.start()
    yield source, published, plis
    await published.close()


async def test_video_subscriber_starts_at_a_keyframe_and_gets_the_same_packets(
    video_relay: VideoRelay,
) -> None:
    source, published, plis = video_relay
    subscriber = published.subscribe()
    packets = [video(False, 0), video(False, 3000), video(True, 6000), video(False, 9000)]
    await push(source, packets)
    assert subscriber.queued == 2
    assert await subscriber.recv() is packets[2]  # the shared object, not a copy
    assert await subscriber.recv() is packets[3]
    assert subscriber.counters.dropped == 2 and subscriber.counters.forwarded == 2
    assert published.last_keyframe is packets[2]
    assert published.counters.packets == 4 and published.counters.keyframes == 1
    assert plis.sent >= 1  # asked for a keyframe on subscribe


async def test_video_overflow_flushes_and_waits_for_the_next_keyframe(
    video_relay: VideoRelay,
) -> None:
    source, published, _ = video_relay
    subscriber = published.subscribe(queue_size=5)
    other = published.subscribe(queue_size=100)
    await push(source, [video(True, 0)])
    for reader in (subscriber, other):  # both remote peers are connected and reading
        assert (await reader.recv()).is_keyframe
    requests = published.counters.keyframe_requests
    await push(source, [video(False, i) for i in range(1, 8)])
    assert subscriber.queued == 0 and not subscriber.synced
    assert subscriber.counters.overflows == 1 and subscriber.counters.dropped == 7  # all of them
    assert published.counters.keyframe_requests == requests + 1
    await push(source, [video(False, 8), video(True, 9), video(False, 10)])
    assert subscriber.synced and subscriber.queued == 2
    assert other.queued == 10 and other.counters.dropped == 0


async def test_a_subscriber_not_read_yet_keeps_the_newest_group_and_asks_nothing(
    video_relay: VideoRelay,
) -> None:
    """Before its peer connects, a player must not make the publisher send keyframes."""
    source, published, _ = video_relay
    waiting = published.subscribe(queue_size=5)
    requests = published.counters.keyframe_requests
    await push(source, [video(True, 0)] + [video(False, i) for i in range(1, 8)])
    assert waiting.counters.overflows == 1 and not waiting.synced
    await push(source, [video(True, 8), video(False, 9), video(True, 10), video(False, 11)])
    assert waiting.queued == 2, "only the newest keyframe's group is kept"
    assert published.counters.keyframe_requests == requests, "no keyframe asked while unread"
    assert (await waiting.recv()).pts == 10
    unsynced = published.subscribe(queue_size=5)
    await push(source, [video(False, i) for i in range(12, 20)])
    before = published.counters.keyframe_requests
    receiving = asyncio.ensure_future(unsynced.recv())
    await asyncio.sleep(0)
    assert published.counters.keyframe_requests == before + 1, "the first read asks for one"
    receiving.cancel()


async def test_discontinuity_unsyncs_every_subscriber(video_relay: VideoRelay) -> None:
    source, published, _ = video_relay
    first, second = published.subscribe(), published.subscribe()
    await push(source, [video(True, 0)])
    for reader in (first, second):
        await reader.recv()
    await push(source, [video(False, 1), video(False, 2, complete=False)])
    assert (first.queued, second.queued) == (1, 1)
    assert not first.synced and not second.synced
    assert published.counters.discontinuities == 1
    await push(source, [video(False, 3), video(True, 4, complete=False)])
    assert (first.queued, second.queued) == (2, 2)


async def test_audio_is_never_gated_and_drops_oldest_when_full() -> None:
    source = QueueTrack("audio")
    published = PublishedTrack(source, name="audio")
    published.start()
    subscriber = published.subscribe(queue_size=3)
    packets = [audio(i * 960) for i in range(5)]
    await push(source, packets)
    assert [await subscriber.recv() for _ in range(3)] == packets[2:]
    assert subscriber.counters.dropped == 2 and subscriber.counters.overflows == 2
    await published.close()


async def test_subscribers_drain_then_end_when_the_source_ends(video_relay: VideoRelay) -> None:
    source, published, _ = video_relay
    subscriber = published.subscribe()
    await push(source, [video(True, 0), None])
    await published.wait_ended()
    assert published.ended and not published.subscribers
    assert (await subscriber.recv()).is_keyframe
    with pytest.raises(MediaStreamError):
        await subscriber.recv()
    assert subscriber.readyState == "ended"
    late = published.subscribe()
    with pytest.raises(MediaStreamError):
        await late.recv()


async def test_stopping_a_subscriber_detaches_it_and_wakes_its_reader(
    video_relay: VideoRelay,
) -> None:
    _, published, _ = video_relay
    subscriber = published.subscribe()
    reader = asyncio.create_task(subscriber.recv())
    await asyncio.sleep(0)
    subscriber.stop()
    with pytest.raises(MediaStreamError):
        await reader
    assert subscriber not in published.subscribers


async def test_close_cancels_and_awaits_every_task() -> None:
    source = QueueTrack("video")
    published = PublishedTrack(source, send_pli=PliLog(), name="closing")
    published.start()
    subscriber = published.subscribe()
    await asyncio.sleep(0.01)
    await published.close()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    with pytest.raises(MediaStreamError):
        await subscriber.recv()


async def test_keyframe_controller_coalesces_rate_limits_and_repeats() -> None:
    plis = PliLog()
    controller = KeyframeController(plis, interval=0.1)
    controller.start()
    for _ in range(20):
        controller.request()
    await asyncio.sleep(0.05)
    assert plis.sent == 1  # twenty requests, one PLI
    await asyncio.sleep(0.3)
    assert 3 <= plis.sent <= 4  # repeated every 0.1 s while no keyframe came
    controller.keyframe_seen()
    await asyncio.sleep(0.25)
    settled = plis.sent
    await asyncio.sleep(0.25)
    assert plis.sent == settled and not controller.waiting
    controller.request()
    await asyncio.sleep(0.02)
    assert plis.sent == settled + 1 and controller.requests == 21
    await controller.close()


async def test_keyframe_controller_survives_a_failing_sender(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("transport closed")

    controller = KeyframeController(failing, interval=0.05, name="broken")
    controller.start()
    controller.request()
    await asyncio.sleep(0.12)
    assert calls >= 2 and controller.plis_sent == 0
    assert "keyframe request to broken failed" in caplog.text
    await controller.close()
