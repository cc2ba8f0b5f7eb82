"""``hookcast serve --workers N``: the supervisor refuses without Redis, its workers
share the public ports and each answer on their own, one that dies comes back, SIGTERM
drains them all; and what a worker is (hookcast.server.Server with ``worker``)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from hookcast.cli.workers import SECRET_ENV
from hookcast.config.home import Home
from hookcast.nodes import NODE_HEADER, node_credential
from hookcast.server import Server
from tests.cluster.redis_server import RedisServer
from tests.conftest import make_settings
from tests.served import Served, configure, free_port, hookcast


def _health(port: int) -> dict[str, object]:
    """One health answer, on a connection of its own (urllib never reuses one)."""
    url = f"http://127.0.0.1:{port}/rest-api/health"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def _workers_answering(port: int, wanted: set[int], timeout: float = 20) -> set[int]:
    """The workers seen answering health on ``port`` (new connections until every one
    of ``wanted`` answered, or ``timeout``); every request must be answered."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while not wanted <= seen and time.monotonic() < deadline:
        worker = _health(port).get("worker")
        assert isinstance(worker, int), worker
        seen.add(worker)
    return seen


def _children(served: Served) -> dict[int, int]:
    """Each worker's latest pid, as the supervisor logs them."""
    started = re.findall(r"worker (\d+) started \(pid (\d+)\)", served.log())
    return {int(index): int(pid) for index, pid in started}


def _parent_of(pid: int) -> int | None:
    """The parent pid of a running process (None once it is gone or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    state, parent = stat.rsplit(")", 1)[1].split()[:2]
    return None if state == "Z" else int(parent)


def _wait_until(condition: object, timeout: float, what: str, served: Served) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} within {timeout} s\n{served.log()[-3000:]}"
        time.sleep(0.1)


@pytest.fixture
def supervised() -> Iterator[list[Served]]:
    """Supervisors started by the test; at the end, any still running is stopped and
    any worker left behind killed."""
    started: list[Served] = []
    yield started
    for served in started:
        children = _children(served)
        if served.process.poll() is None:
            served.process.send_signal(signal.SIGTERM)
            try:
                served.process.wait(40)
            except Exception:
                served.process.kill()
                served.process.wait()
        for pid in children.values():
            if _parent_of(pid) is not None:
                os.kill(pid, signal.SIGKILL)


def test_more_workers_without_redis_are_refused_in_one_sentence(home: Home) -> None:
    ports = configure(home)
    began = time.monotonic()
    result = hookcast("serve", "--workers", "2", home=home)
    assert time.monotonic() - began < 10
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--workers 2 needs cluster_redis_url" in lines[0]
    assert "redis-server" in lines[0]
    assert "cluster_redis_url=redis://127.0.0.1:6379/0" in lines[0]
    assert "started" not in result.stderr and "listening" not in result.stderr
    for port in ports.values():  # nothing listens there
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))


def test_workers_auto_is_one_per_core(home: Home) -> None:
    """``auto`` counts the cores (refused here, with that count, for want of Redis)."""
    configure(home)
    result = hookcast("serve", "--workers", "auto", home=home)
    count = max(1, os.cpu_count() or 1)
    if count == 1:
        pytest.skip("one core: --workers auto serves alone")
    assert result.returncode == 2
    assert f"--workers {count} needs cluster_redis_url" in result.stderr


def test_a_bad_workers_value_names_the_option(home: Home) -> None:
    configure(home)
    result = hookcast("serve", "--workers", "0", home=home)
    assert result.returncode == 2
    assert "--workers: '0': a number of processes >= 1, or auto" in result.stderr


def test_workers_share_the_port_come_back_and_drain(
    home: Home, redis_server: RedisServer, supervised: list[Served]
) -> None:
    ports = configure(home, ip="127.0.0.1", cluster_redis_url=redis_server.url)
    served = Served.start(home, args=("--workers", "2"))
    supervised.append(served)
    served.wait_ready()
    http = ports["http.port"]

    # both workers answer on the one public port, each a child of the supervisor
    assert _workers_answering(http, {0, 1}) == {0, 1}
    children = _children(served)
    assert set(children) == {0, 1}
    assert all(_parent_of(pid) == served.process.pid for pid in children.values())

    # one killed: the port keeps answering, and a new worker 1 comes back
    # (its sockets close when its last thread is gone, which is when the supervisor
    # reaps it; connections the kernel gave it before that are reset)
    os.kill(children[1], signal.SIGKILL)
    killed = f"worker 1 (pid {children[1]}) killed by SIGKILL"
    _wait_until(lambda: killed in served.log(), 5, "the killed worker is reaped", served)
    assert _workers_answering(http, {0}) == {0}
    _wait_until(lambda: _children(served)[1] != children[1], 5, "worker 1 started again",
                served)
    assert _parent_of(_children(served)[1]) == served.process.pid
    assert _workers_answering(http, {0, 1}) == {0, 1}

    # SIGTERM drains them all; the supervisor exits 0 within its bound
    children = _children(served)
    log = served.stop(timeout=40)
    assert served.process.returncode == 0, log[-3000:]
    assert all(_parent_of(pid) is None for pid in children.values())
    for index, pid in children.items():
        assert f"worker {index} (pid {pid}) exited with status 0" in log
    assert "every worker stopped" in log


async def test_a_worker_shares_the_public_ports_and_owns_internal_ones(home: Home) -> None:
    """Two workers in one process stand for two processes: both listen on the same
    public ports (SO_REUSEPORT) and each on loopback ports of its own."""
    ports = {"ws.port": str(free_port()), "http.port": str(free_port())}
    servers = [Server(home, make_settings(**ports), worker=index) for index in (0, 1)]
    try:
        for server in servers:
            await server.start()
        connector = aiohttp.TCPConnector(force_close=True)  # a new connection each time
        async with aiohttp.ClientSession(connector=connector) as client:
            for index, server in enumerate(servers):
                assert server.info is not None and server.info.worker == index
                assert server.http_port == int(ports["http.port"])
                assert server.ws_port == int(ports["ws.port"])
                internal = server.info.internal_http_port
                assert internal not in (0, server.http_port)
                async with client.get(f"http://127.0.0.1:{internal}/rest-api/health") as r:
                    assert (await r.json())["worker"] == index
                ws = f"ws://127.0.0.1:{server.info.internal_ws_port}/"
                async with client.ws_connect(ws) as socket_:
                    assert not socket_.closed
            public = f"http://127.0.0.1:{ports['http.port']}/rest-api/health"
            seen: set[int] = set()
            for _ in range(200):
                async with client.get(public) as response:
                    seen.add((await response.json())["worker"])
                if seen == {0, 1}:
                    break
            assert seen == {0, 1}
    finally:
        for server in servers:
            await server.stop()


async def test_a_server_alone_has_no_worker_and_no_internal_ports(home: Home) -> None:
    server = Server(home, make_settings())
    try:
        await server.start()
        assert server.info is not None
        assert (server.info.worker, server.info.internal_http_port,
                server.info.internal_ws_port) == (None, 0, 0)
        async with aiohttp.ClientSession() as client:
            url = f"http://127.0.0.1:{server.http_port}/rest-api/health"
            async with client.get(url) as response:
                assert "worker" not in await response.json()
    finally:
        await server.stop()


def _node_call(port: int, secret: str) -> int:
    """The status of a REST call made as a node whose credential is signed with ``secret``."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/rest-api/stream/find_all", data=b"{}", method="POST",
        headers={"Content-Type": "application/json",
                 NODE_HEADER: node_credential(secret, "test-node")})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.mark.parametrize("own", ["", "the-home-s-secret"])
