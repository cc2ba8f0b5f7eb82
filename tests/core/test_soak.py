"""200 publish/play/disconnect cycles through the real server leave nothing behind."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack

from core.client import WcsClient
from core.home import Home
from core.keys import ENGINE
from tests.core.rtc.relay_harness import PatternVideoTrack

CYCLES = 200
AT_ONCE = 10


async def cycle(url: str, name: str) -> None:
    publisher, player = WcsClient(url), WcsClient(url)
    try:
        await publisher.connect()
        published = await publisher.publish(name, [PatternVideoTrack(), AudioStreamTrack()])
        await published.wait_status("PUBLISHING")
        await player.connect()
        played = await player.play(name)
        await played.wait_status("PLAYING")
    finally:
        await player.close()
        await publisher.close()


def own_threads() -> set[str]:
    """Threads other than the loop's executor pool (asyncio_N, reused, bounded)."""
    return {t.name for t in threading.enumerate() if not t.name.startswith("asyncio_")}


def live_peer_connections() -> list[RTCPeerConnection]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, RTCPeerConnection)]


async def test_cycles_leave_no_peer_task_or_stream(home: Home, start_server: Callable[..., Any]) -> None:
    server = await start_server(home)
    engine = server.http_app[ENGINE]
    url = f"ws://127.0.0.1:{server.ws_port}/"
    await cycle(url, "warm-up")
    await asyncio.sleep(0.5)
    tasks_before = len(asyncio.all_tasks())
    threads_before = own_threads()
    for batch in range(CYCLES // AT_ONCE):
        await asyncio.gather(*(cycle(url, f"s{batch}-{i}") for i in range(AT_ONCE)))
    for _ in range(100):
        if not engine.sessions and not len(engine.registry):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # let aiortc's own closing tasks finish
    assert len(engine.registry) == 0
    assert engine.broadcasts == {}
    assert engine.sessions == {}
    assert live_peer_connections() == []
    assert len(asyncio.all_tasks()) <= tasks_before
    assert own_threads() <= threads_before, "a decoder or other thread outlived its stream"
