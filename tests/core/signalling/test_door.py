"""The door of the signalling port: sockets that never say who they are cannot lock
anyone out, one address cannot take every session, and a socket that stays silent is
closed after connection_timeout."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiortc.mediastreams import AudioStreamTrack

from hookcast.config.home import Home
from hookcast.keys import ENGINE
from hookcast.signalling.client import WcsClient, WcsError
from tests.core.rtc.relay_harness import PatternVideoTrack
from tests.served import Served, configure

Start = Callable[..., Any]


@asynccontextmanager
async def http_from(address: str) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client whose sockets leave from ``address`` (any of 127.0.0.0/8)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0), limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        yield http


async def connection(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """Send ``connection`` and return the answer (getUserData or fail)."""
    await ws.send_json({"message": "connection", "data": [{"appKey": "defaultApp"}]})
    while True:
        frame = await asyncio.wait_for(ws.receive(), 5)
        assert frame.type is aiohttp.WSMsgType.TEXT, frame
        message = json.loads(frame.data)
        if message["message"] in ("getUserData", "fail"):
            return message  # type: ignore[no-any-return]


async def silent_socket(http: aiohttp.ClientSession, url: str, pings: list[int]) -> None:
    """A socket that never sends connection but answers every ping, as long as it is
    left open."""
    try:
        async with http.ws_connect(url) as ws:
            async for frame in ws:
                if frame.type is aiohttp.WSMsgType.TEXT and '"ping"' in frame.data:
                    pings.append(1)
                    await ws.send_json({"message": "pong", "data": [None]})
    except aiohttp.ClientError:
        pass


async def test_silent_sockets_are_closed_after_connection_timeout(
    home: Home, start_server: Start
) -> None:
    server = await start_server(home, connection_timeout="0.5")
    url = f"ws://127.0.0.1:{server.ws_port}/"
    async with aiohttp.ClientSession() as http:
        silent = await http.ws_connect(url)
        talker = await http.ws_connect(url)
        assert (await connection(talker))["message"] == "getUserData"
        started = time.monotonic()
        frame = await asyncio.wait_for(silent.receive(), 5)
        assert frame.type is aiohttp.WSMsgType.CLOSE, frame
        assert silent.close_code == 1008
        assert "connection_timeout" in frame.extra
        assert time.monotonic() - started < 2
        await asyncio.sleep(0.6)
        assert not talker.closed  # a session that identified itself stays
        await talker.close()
    assert server.http_app[ENGINE].sessions.dropped["connection_timeout"] == 1


async def test_one_address_cannot_take_every_session(home: Home, start_server: Start) -> None:
    server = await start_server(home, max_sessions_per_address="3")
    url = f"ws://127.0.0.1:{server.ws_port}/"
    async with http_from("127.0.0.1") as one, http_from("127.0.0.2") as other:
        sockets = [await one.ws_connect(url) for _ in range(3)]
        for ws in sockets:
            assert (await connection(ws))["message"] == "getUserData"
        fourth = await one.ws_connect(url)
        refused = await connection(fourth)
        assert refused["message"] == "fail"
        assert refused["data"][0]["info"] == ("too many sessions from 127.0.0.1: it has 3 "
                                              "(max_sessions_per_address)")
        await asyncio.wait_for(fourth.receive(), 5)
        assert fourth.close_code == 1013
        elsewhere = await other.ws_connect(url)  # another address has its own room
        assert (await connection(elsewhere))["message"] == "getUserData"
        for ws in [*sockets, elsewhere]:
            await ws.close()
    assert server.http_app[ENGINE].sessions.refused["max_sessions_per_address"] == 1


async def test_a_newcomer_drops_the_oldest_silent_socket_not_an_identified_one(
    home: Home, start_server: Start
) -> None:
    server = await start_server(home, max_sessions_per_address="3")
    url = f"ws://127.0.0.1:{server.ws_port}/"
    async with aiohttp.ClientSession() as http:
        known = await http.ws_connect(url)
        assert (await connection(known))["message"] == "getUserData"
        oldest = await http.ws_connect(url)
        newer = await http.ws_connect(url)
        await asyncio.sleep(0.1)
        newcomer = await http.ws_connect(url)
        assert (await connection(newcomer))["message"] == "getUserData"
        frame = await asyncio.wait_for(oldest.receive(), 5)
        assert frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                              aiohttp.WSMsgType.ERROR), frame
        assert not newer.closed and not known.closed
        assert (await connection(newer))["message"] == "getUserData"
        for ws in (known, newer, newcomer):
            await ws.close()
    assert server.http_app[ENGINE].sessions.dropped["room"] == 1


async def test_a_thousand_silent_sockets_lock_nobody_out(home: Home) -> None:
    """The hostile trial: 1,000 sockets from one address that never send connection but
    answer every ping; a real client still connects and publishes within 2 s."""
    configure(home, ip="127.0.0.1", **{"keep_alive.server_interval": "500"})
    served = Served.start(home)
    try:
        served.wait_ready()
        url = f"ws://127.0.0.1:{served.ws_port}/"
        pings: list[int] = []
        async with http_from("127.0.0.1") as http:
            flood = [asyncio.ensure_future(silent_socket(http, url, pings))
                     for _ in range(1000)]
            await asyncio.sleep(3)  # all of them opened (and most dropped again)
            assert pings, "the silent sockets were never pinged: the flood did not happen"
            started = time.monotonic()
            client = WcsClient(url)
            try:
                await client.connect()
                stream = await client.publish("door", [PatternVideoTrack(),
                                                       AudioStreamTrack()])
                await stream.wait_status("PUBLISHING", timeout=10)
                took = time.monotonic() - started
            finally:
                await client.close()
            for task in flood:
                task.cancel()
            await asyncio.gather(*flood, return_exceptions=True)
        assert took < 2, f"a real client took {took:.1f} s to connect and publish"
        metrics = served.get("/metrics")
        dropped = next(line for line in metrics.splitlines()
                       if line.startswith('hookcast_sessions_dropped_total{reason="room"}'))
        assert float(dropped.split()[-1]) >= 800
    finally:
        log = served.stop()
    assert log.count("\n") < 400, "every dropped socket wrote its own log line"


async def test_refused_sessions_are_counted_in_metrics(home: Home, start_server: Start) -> None:
    server = await start_server(home, max_sessions="1")
    first = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    second = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    try:
        await first.connect()
        with pytest.raises(WcsError, match=r"\(max_sessions\)"):
            await second.connect()
    finally:
        await second.close()
        await first.close()
    async with aiohttp.ClientSession() as http, http.get(
        f"http://127.0.0.1:{server.http_port}/metrics"
    ) as response:
        text = await response.text()
    assert 'hookcast_sessions_refused_total{reason="max_sessions"} 1.0' in text
    assert 'hookcast_sessions_dropped_total{reason="room"} 0.0' in text


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1])


async def offer_text() -> str:
    """A real publisher's offer (video and audio); its ICE never runs."""
    from aiortc import RTCPeerConnection
    from aiortc.mediastreams import VideoStreamTrack

    pc = RTCPeerConnection()
    pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


