"""PulledTrack across reconnections: the timestamps go on, a replaced connection's late
packets are dropped."""

from __future__ import annotations

import asyncio
import fractions

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from hookcast.plugins._remote import PulledTrack


class Remote(MediaStreamTrack):
    """A remote connection's track: yields the pts put in ``queue``; None ends it."""

    kind = "video"

    def __init__(self, *pts: int) -> None:
        super().__init__()
        self.queue: asyncio.Queue[int | None] = asyncio.Queue()
        for value in pts:
            self.queue.put_nowait(value)

    async def recv(self) -> av.Packet:
        value = await self.queue.get()
        if value is None:
            raise MediaStreamError
        packet = av.Packet(b"x")
        packet.pts = packet.dts = value
        packet.time_base = fractions.Fraction(1, 90000)
        return packet


async def test_timestamps_go_on_across_a_reconnection_and_late_packets_are_dropped() -> None:
    track = PulledTrack("video", "video/VP8")
    first = Remote(90_000, 93_000, 96_000)
    track.attach(first, None)  # type: ignore[arg-type]
    got = [(await track.recv()).pts for _ in range(3)]
    waiting = asyncio.create_task(track.recv())  # blocked on the first connection
    await asyncio.sleep(0.2)
    second = Remote(5_000, 8_000)  # a new connection starts from another origin
    track.attach(second, None)  # type: ignore[arg-type]
    first.queue.put_nowait(99_000)  # a late packet of the replaced connection
    got.append((await waiting).pts)
    got.append((await track.recv()).pts)
    assert got[:3] == [90_000, 93_000, 96_000]
    gap = got[3] - got[2]
    # the new connection's first packet follows the last one by the time it was down
    assert 0.2 * 90_000 <= gap < 2 * 90_000, got
    assert got[4] - got[3] == 3_000, "the new connection's own spacing is kept"
    track.end()
    first.queue.put_nowait(None)
    second.queue.put_nowait(None)
