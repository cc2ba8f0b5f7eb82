"""RelayJitterBuffer against synthetic RTP sequences (no network)."""

from __future__ import annotations

import random

import pytest
from aiortc.rtp import RtpPacket

from hookcast.rtc.jitter import RelayJitterBuffer, RelayJitterFrame

FRAME_INTERVAL = 1 / 30
TS_STEP = 3000


class FakeClock:
    """Monotonic clock the test advances by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_frames(
    first_seq: int, count: int, per_frame: int, first_ts: int = 1000
) -> list[list[RtpPacket]]:
    """`count` frames of `per_frame` packets; payload bytes name (frame, packet)."""
    frames = []
    seq = first_seq
    for index in range(count):
        packets = []
        for part in range(per_frame):
            packet = RtpPacket(
                payload_type=96,
                marker=int(part == per_frame - 1),
                sequence_number=seq & 0xFFFF,
                timestamp=(first_ts + index * TS_STEP) & 0xFFFFFFFF,
            )
            packet._data = f"[f{index}p{part}]".encode()  # type: ignore[attr-defined]
            packets.append(packet)
            seq += 1
        frames.append(packets)
    return frames


def frame_bytes(packets: list[RtpPacket]) -> bytes:
    return b"".join(p._data for p in packets)  # type: ignore[attr-defined]


def feed(
    buffer: RelayJitterBuffer, packets: list[RtpPacket], clock: FakeClock, step: float = 0.0
) -> list[tuple[bool, RelayJitterFrame | None]]:
    results = []
    for packet in packets:
        clock.now += step
        results.append(buffer.add(packet))
    return results


def emitted(results: list[tuple[bool, RelayJitterFrame | None]]) -> list[RelayJitterFrame]:
    return [frame for _, frame in results if frame is not None]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def video_buffer(clock: FakeClock, capacity: int = 512) -> RelayJitterBuffer:
    return RelayJitterBuffer(capacity=capacity, is_video=True, clock=clock)


def test_in_order_frames_are_emitted_whole_after_the_first_proven_start(clock: FakeClock) -> None:
    frames = make_frames(1000, 6, 3)
    buffer = video_buffer(clock)
    results = feed(buffer, [p for f in frames for p in f], clock)
    out = emitted(results)
    # frame 0 cannot be proven to start at the first packet seen: it is discarded,
    # a PLI is flagged, and the next frame is marked as following a discontinuity
    assert [f.data for f in out] == [frame_bytes(f) for f in frames[1:]]
    assert [f.timestamp for f in out] == [f[0].timestamp for f in frames[1:]]
    assert [f.complete for f in out] == [False, True, True, True, True]
    assert results[2][0] is True
    assert sum(pli for pli, _ in results) == 1


def test_lost_packet_is_skipped_within_max_wait_and_flags_pli(clock: FakeClock) -> None:
    frames = make_frames(0, 30, 4)
    packets = [p for f in frames for p in f]
    lost = frames[5][1]
    packets.remove(lost)
    buffer = video_buffer(clock)
    results = feed(buffer, packets, clock, step=FRAME_INTERVAL / 4)
    out = emitted(results)
    data = [f.data for f in out]
    assert frame_bytes(frames[5]) not in data
    assert all(f.data == frame_bytes(frames[i]) for i, f in zip(range(1, 5), out, strict=False))
    resumed = next(f for f in out if f.data == frame_bytes(frames[6]))
    assert resumed.complete is False
    gap_seen = next(i for i, p in enumerate(packets) if p is frames[5][2])
    skip_at = next(i for i, (pli, _) in enumerate(results) if pli and i > gap_seen)
    waited = (skip_at - gap_seen) * FRAME_INTERVAL / 4
    assert 0.25 <= waited <= 0.25 + FRAME_INTERVAL / 4
    # every frame after the broken one arrives, late but whole, in order
    assert data[-24:] == [frame_bytes(f) for f in frames[6:]]


def test_retransmission_inside_max_wait_loses_nothing(clock: FakeClock) -> None:
    frames = make_frames(0, 10, 4)
    packets = [p for f in frames for p in f]
    late = frames[4][2]
    packets.remove(late)
    packets.insert(packets.index(frames[6][0]), late)  # ~2 frames (67 ms) late
    buffer = video_buffer(clock)
    results = feed(buffer, packets, clock, step=FRAME_INTERVAL / 4)
    out = emitted(results)
    assert [f.data for f in out] == [frame_bytes(f) for f in frames[1:]]
    assert [f.complete for f in out[1:]] == [True] * 8
    assert sum(pli for pli, _ in results) == 1  # only the start-up one


def test_frame_missing_its_marker_packet_is_never_emitted(clock: FakeClock) -> None:
    frames = make_frames(0, 12, 5)
    packets = [p for f in frames for p in f]
    packets.remove(frames[3][4])  # the marker packet: frame 3 is truncated
    buffer = video_buffer(clock)
    out = emitted(feed(buffer, packets, clock, step=0.1))
    originals = {frame_bytes(f) for f in frames}
    assert all(f.data in originals for f in out)
    assert frame_bytes(frames[3]) not in {f.data for f in out}
    assert b"[f3p0][f3p1][f3p2][f3p3]" not in {f.data for f in out}
    assert out[-1].data == frame_bytes(frames[-1])


def test_reordered_packets_within_and_across_frames(clock: FakeClock) -> None:
    frames = make_frames(500, 8, 4)
    packets = [p for f in frames for p in f]
    order = list(range(len(packets)))
    order[9], order[10] = order[10], order[9]  # inside frame 2
    order[15], order[16] = order[16], order[15]  # marker of frame 3 after frame 4's start
    order[20], order[23] = order[23], order[20]  # marker of frame 5 first
    buffer = video_buffer(clock)
    out = emitted(feed(buffer, [packets[i] for i in order], clock, step=0.01))
    assert [f.data for f in out] == [frame_bytes(f) for f in frames[1:]]
    assert [f.complete for f in out] == [False] + [True] * 6


def test_sequence_wraparound_at_65535(clock: FakeClock) -> None:
    frames = make_frames(65530, 8, 3, first_ts=0xFFFFFFFF - 2 * TS_STEP)
    assert frames[1][2].sequence_number == 0xFFFF and frames[2][0].sequence_number == 0
    assert frames[3][0].timestamp < frames[2][0].timestamp  # the RTP timestamp wraps too
    buffer = video_buffer(clock)
    out = emitted(feed(buffer, [p for f in frames for p in f], clock, step=0.01))
    assert [f.data for f in out] == [frame_bytes(f) for f in frames[1:]]
    assert buffer.stats.resets == 0 and buffer.stats.skips == 0


def test_capacity_bounds_a_gap_even_when_no_time_passes(clock: FakeClock) -> None:
    frames = make_frames(0, 20, 4)
    packets = [p for f in frames for p in f]
    packets.remove(frames[2][0])
    buffer = video_buffer(clock, capacity=16)
    held = []
    results = []
    for packet in packets:
        results.append(buffer.add(packet))
        held.append(len(buffer._packets))
    assert buffer.stats.skips == 1 and buffer.stats.resets == 0
    assert max(held) <= 16
    out = emitted(results)
    assert [f.data for f in out] == [frame_bytes(f) for f in frames[1:2] + frames[3:]]
    assert out[1].complete is False


def test_random_loss_and_reorder_never_emits_a_partial_frame(clock: FakeClock) -> None:
    rng = random.Random(7)
    frames = make_frames(65000, 300, 6)
    originals = {frame_bytes(f): i for i, f in enumerate(frames)}
    packets = [p for f in frames for p in f if rng.random() > 0.02]
    for i in range(0, len(packets) - 3, 7):
        packets[i], packets[i + 2] = packets[i + 2], packets[i]
    buffer = video_buffer(clock)
    out = emitted(feed(buffer, packets, clock, step=FRAME_INTERVAL / 6))
    indexes = [originals[f.data] for f in out]  # KeyError would mean a partial frame
    assert indexes == sorted(indexes)
    assert len(indexes) > 150


def test_sequence_jump_resets_and_flags_pli(clock: FakeClock) -> None:
    before = make_frames(100, 4, 3)
    after = make_frames(40000, 4, 3, first_ts=900000)
    buffer = video_buffer(clock)
    feed(buffer, [p for f in before for p in f], clock, step=0.01)
    results = feed(buffer, [p for f in after for p in f], clock, step=0.01)
    assert results[0][0] is True
    assert buffer.stats.resets == 1
    assert [f.data for f in emitted(results)] == [frame_bytes(f) for f in after[1:]]


def test_duplicates_are_ignored(clock: FakeClock) -> None:
    frames = make_frames(0, 5, 3)
    packets = [p for f in frames for p in f for _ in range(2)]
    buffer = video_buffer(clock)
    out = emitted(feed(buffer, packets, clock, step=0.01))
    assert [f.data for f in out] == [frame_bytes(f) for f in frames[1:]]


def test_padding_packets_between_frames_produce_no_frame(clock: FakeClock) -> None:
    frames = make_frames(0, 6, 2)
    packets: list[RtpPacket] = []
    seq = 0
    for index, frame in enumerate(frames):
        for packet in frame:
            packet.sequence_number = seq
            seq += 1
            packets.append(packet)
        if index in (1, 3):  # padding-only packets carrying the last frame's timestamp
            for _ in range(3):
                padding = RtpPacket(
                    payload_type=96, sequence_number=seq, timestamp=frame[0].timestamp
                )
                padding._data = b""  # type: ignore[attr-defined]
                packets.append(padding)
                seq += 1
    buffer = video_buffer(clock)
    out = emitted(feed(buffer, packets, clock, step=0.01))
    assert [f.data for f in out] == [frame_bytes(f) for f in frames[1:]]
    assert [f.complete for f in out] == [False, True, True, True, True]


def test_audio_emits_every_newer_packet_at_once(clock: FakeClock) -> None:
    packets = [p for f in make_frames(10, 10, 1) for p in f]
    order = [0, 1, 3, 2, 4, 4, 6, 7, 8, 9]  # 2 late, 4 duplicated, 5 lost
    buffer = RelayJitterBuffer(capacity=16, prefetch=4, clock=clock)
    results = feed(buffer, [packets[i] for i in order], clock, step=0.02)
    out = [(f.data, f.complete) for _, f in results if f is not None]
    assert [d for d, _ in out] == [packets[i]._data for i in (0, 1, 3, 4, 6, 7, 8, 9)]  # type: ignore[attr-defined]
    assert [c for _, c in out] == [True, True, False, True, False, True, True, True]
    assert not any(pli for pli, _ in results)


def test_capacity_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of 2"):
        RelayJitterBuffer(capacity=100)
