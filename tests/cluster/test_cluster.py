"""Two and three real hookcast servers (in this process, on 127.0.0.1) sharing one real
redis-server: one name one publisher, play anywhere through one shared auto-pull, the
REST API for the whole cluster, and no user hook fired for node-to-node traffic."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from hookcast.server import Server
from hookcast.signalling.client import WcsClient, WcsError
from tests.backend import Backend
from tests.cluster.redis_server import RedisServer
from tests.conftest import make_home
from tests.core.rtc.relay_harness import wait_for
from tests.plugins.test_pull import play, publish, rest, ws
from tests.plugins.test_rest_hooks import use_backend

Start = Callable[..., Any]
pytestmark = pytest.mark.usefixtures("loopback")
SECRET = "s3cret-of-the-test-cluster"


async def node(start_server: Start, tmp_path: Path, name: str, redis_url: str,
               backend: Backend | None = None, **extra: str) -> Server:
    properties = {"cluster_redis_url": redis_url, "cluster_secret": SECRET,
                  "cluster_node_id": name, "cluster_lease_ttl": "3",
                  "cluster_edge_linger": "1", **extra}
    home = make_home(tmp_path / name)
    if backend is not None:
        use_backend(home, backend)
    server: Server = await start_server(home, **properties)
    return server


def directory(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url, socket_timeout=2)


def pulls_of(server: Server) -> int:
    """Node-to-node plays served by ``server`` now (its sessions that are nodes)."""
    from hookcast.keys import ENGINE
    engine = server.http_app[ENGINE]
    return sum(1 for session in engine.sessions.values() if session.node)


async def test_one_publisher_cluster_wide_and_play_anywhere(
        redis_server: RedisServer, start_server: Start,
        connect_client: Callable[..., Any], tmp_path: Path) -> None:
    a = await node(start_server, tmp_path, "a", redis_server.url)
    b = await node(start_server, tmp_path, "b", redis_server.url)
    publisher = await connect_client(a)
    await publish(publisher, "cam")
    lease = json.loads(directory(redis_server).get("hookcast:stream:cam") or "{}")
    assert lease["node"] == "a" and lease["epoch"] >= 1

    # the same name on the other node: refused as WCS refuses a name in use
    duplicate = await connect_client(b)
    with pytest.raises(WcsError, match="Stream name is already in use"):
        stream = await duplicate.publish("cam", [])
        await stream.wait_status("PUBLISHING", timeout=10)

    # players on b: the stream comes through one pull from a, frames decoded
    clients = [await connect_client(b) for _ in range(6)]
    started = time.monotonic()
    played = await asyncio.gather(*(play(client, "cam") for client in clients))
    assert time.monotonic() - started < 10
    for _, sinks in played:
        assert await wait_for(lambda s=sinks: s["video"].frames >= 10, 15), "edge player decodes video"
    assert pulls_of(a) == 1, "every player on b shares one pull from a"

    # the REST API answers for both nodes; each entry names its node
    status, found = await rest(b, "stream/find_all")
    assert status == 200
    publishers = [e for e in found if e["published"] and e["name"] == "cam"]
    assert {e["node"] for e in publishers} >= {"a", "b"}  # the origin and b's copy
    origin = next(e for e in publishers if e["node"] == "a")
    status, nodes = await rest(b, "cluster/find_all")
    assert status == 200 and [n["node"] for n in nodes] == ["b", "a"] and nodes[0]["self"]

    # terminate through b reaches the publisher on a; b's players are stopped
    status, answer = await rest(b, "stream/terminate",
                                {"mediaSessionId": origin["mediaSessionId"]})
    assert status == 200 and origin["mediaSessionId"] in answer["terminated"]
    for player, _ in played:
        await player.wait_status("STOPPED", timeout=10)
    assert await wait_for(lambda: directory(redis_server).get("hookcast:stream:cam") is None, 5), "the lease released"


async def test_fifty_players_at_once_one_pull(
        redis_server: RedisServer, start_server: Start,
        connect_client: Callable[..., Any], tmp_path: Path) -> None:
    roomy = {"max_pending_streams_per_address": "64", "max_sessions_per_address": "64"}
    a = await node(start_server, tmp_path, "a", redis_server.url)
    b = await node(start_server, tmp_path, "b", redis_server.url, **roomy)
    await publish(await connect_client(a), "many")
    clients = await asyncio.gather(*(connect_client(b) for _ in range(50)))
    players = await asyncio.gather(*(c.play("many") for c in clients))
    await asyncio.gather(*(p.wait_status("PLAYING", timeout=20) for p in players))
    assert pulls_of(a) == 1
    # the last player leaves: b's copy closes after cluster_edge_linger (1 s)
    # (the server may see the last player go before every client's close() has returned:
    # the linger is counted from the first close, and bounded from the last)
    leaving = time.monotonic()
    await asyncio.gather(*(client.close() for client in clients))
    left = time.monotonic()
    assert await wait_for(lambda: pulls_of(a) == 0, 10), "the edge copy closed after its last player"
    closed = time.monotonic()
    assert closed - leaving >= 1, "closed no sooner than cluster_edge_linger (1 s)"
    assert closed - left <= 1 + 1.0, "closed cluster_edge_linger (1 s) after"


async def test_not_published_anywhere_is_not_found(
        redis_server: RedisServer, start_server: Start,
        connect_client: Callable[..., Any], tmp_path: Path) -> None:
    await node(start_server, tmp_path, "a", redis_server.url)
    b = await node(start_server, tmp_path, "b", redis_server.url)
    player = await (await connect_client(b)).play("nobody")
    with pytest.raises(WcsError, match="Stream not found"):
        await player.wait_status("PLAYING", timeout=10)


async def test_node_to_node_pull_fires_no_user_hooks(
        redis_server: RedisServer, start_server: Start,
        connect_client: Callable[..., Any], tmp_path: Path, backend: Any) -> None:
    """A REST-hook backend on both nodes: the user's publish on a and play on b reach
    it; b's pull from a (a node's connect and play) does not."""
    a = await node(start_server, tmp_path, "a", redis_server.url, backend,
                   cluster_edge_linger="30")
    b = await node(start_server, tmp_path, "b", redis_server.url, backend,
                   cluster_edge_linger="30")
    await publish(await connect_client(a), "hooked")
    _, sinks = await play(await connect_client(b), "hooked")
    assert await wait_for(lambda: sinks["video"].frames >= 5, 15), "edge player decodes video"
    await asyncio.sleep(0.5)  # notifications are sent after the status changes
    assert len(backend.bodies("connect")) == 2  # the publisher's and the player's only
    assert [b["name"] for b in backend.bodies("publishStream")] == ["hooked"]
    assert [b["name"] for b in backend.bodies("playStream")] == ["hooked"]  # the user's
    statuses = [(b["published"], b["status"]) for b in backend.bodies("StreamStatusEvent")]
    assert statuses.count((True, "PUBLISHING")) == 1  # a's publisher, not b's copy
    assert statuses.count((False, "PLAYING")) == 1  # the user's player, not b's pull


async def test_forged_node_credential_is_refused(
        redis_server: RedisServer, start_server: Start, tmp_path: Path) -> None:
    a = await node(start_server, tmp_path, "a", redis_server.url)
    client = WcsClient(ws(a))
    try:
        with pytest.raises(WcsError, match="not a valid node credential"):
            await client.connect(custom={"hookcastNode": "1.abc.b"})
    finally:
        await client.close()
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{a.http_port}/rest-api/stream/find_all"
        async with http.post(url, json={}, headers={"X-Hookcast-Node": "1.abc.b"}) as r:
            assert r.status == 401
            assert "X-Hookcast-Node" in (await r.json())["message"]


async def test_no_secret_no_join(redis_server: RedisServer, start_server: Start,
                                 tmp_path: Path,
                                 caplog: pytest.LogCaptureFixture) -> None:
    server: Server = await start_server(make_home(tmp_path / "alone"),
                                        cluster_redis_url=redis_server.url)
    assert "cluster_secret is empty" in caplog.text
    assert not directory(redis_server).keys("hookcast:*")
    status, _ = await rest(server, "cluster/find_all")
    assert status == 404


async def test_console_shows_the_nodes_and_where_streams_live(
        redis_server: RedisServer, start_server: Start,
        connect_client: Callable[..., Any], tmp_path: Path) -> None:
    a = await node(start_server, tmp_path, "a", redis_server.url)
    b = await node(start_server, tmp_path, "b", redis_server.url)
    await publish(await connect_client(a), "seen")
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{b.http_port}/console/events"
        async with http.get(url) as response:
            assert response.status == 200
            line = b""
            while not line.startswith(b"data: "):
                line = await asyncio.wait_for(response.content.readline(), 10)
    snapshot = json.loads(line[len(b"data: "):])
    assert [(n["node"], n["self"]) for n in snapshot["nodes"]] == [("b", True), ("a", False)]
    assert [(s["name"], s["node"]) for s in snapshot["streams"]] == [("seen", "a")]
    page = await asyncio.to_thread(_get, f"http://127.0.0.1:{b.http_port}/")
    assert 'id="nodes-card"' in page


def _get(url: str) -> str:
    import urllib.request
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())