def test_a_worker_takes_the_supervisor_s_secret_unless_its_home_has_one(
    home: Home, own: str, supervised: list[Served]
) -> None:
    """A worker proves other nodes with the secret its supervisor made up
    (HOOKCAST_CLUSTER_SECRET), unless its home sets cluster_secret, which wins."""
    extra = {"cluster_secret": own} if own else {}
    ports = configure(home, rest_api_token="a-token", **extra)
    served = Served.start(home, args=("--worker", "0"),
                          env={**os.environ, SECRET_ENV: "made-up-by-the-supervisor"})
    supervised.append(served)
    assert served.wait_ready()["worker"] == 0
    http = ports["http.port"]
    assert _node_call(http, "a-wrong-secret") == 401
    assert (_node_call(http, "made-up-by-the-supervisor") == 401) == bool(own)
    if own:
        assert _node_call(http, own) != 401
    assert "w0 INFO hookcast: hookcast" in served.stop()


@pytest.mark.usefixtures("loopback", "relay_installed")
async def test_workers_publish_and_play_through_the_shared_port(
    home: Home, redis_server: RedisServer, supervised: list[Served]
) -> None:
    """A publisher and players that all connect to the one public WebSocket port of
    ``--workers 2``: the kernel spreads them over both workers; every player decodes
    the stream, the ones on the worker without the publisher through one auto-pull."""
    from hookcast.signalling.client import WcsClient
    from tests.core.rtc.relay_harness import wait_for
    from tests.plugins.test_pull import play, publish

    ports = configure(home, ip="127.0.0.1", cluster_redis_url=redis_server.url)
    served = Served.start(home, args=("--workers", "2"))
    supervised.append(served)
    served.wait_ready()
    _workers_answering(ports["http.port"], {0, 1})
    url = f"ws://127.0.0.1:{ports['ws.port']}/"
    clients = [WcsClient(url) for _ in range(13)]
    try:
        for client in clients:
            await client.connect()
        await publish(clients[0], "shared")
        played = [await play(client, "shared") for client in clients[1:]]
        for _, sinks in played:
            assert await wait_for(lambda s=sinks: s["video"].frames >= 5, 20), \
                "a player through the shared port decodes the stream"
        async with aiohttp.ClientSession() as http:
            find = f"http://127.0.0.1:{ports['http.port']}/rest-api/stream/find_all"
            async with http.post(find, json={}) as response:
                found = await response.json()
        nodes = {entry["node"] for entry in found}
        assert len(nodes) == 2, f"players landed on both workers: {nodes}"
        players = [e for e in found if not e["published"] and e["name"] == "shared"]
        assert len(players) == 12 + 1  # the users' players, and one pull between workers
    finally:
        for client in clients:
            await client.close()