async def pending_flood(http: aiohttp.ClientSession, url: str, sdp: str, index: int,
                        statuses: list[str]) -> None:
    """One socket: connection, then 32 publishes whose ICE never completes; it reads
    what the server says until it is cancelled."""
    try:
        async with http.ws_connect(url) as ws:
            if (await connection(ws))["message"] != "getUserData":
                return
            for n in range(32):
                await ws.send_json({"message": "publishStream", "data": [{
                    "mediaSessionId": f"flood-{index}-{n}", "name": f"flood-{index}-{n}",
                    "sdp": sdp}]})
            async for frame in ws:
                if frame.type is aiohttp.WSMsgType.TEXT and "StreamStatus" in frame.data:
                    statuses.append(json.loads(frame.data)["data"][0]["info"])
    except aiohttp.ClientError:
        pass


@pytest.mark.usefixtures("loopback")
async def test_a_flood_of_pending_publishes_is_bounded(home: Home) -> None:
    """The hostile trial: 300 sockets x 32 publishStream whose ICE never completes,
    from one address. A real client (another address) connects and publishes within
    2 s, and the server's memory comes back once the flood is over."""
    configure(home, ip="127.0.0.1", ice_connect_timeout="30")
    served = Served.start(home)
    try:
        served.wait_ready()
        url = f"ws://127.0.0.1:{served.ws_port}/"
        sdp = await offer_text()

        async def real_client(name: str) -> float:
            started = time.monotonic()
            client = WcsClient(url)
            try:
                await client.connect()
                stream = await client.publish(name, [PatternVideoTrack(), AudioStreamTrack()])
                await stream.wait_status("PUBLISHING", timeout=30)
                return time.monotonic() - started
            finally:
                await client.close()

        async def flood(sockets: int, statuses: list[str]) -> float:
            """The flood from 127.0.0.2; a real client publishes 4 s into it."""
            async with http_from("127.0.0.2") as http:
                tasks = [asyncio.ensure_future(pending_flood(http, url, sdp, i, statuses))
                         for i in range(sockets)]
                try:
                    await asyncio.sleep(4)
                    return await real_client(f"real-{sockets}")
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)

        await flood(2, [])  # a server that has served: the flood's code paths ran once
        await asyncio.sleep(1)
        before = rss_kib(served.process.pid)
        statuses: list[str] = []
        took = await flood(300, statuses)
        peak = rss_kib(served.process.pid)
        refused = [s for s in statuses if "(max_pending_streams_per_" in s]
        assert refused, f"the flood was never bounded: {statuses[:5]}"
        assert took < 2, f"a real client took {took:.1f} s to connect and publish"
        for _ in range(60):  # the flood's streams end with its sessions and their memory
            await asyncio.sleep(0.5)  # is given back (engine/memory.py)
            after = rss_kib(served.process.pid)
            if after <= before * 1.10:
                break
        assert after <= before * 1.10, (
            f"memory {before} KiB before the flood, {peak} KiB after it, {after} KiB later")
    finally:
        served.stop()
