"""Live publish and play through the real server: real WebSocket signalling, real
WebRTC on 127.0.0.1, frames decoded by PyAV on the player side."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiortc.mediastreams import AudioStreamTrack

from core.client import ClientStream, WcsClient
from core.home import Home
from core.server import Server
from tests.core.rtc.relay_harness import DecodingSink, PatternVideoTrack

Start = Callable[..., Any]


@pytest.fixture
async def server(home: Home, start_server: Start) -> Server:
    return await start_server(home)  # type: ignore[no-any-return]


@pytest.fixture
async def clients(server: Server) -> AsyncIterator[Callable[..., Any]]:
    opened: list[WcsClient] = []

    async def connect(**fields: Any) -> WcsClient:
        client = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
        opened.append(client)
        await client.connect(**fields)
        return client

    yield connect
    for client in opened:
        await client.close()


def sinks_for(stream: ClientStream) -> dict[str, DecodingSink]:
    mimes = {"video": stream.last.get("videoCodec"), "audio": "opus"}
    names = {"VP8": "video/vp8", "H264": "video/h264", "opus": "audio/opus"}
    return {t.kind: DecodingSink(t, names[mimes[t.kind]]) for t in stream.tracks}


async def test_publish_and_play_vp8(clients: Callable[..., Any]) -> None:
    publisher = await clients()
    stream = await publisher.publish("cam", [PatternVideoTrack(), AudioStreamTrack()])
    await stream.wait_status("PUBLISHING")
    viewer = await clients()
    played = await viewer.play("cam")
    event = await played.wait_status("PLAYING")
    assert event["videoCodec"] == "VP8"
    sinks = sinks_for(played)
    await asyncio.sleep(3)
    assert sinks["video"].frames > 30
    assert sinks["video"].errors == 0
    assert sinks["audio"].frames > 50
    for sink in sinks.values():
        await sink.close()
