"""The recording clock: RTP times past a 32-bit wrap, lost packets, a publisher restart,
and two tracks tied together by their least-delayed packets."""

from __future__ import annotations

from itertools import pairwise

from hookcast.recording.timeline import SYNC_WINDOW, Arrived, Timed, Timeline

WRAP = 1 << 32


def video(rtp: int, arrival: float, keyframe: bool = False) -> Arrived:
    return Arrived("video", b"v", rtp, 90000, keyframe, arrival)


def audio(rtp: int, arrival: float) -> Arrived:
    return Arrived("audio", b"a", rtp, 48000, True, arrival)


def feed_all(timeline: Timeline, packets: list[Arrived]) -> list[Timed]:
    out: list[Timed] = []
    for packet in packets:
        out += timeline.feed(packet)
    return out + list(timeline.drain())


def test_times_go_on_across_a_32_bit_wrap_and_lost_packets() -> None:
    """aiortc hands over unwrapped RTP time (it grows past 2**32); a lost second of
    packets leaves a one-second gap, not a shifted timeline."""
    start = WRAP - 45000  # half a second before the wrap
    packets = [video(start + i * 3000, 100 + i / 30, keyframe=i == 0) for i in range(60)]
    packets = [p for i, p in enumerate(packets) if not 20 <= i < 50]  # a lost second
    timed = feed_all(Timeline(frozenset({"video"})), packets)
    seconds = [round(t.seconds, 4) for t in timed]
    assert seconds == [round(i / 30, 4) for i in (*range(20), *range(50, 60))]


def test_a_publisher_restart_is_a_new_anchor_not_a_13_hour_jump() -> None:
    timeline = Timeline(frozenset({"video"}))
    first = [video(i * 3000, 10 + i / 30, keyframe=i == 0) for i in range(30)]
    # the publisher restarts: its RTP time starts again elsewhere, arrival goes on
    second = [video(7_000_000 + i * 3000, 11 + i / 30) for i in range(30)]
    timed = feed_all(timeline, first + second)
    assert [round(t.seconds, 3) for t in timed[30:32]] == [1.0, 1.033]
    assert all(b.seconds > a.seconds for a, b in pairwise(timed))


def test_tracks_are_tied_by_their_least_delayed_packets() -> None:
    """Video and audio captured together; the keyframe's last packet arrives 200 ms late
    (a big frame), the rest 5 ms after capture: the keyframe does not shift the picture."""
    capture = 50.0
    video_rtp, audio_rtp = 1_000_000, 333  # independent random origins
    packets = []
    keyframe_arrives = capture + 0.2  # its last packet, behind the rest of a big frame
    for i in range(30):
        # frames after it queue behind it, then arrive 5 ms after capture again
        arrival = keyframe_arrives if i == 0 else max(capture + i / 30 + 0.005,
                                                      keyframe_arrives + i * 0.001)
        packets.append(video(video_rtp + i * 3000, arrival, keyframe=i == 0))
    for i in range(50):
        packets.append(audio(audio_rtp + i * 960, capture + i * 0.02 + 0.005))
    packets.sort(key=lambda p: p.arrival)
    timed = feed_all(Timeline(frozenset({"video", "audio"})), packets)
    first_video = next(t for t in timed if t.kind == "video")
    first_audio = next(t for t in timed if t.kind == "audio")
    assert first_video.keyframe and first_video.seconds == 0.0
    assert abs(first_audio.seconds - 0.0) < 0.001, "audio captured with the keyframe is at 0"
    assert SYNC_WINDOW <= 1.0


def test_nothing_before_the_first_keyframe() -> None:
    packets = [video(i * 3000, 5 + i / 30, keyframe=i == 10) for i in range(20)]
    timed = feed_all(Timeline(frozenset({"video"})), packets)
    assert len(timed) == 10 and timed[0].keyframe and timed[0].seconds == 0.0
