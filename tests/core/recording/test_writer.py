"""The writer's overflow policy through the real server: a disk that stalls (the writer
thread held for seconds) behind a small queue makes the recorder drop packets; the file
then has a gap that starts again at a video keyframe — never a broken picture — asked
of the publisher at once (aiortc's encoder, like a browser, sends one only every 250
frames unasked), and the gap is counted in ``hookcast_recording_gaps_total``."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import av
import pytest

from hookcast.config.home import Home
from hookcast.recording import muxer, writer
from hookcast.signalling.client import WcsClient
from tests.core.recording.test_recording import http, publish, settled

Start = Callable[..., Any]
pytestmark = pytest.mark.usefixtures("loopback")

#: seconds the writer thread is held: longer than the queue holds
STALL = 2.5
#: a jump between two pictures longer than this is a gap (30 fps: 33 ms apart)
GAP = 0.2


def video_packets(path: str) -> list[tuple[float, bool]]:
    """(time, keyframe) of every video packet of a file, in order."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        return [(float(p.pts * p.time_base), p.is_keyframe)
                for p in container.demux(stream) if p.pts is not None and p.size]


def corrupt_pictures(path: str) -> tuple[int, int]:
    """(pictures decoded, of which flagged corrupt) in a file's video."""
    decoded = corrupt = 0
    with av.open(path) as container:
        for frame in container.decode(video=0):
            decoded += 1
            corrupt += bool(frame.is_corrupt)
    return decoded, corrupt


async def test_a_stalled_disk_leaves_a_gap_that_resumes_at_a_keyframe(
    home: Home, start_server: Start, connect_client: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "QUEUE_SIZE", 2)  # half a second of media
    stall = threading.Event()
    write = muxer.Muxer.write

    def stalling_write(self: muxer.Muxer, *args: Any, **kwargs: Any) -> None:
        if stall.is_set():  # once: the disk hangs for STALL seconds
            stall.clear()
            time.sleep(STALL)
        write(self, *args, **kwargs)

    monkeypatch.setattr(muxer.Muxer, "write", stalling_write)
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    stream, _ = await publish(client, "cam", record=True)
    await asyncio.sleep(2)
    stall.set()
    await asyncio.sleep(STALL + 2)
    _, metrics, _ = await http(server, "GET", "/metrics")
    (gaps,) = [float(line.split()[1]) for line in metrics.decode().splitlines()
               if line.startswith("hookcast_recording_gaps_total ")]
    assert gaps >= 1, "the gap is counted"
    await client.stop(stream)
    await settled(server)
    path = str(home.records / stream.last["recordName"])
    packets = video_packets(path)
    jumps = [(before, after) for before, after in itertools.pairwise(packets)
             if after[0] - before[0] > GAP]
    assert jumps, "the stall left no gap in the file"
    assert packets[-1][0] - jumps[-1][1][0] > 1, "the recording went on after the gap"
    assert sum(after[0] - before[0] for before, after in jumps) >= STALL / 2
    assert all(after[1] for _, after in jumps), f"a gap resumed on a non-keyframe: {jumps}"
    decoded, corrupt = corrupt_pictures(path)
    assert decoded == len(packets) and corrupt == 0, (decoded, len(packets), corrupt)
