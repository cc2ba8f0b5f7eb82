"""200 publish/play/disconnect cycles through the real server leave nothing behind."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack

from hookcast.config.home import Home
from hookcast.keys import ENGINE
from hookcast.plugins.rest_hooks import MAX_CONNECTIONS
from hookcast.signalling.client import WcsClient
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


def own_tasks() -> list[asyncio.Task[object]]:
    """Tasks other than idle HTTP keep-alive connections of the REST-hook client's pool
    to the built-in echo application (pooled on purpose, at most MAX_CONNECTIONS)."""
    return [t for t in asyncio.all_tasks()
            if "RequestHandler.start" not in repr(t.get_coro())]


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
    tasks_before = len(own_tasks())
    threads_before = own_threads()
    # what earlier tests of this process may still be closing is not this test's
    peers_before = {id(pc) for pc in live_peer_connections()}
    for batch in range(CYCLES // AT_ONCE):
        await asyncio.gather(*(cycle(url, f"s{batch}-{i}") for i in range(AT_ONCE)))
    for _ in range(100):
        if not engine.sessions and not len(engine.registry):
            break
        await asyncio.sleep(0.05)
    # plugins hear of stream ends in the background; those notifications must all finish
    await asyncio.wait_for(engine.settle(), 10)
    def new_peers() -> list[RTCPeerConnection]:
        return [pc for pc in live_peer_connections() if id(pc) not in peers_before]

    for _ in range(150):  # aiortc finishes closing transports in tasks of its own (slow when loaded)
        if not new_peers():
            break
        await asyncio.sleep(0.1)
    assert len(engine.registry) == 0
    assert engine.broadcasts == {}
    assert len(engine.sessions) == 0
    assert new_peers() == [], "a peer connection of these cycles outlived them"
    for _ in range(100):  # sessions finish telling plugins they ended, then their tasks end
        if len(own_tasks()) <= tasks_before:
            break
        await asyncio.sleep(0.1)
    assert len(own_tasks()) <= tasks_before, [t.get_coro() for t in own_tasks()]
    keep_alive_connections = len(asyncio.all_tasks()) - len(own_tasks())
    assert keep_alive_connections <= MAX_CONNECTIONS, "the REST-hook connection pool is bounded"
    assert own_threads() <= threads_before, "a decoder or other thread outlived its stream"
