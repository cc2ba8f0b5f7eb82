"""The record_rotation plugin through real recordings: parts cut at keyframes, each
playable on its own, and not one frame lost or doubled between parts: the H.264 the
publisher's encoder produced is captured and compared, picture by picture, with the
parts read back in order."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aiortc.codecs import h264
from aiortc.mediastreams import VideoStreamTrack

from hookcast.config.home import Home
from hookcast.server import Server
from hookcast.signalling.client import WcsClient
from tests.conftest import write_plugin
from tests.core.recording.sources import captured_h264, recorded_h264, slices
from tests.core.recording.test_recording import EVENTS, publish, settled, wait_events

Start = Callable[..., Any]
Connect = Callable[..., Any]
pytestmark = pytest.mark.usefixtures("loopback")


def check_parts(parts: list[Path], published: list[list[bytes]]) -> tuple[int, int]:
    """Every part starts with a keyframe; the parts' pictures, in order, are exactly a run
    of the published ones: none lost or repeated within or between parts. The number of
    pictures recorded, and of those published from the first recorded one on."""
    recorded: list[bytes] = []
    for part in parts:
        with av.open(str(part)) as container:
            first = next(p for p in container.demux(container.streams.video[0]) if p.size)
            assert first.is_keyframe, f"{part.name} does not start with a keyframe"
        recorded += recorded_h264(str(part))
    sent = [slices(nals) for nals in published]
    start = sent.index(recorded[0])
    assert recorded == sent[start:start + len(recorded)], "a picture lost or repeated"
    return len(recorded), len(sent) - start


class NoiseVideoTrack(VideoStreamTrack):
    """Pictures of random noise: the encoder can only spend its whole bitrate on them."""

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(320, 240, "yuv420p")
        for plane in frame.planes:
            plane.update(os.urandom(plane.buffer_size))
        frame.pts, frame.time_base = pts, time_base
        return frame


async def recorded_parts(home: Home, count: int) -> list[Path]:
    finished = await wait_events(home, "finished", count)
    started = await wait_events(home, "started", count)
    assert [e["part"] for e in started] == list(range(1, len(started) + 1))
    assert sorted(e["file"] for e in started) == sorted(e["file"] for e in finished)
    assert all(e["recordName"] == e["file"] for e in started + finished)
    ordered = sorted(finished, key=lambda e: e["part"])
    return [home.records / e["file"] for e in ordered]


async def test_rotation_by_seconds(home: Home, start_server: Start,
                                   connect_client: Connect) -> None:
    write_plugin(home, "events", EVENTS)
    server = await start_server(home, record_rotation="3")
    client: WcsClient = await connect_client(server)
    with captured_h264() as published:
        stream, _ = await publish(client, "cam", record=True)
        await asyncio.sleep(10)
        await client.stop(stream)
    await settled(server)
    parts = await recorded_parts(home, 4)
    base = f"stream-{client.session_id}-{stream.media_session_id}"
    assert [p.name for p in parts] == [f"{base}-{n}.mp4" for n in range(1, len(parts) + 1)]
    for part in parts[:-1]:
        with av.open(str(part)) as container:
            seconds = container.duration / av.time_base
        assert 2.9 <= seconds <= 3.6, f"{part.name}: {seconds:.2f} s"
    recorded, sent = check_parts(parts, published)
    assert abs(recorded - sent) <= 0.02 * sent, f"{recorded} frames recorded, {sent} sent"


async def test_rotation_by_size_from_rest(home: Home, start_server: Start,
                                          connect_client: Connect,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """REST ``config.rotation`` overrides the property (here: 100 s, no cut) for that
    recording; parts are cut once they hold a megabyte."""
    for name in ("DEFAULT_BITRATE", "MIN_BITRATE", "MAX_BITRATE"):  # the publisher's encoder
        monkeypatch.setattr(h264, name, 4_000_000)
    write_plugin(home, "events", EVENTS)
    server = await start_server(home, record_rotation="100")
    client: WcsClient = await connect_client(server)
    with captured_h264() as published:
        stream = await client.publish("cam", [NoiseVideoTrack()], video_codec="H264")
        await stream.wait_status("PUBLISHING")
        await record_in_megabytes(server, stream.media_session_id)
        await asyncio.sleep(7)
        await client.stop(stream)
    await settled(server)
    parts = await recorded_parts(home, 3)
    sizes = [p.stat().st_size for p in parts]
    assert all(1_000_000 <= size <= 1_400_000 for size in sizes[:-1]), sizes
    check_parts(parts, published)


async def record_in_megabytes(server: Server, media_session_id: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"http://127.0.0.1:{server.http_port}/rest-api/stream/startRecording",
            json={"mediaSessionId": media_session_id, "config": {"rotation": "1M"}},
        ) as response:
            assert response.status == 200, await response.text()


async def test_without_the_plugin_recordings_are_not_cut(
    home: Home, start_server: Start, connect_client: Connect
) -> None:
    server: Server = await start_server(home, record_rotation="1",
                                        disabled_plugins="record_rotation")
    client: WcsClient = await connect_client(server)
    stream, _ = await publish(client, "cam", "VP8", record=True)
    await asyncio.sleep(2.5)
    await client.stop(stream)
    await settled(server)
    assert len([p for p in home.records.iterdir() if not p.name.startswith(".")]) == 1
