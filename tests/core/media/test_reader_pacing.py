"""A file's reading hands its packets out at their times, every track in one wake-up of
its pacer: packets are never late, never more than PACE early, and the loop wakes for
the reading about 1 / PACE times a second, not once per packet."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import av
import pytest
from aiortc.mediastreams import MediaStreamError

from hookcast.media import reader
from hookcast.media.reader import PACE, FileReading, FileTrack, inspect_file
from hookcast.rtc.packets import FrameMeta
from tests.plugins.vod_files import make_media

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

#: what a loaded CI machine's event loop may add to a packet's time
LATE = 0.060


async def take(track: FileTrack, taken: list[tuple[float, float, str]]) -> None:
    """Every packet of ``track``: (when it was taken, when it was due, its kind)."""
    while True:
        try:
            packet = await track.recv()
        except MediaStreamError:
            return
        assert isinstance(packet.opaque, FrameMeta)
        taken.append((time.monotonic(), packet.opaque.arrival, track.kind))


@pytest.mark.parametrize("audio", ["aac", "opus"])
async def test_packets_go_at_their_time_in_one_wake_up_per_batch(tmp_path: Path, audio: str) -> None:
    suffix = "mp4" if audio == "aac" else "webm"
    path = make_media(tmp_path / f"clip.{suffix}", "h264" if audio == "aac" else "vp8",
                      audio, seconds=4)
    reading = FileReading(await asyncio.to_thread(inspect_file, path))
    taken: list[tuple[float, float, str]] = []
    started = time.monotonic()
    await asyncio.gather(*(take(track, taken) for track in reading.tracks.values()))
    elapsed = time.monotonic() - started
    await reading.close()

    kinds = {kind: sum(1 for *_, k in taken if k == kind) for kind in ("video", "audio")}
    assert kinds["video"] == 4 * 30 and kinds["audio"] >= 4 * 50 - 2, kinds
    assert 3.8 <= elapsed <= 4 + 0.5, "the reading lasts as long as the file"
    early = [due - at for at, due, _ in taken]
    assert max(early) <= PACE + 0.005, "no packet goes more than PACE early"
    assert min(early) >= -LATE, "no packet goes late"
    # one wake-up hands out every packet due before the next: ~25 a second for ~80 packets
    assert reading.wakeups <= elapsed / PACE + 10, reading.wakeups
    assert len(taken) >= 3 * reading.wakeups, (len(taken), reading.wakeups)


async def test_a_consumer_that_stops_taking_loses_the_oldest_past_due(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "TRACK_QUEUE", 80)  # (over a read-ahead's 50 audio packets)
    path = make_media(tmp_path / "clip.webm", "vp8", "opus", seconds=3)
    reading = FileReading(await asyncio.to_thread(inspect_file, path))
    video, audio = reading.tracks["video"], reading.tracks["audio"]
    first = await video.recv()  # the reading starts; audio is never taken
    assert first.is_keyframe
    taken: list[tuple[float, float, str]] = []
    await take(video, taken)
    assert len(taken) == 3 * 30 - 1, "the video went on, in time, without its audio's taker"
    assert video.dropped == 0
    kept: list[int] = []
    with pytest.raises(MediaStreamError):  # the newest audio is kept, then its end
        while True:
            kept.append(int((await audio.recv()).pts or 0))
    assert audio.dropped >= 3 * 50 - 80 - 2 and len(kept) <= 80
    assert kept == sorted(kept) and kept[-1] >= (3 - 0.5) * 48000, "the newest kept"
    await reading.close()


async def test_a_file_whose_first_packet_comes_late_plays(tmp_path: Path) -> None:
    """Media times that start past the read-ahead (an MPEG-TS's 1.4 s) start at once."""
    clip = make_media(tmp_path / "clip.webm", "vp8", "opus", seconds=2)
    path = tmp_path / "late.mkv"
    with av.open(str(clip)) as source, av.open(str(path), "w", format="matroska") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in source.streams}
        for packet in source.demux():
            if packet.pts is None:
                continue
            shift = round(3 / packet.time_base)
            packet.pts += shift
            packet.dts = packet.pts
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    reading = FileReading(await asyncio.to_thread(inspect_file, path))
    taken: list[tuple[float, float, str]] = []
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(take(track, taken)
                                            for track in reading.tracks.values())), 10)
    assert time.monotonic() - started <= 2 + 0.5 and len(taken) >= 2 * 30 + 2 * 50 - 2
    await reading.close()


async def test_closing_ends_a_waiting_consumer(tmp_path: Path) -> None:
    path = make_media(tmp_path / "clip.webm", "vp8", "opus", seconds=10)
    reading = FileReading(await asyncio.to_thread(inspect_file, path))
    video = reading.tracks["video"]
    await video.recv()
    waiting = asyncio.ensure_future(take(video, []))
    await asyncio.sleep(0.3)
    await reading.close()
    await asyncio.wait_for(waiting, 2)
    assert reading._pacer is not None and reading._pacer.done()
