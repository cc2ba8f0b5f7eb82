"""The Python WCS client against a misbehaving server: it never hangs on bad frames."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from core.client import WcsClient, WcsError


@pytest.fixture
async def rude_server() -> AsyncIterator[str]:
    """Answers `connection` with garbage first, then getUserData; closes on 'bye'."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for frame in ws:
            if '"connection"' in frame.data:
                for junk in ("{not json", "[1, 2]", '{"message": "notifyStreamStatusEvent", "data": [null]}',
                             '{"message": "setRemoteSDP", "data": 5}'):
                    await ws.send_str(junk)
                await ws.send_json({"message": "getUserData", "data": [{"sessionId": "s1"}]})
            elif '"bye"' in frame.data:
                await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"ws://127.0.0.1:{runner.addresses[0][1]}/"
    await runner.cleanup()


async def test_bad_frames_are_skipped(rude_server: str) -> None:
    client = WcsClient(rude_server)
    assert (await client.connect())["sessionId"] == "s1"
    await client.send("bye", None)
    await asyncio.sleep(0.2)
    await client.close()


async def test_a_server_that_closes_at_once_fails_connect_fast() -> None:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    client = WcsClient(f"ws://127.0.0.1:{runner.addresses[0][1]}/")
    started = asyncio.get_running_loop().time()
    with pytest.raises(WcsError, match="connection closed"):
        await client.connect()
    assert asyncio.get_running_loop().time() - started < 5
    await client.close()
    await runner.cleanup()
