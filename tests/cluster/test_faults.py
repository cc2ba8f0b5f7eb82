"""The faults a cluster must survive, driven for real: ``hookcast serve`` processes
killed (-9) and frozen (SIGSTOP), redis-server restarted and stopped; a real publisher
and real players (decoding) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from hookcast.signalling.client import WcsClient, WcsError
from tests.cluster.redis_server import RedisServer
from tests.conftest import make_home
from tests.core.rtc.relay_harness import wait_for
from tests.plugins.test_pull import play, publish
from tests.served import Served, configure

pytestmark = pytest.mark.usefixtures("loopback", "relay_installed")
SECRET = "the-secret-of-the-fault-tests"
TTL = 3.0


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Any]:
    """``start(name, redis_url, **properties)``: a ``hookcast serve`` node, ready; all are
    stopped (SIGCONT first, in case one is frozen) at the end."""
    started: list[Served] = []

    def start(name: str, redis_url: str, **extra: str) -> Served:
        home = make_home(tmp_path / name)
        configure(home, ip="127.0.0.1", cluster_redis_url=redis_url, cluster_secret=SECRET,
                  cluster_node_id=name, cluster_lease_ttl=str(TTL), **extra)
        served = Served.start(home)
        started.append(served)
        served.wait_ready()
        return served

    yield start
    for served in started:
        if served.process.poll() is None:
            served.process.send_signal(signal.SIGCONT)
            served.stop(timeout=30)
        served.remove_log()


async def client_of(served: Served) -> WcsClient:
    client = WcsClient(f"ws://127.0.0.1:{served.ws_port}/")
    await client.connect()
    return client


async def rest(served: Served, method: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{served.http_port}/rest-api/{method}"
        async with http.post(url, json={} if body is None else body) as response:
            return response.status, await response.json(content_type=None)


def keys(redis_server: RedisServer, pattern: str) -> list[str]:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=2)
    try:
        return sorted(k.decode() for k in client.keys(pattern))
    finally:
        client.close()


async def directory(redis_server: RedisServer, pattern: str = "hookcast:*") -> list[str]:
    return await asyncio.to_thread(keys, redis_server, pattern)


async def eventually(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def test_origin_killed(redis_server: RedisServer, nodes: Any) -> None:
    """kill -9 of the origin: the edge's players are STOPPED within the lease TTL (plus
    one heartbeat), and the directory holds neither its lease nor its record."""
    origin, edge = nodes("origin", redis_server.url), nodes("edge", redis_server.url)
    publisher = await client_of(origin)
    await publish(publisher, "cam")
    clients = [await client_of(edge) for _ in range(3)]
    played = [await play(client, "cam") for client in clients]
    for _, sinks in played:
        assert await wait_for(lambda s=sinks: s["video"].frames >= 5, 15), "edge player plays"
    origin.process.kill()
    killed = time.monotonic()
    for player, _ in played:
        await player.wait_status("STOPPED", timeout=TTL + 5)
    assert time.monotonic() - killed <= TTL + TTL / 3 + 1.5
    await eventually(lambda: _absent(redis_server, "hookcast:stream:cam", "hookcast:node:origin"),
                     TTL + 1, "the dead node's lease and record expire")
    for client in [publisher, *clients]:
        await client.close()


async def _absent(redis_server: RedisServer, *names: str) -> bool:
    found = await directory(redis_server)
    return not set(names) & set(found)


async def test_frozen_origin_loses_its_lease_and_stops_claiming(
        redis_server: RedisServer, nodes: Any) -> None:
    """SIGSTOP of the origin: its players elsewhere are STOPPED once its lease lapsed;
    the name can be published on another node meanwhile; when the frozen node wakes up
    it finds the name taken (another epoch) and does not claim it back."""
    origin, other = nodes("origin", redis_server.url), nodes("other", redis_server.url)
    publisher = await client_of(origin)
    await publish(publisher, "cam")
    viewer = await client_of(other)
    player, sinks = await play(viewer, "cam")
    assert await wait_for(lambda: sinks["video"].frames >= 5, 15), "edge player plays"
    origin.process.send_signal(signal.SIGSTOP)
    try:
        await player.wait_status("STOPPED", timeout=TTL + 5)
        second = await client_of(other)
        await eventually(lambda: _absent(redis_server, "hookcast:stream:cam"), TTL + 2,
                         "the frozen node's lease lapses")
        await publish(second, "cam")  # the name is free: published on the other node
        taken = json.loads(await asyncio.to_thread(
            lambda: redis.Redis.from_url(redis_server.url).get("hookcast:stream:cam")))
        assert taken["node"] == "other"
    finally:
        origin.process.send_signal(signal.SIGCONT)
    await asyncio.sleep(TTL)  # the woken node renews: it finds another's lease
    lease = json.loads(await asyncio.to_thread(
        lambda: redis.Redis.from_url(redis_server.url).get("hookcast:stream:cam")))
    assert (lease["node"], lease["epoch"]) == ("other", taken["epoch"])
    assert "stops claiming it" in origin.log()
    for client in (publisher, viewer, second):
        await client.close()


async def test_redis_restarted_and_down(redis_server: RedisServer, nodes: Any) -> None:
    """Redis stopped: local publish and play go on, the cluster's REST answers a clear
    error, logged once; Redis back (empty): the node registers again and re-claims its
    lease within 5 s, with no local stream lost."""
    node = nodes("solo", redis_server.url)
    publisher = await client_of(node)
    stream, _, _ = await publish(publisher, "kept")
    redis_server.stop()
    await asyncio.sleep(TTL)  # a few heartbeats against no Redis
    status, answer = await rest(node, "cluster/find_all")
    assert status == 503 and "Redis cannot be reached" in answer["message"]
    # local publish and play keep working
    other = await client_of(node)
    await publish(other, "while-down")
    watcher = await client_of(node)
    _, sinks = await play(watcher, "kept")
    assert await wait_for(lambda: sinks["video"].frames >= 5, 15), "local play while Redis is down"
    assert node.log().count("Redis cannot be reached") == 1, "logged once"
    redis_server.start()  # the same port, nothing in it
    back = time.monotonic()
    await eventually(lambda: _present(redis_server, "hookcast:node:solo",
                                      "hookcast:stream:kept", "hookcast:stream:while-down"),
                     5, "the node and its leases are back within 5 s")
    assert time.monotonic() - back <= 5
    assert stream.status == "PUBLISHING"
    status, found = await rest(node, "cluster/find_all")
    assert status == 200 and found[0]["node"] == "solo"
    assert "Redis is back" in node.log()
    for client in (publisher, other, watcher):
        await client.close()


async def _present(redis_server: RedisServer, *names: str) -> bool:
    try:
        found = await directory(redis_server)
    except redis.RedisError:
        return False
    return set(names) <= set(found)


async def test_edge_follows_a_republish_elsewhere(redis_server: RedisServer,
                                                  nodes: Any) -> None:
    """The origin's publisher stops: the edge's player is STOPPED as a local one would
    be; the name republished on another node plays again on the edge, from there."""
    a, b = nodes("a", redis_server.url), nodes("b", redis_server.url)
    edge = nodes("edge", redis_server.url)
    first = await client_of(a)
    stream, _, _ = await publish(first, "show")
    viewer = await client_of(edge)
    player, sinks = await play(viewer, "show")
    assert await wait_for(lambda: sinks["video"].frames >= 5, 15), "edge plays a's stream"
    await first.stop(stream)
    await player.wait_status("STOPPED", timeout=10)
    assert player.info == "Stopped by publisher stop"
    second = await client_of(b)
    await publish(second, "show")
    _, sinks = await play(viewer, "show")
    assert await wait_for(lambda: sinks["video"].frames >= 5, 15), "edge plays b's stream"
    status, found = await rest(edge, "stream/find", {"name": "show", "published": True})
    assert status == 200 and "b" in {e["node"] for e in found}
    for client in (first, second, viewer):
        await client.close()


async def test_play_waits_are_bounded(redis_server: RedisServer, nodes: Any) -> None:
    """A lease whose node does not answer (its URLs lead nowhere): the player waits
    cluster_play_wait at most, then Stream not found."""
    edge = nodes("edge", redis_server.url, cluster_play_wait="1.5")
    lease = {"node": "ghost", "instance": "x", "epoch": 1, "ws": "ws://127.0.0.1:9/",
             "http": "http://127.0.0.1:9"}
    await asyncio.to_thread(lambda: redis.Redis.from_url(redis_server.url).set(
        "hookcast:stream:haunted", json.dumps(lease), px=20_000))
    viewer = await client_of(edge)
    started = time.monotonic()
    player = await viewer.play("haunted")
    with pytest.raises(WcsError, match="Stream not found"):
        await player.wait_status("PLAYING", timeout=10)
    assert time.monotonic() - started < 1.5 + 1.5
    await viewer.close()
