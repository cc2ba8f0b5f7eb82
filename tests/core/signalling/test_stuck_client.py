"""A client that stops reading its WebSocket cannot hold the server: REST terminate,
connection terminate and shutdown finish within ``ws_send_timeout`` (plus a margin),
and the client is dropped as a disconnect.

The stuck client floods the server with requests whose answers it never reads, until
the server's writes block (its read loop stops reading: the client's own send blocks);
the REST call or the signal comes while the server is stuck writing. Without bounded
writes these calls never return."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import VideoStreamTrack

from hookcast.config.home import Home
from hookcast.keys import ENGINE
from hookcast.server import Server
from tests.core.signalling.stuck_client import StuckClient
from tests.served import Served, configure

SEND_TIMEOUT = 3.0
MARGIN = 4.0  # seconds beyond ws_send_timeout: media close, plugins told in the background
QUIET = {"ws_send_timeout": str(SEND_TIMEOUT), "keep_alive.server_interval": "0",
         "ice_connect_timeout": "60"}


async def offer_sdp() -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection()
    pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def stuck_publisher(server: Server, name: str) -> tuple[StuckClient, RTCPeerConnection]:
    """A session that publishes ``name`` (never doing ICE: PENDING), then floods the
    server with requests whose answers it never reads, until the server stops reading."""
    # the server runs on this event loop: blocking socket calls go to a thread
    client = await asyncio.to_thread(StuckClient, server.ws_port)
    await asyncio.to_thread(client.send, "connection", {"appKey": "defaultApp"})
    pc, sdp = await offer_sdp()
    await asyncio.to_thread(client.send, "publishStream",
                            {"mediaSessionId": f"{name}-id", "name": name, "sdp": sdp})
    engine = server.http_app[ENGINE]
    for _ in range(200):
        if engine.registry.publisher(name) is not None:
            break
        await asyncio.sleep(0.05)
    assert engine.registry.publisher(name) is not None, "the stuck client's publish registered"
    sent = await asyncio.to_thread(client.flood, 3000)
    assert sent < 3000, "the server kept reading: its writes never blocked"
    return client, pc


async def post(server: Server, path: str, body: dict[str, Any]) -> tuple[int, Any, float]:
    started = time.monotonic()
    async with aiohttp.ClientSession() as http, http.post(
        f"http://127.0.0.1:{server.http_port}/rest-api{path}", json=body,
        timeout=aiohttp.ClientTimeout(total=60),
    ) as response:
        return response.status, await response.json(), time.monotonic() - started


@pytest.mark.usefixtures("loopback")
async def test_stream_terminate_is_bounded_and_drops_the_stuck_client(
    home: Home, start_server: Callable[..., Any]
) -> None:
    server = await start_server(home, **QUIET)
    client, pc = await stuck_publisher(server, "stuck")
    try:
        status, body, took = await post(server, "/stream/terminate", {"name": "stuck"})
        assert (status, body) == (200, {"terminated": ["stuck-id"]})
        assert took < SEND_TIMEOUT + MARGIN, f"terminate took {took:.1f} s"
        engine = server.http_app[ENGINE]
        assert engine.registry.get("stuck-id") is None
        for _ in range(100):  # dropped as a disconnect: the session is gone
            if not engine.sessions:
                break
            await asyncio.sleep(0.05)
        assert len(engine.sessions) == 0
    finally:
        client.close()
        await pc.close()


@pytest.mark.usefixtures("loopback")
async def test_connection_terminate_is_bounded(
    home: Home, start_server: Callable[..., Any]
) -> None:
    server = await start_server(home, **QUIET)
    client, pc = await stuck_publisher(server, "stuck")
    try:
        engine = server.http_app[ENGINE]
        (session_id,) = engine.sessions
        status, body, took = await post(server, "/connection/terminate", {"sessionId": session_id})
        assert (status, body) == (200, {"terminated": [session_id]})
        assert took < SEND_TIMEOUT + MARGIN, f"connection terminate took {took:.1f} s"
        assert len(engine.sessions) == 0 and len(engine.registry) == 0
    finally:
        client.close()
        await pc.close()


@pytest.mark.usefixtures("loopback")
async def test_sigterm_stops_the_server_whatever_a_client_does(home: Home) -> None:
    configure(home, ip="127.0.0.1", **QUIET)
    served = Served.start(home)
    await asyncio.to_thread(served.wait_ready)
    client = StuckClient(served.ws_port)
    try:
        client.send("connection", {"appKey": "defaultApp"})
        pc, sdp = await offer_sdp()
        client.send("publishStream", {"mediaSessionId": "s-id", "name": "s", "sdp": sdp})
        sent = await asyncio.to_thread(client.flood, 3000)
        assert sent < 3000, "the server kept reading: its writes never blocked"
        started = time.monotonic()
        stderr = await asyncio.to_thread(served.stop, 30)
        took = time.monotonic() - started
        assert served.process.returncode == 0, stderr
        assert took < SEND_TIMEOUT + 10, f"shutdown took {took:.1f} s"
        assert "dropped: a message waited 3 s (ws_send_timeout) to be written" in stderr \
            or "dropped: closing took more than 3 s" in stderr, stderr[-2000:]
        await pc.close()
    finally:
        client.close()
