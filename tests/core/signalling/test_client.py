"""The Python WCS client against a misbehaving server: it never hangs on bad frames."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from hookcast.signalling.client import WcsClient, WcsError

Handler = Callable[[web.WebSocketResponse], Awaitable[None]]


@asynccontextmanager
async def ws_server(talk: Handler) -> AsyncIterator[str]:
    """A WebSocket server on 127.0.0.1 whose every connection is handled by ``talk``."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await talk(ws)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"ws://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


async def test_bad_frames_are_skipped() -> None:
    async def rude(ws: web.WebSocketResponse) -> None:
        """Answers `connection` with garbage first, then getUserData; closes on 'bye'."""
        async for frame in ws:
            if '"connection"' in frame.data:
                for junk in ("{not json", "[1, 2]", '{"message": "notifyStreamStatusEvent", "data": [null]}',
                             '{"message": "setRemoteSDP", "data": 5}'):
                    await ws.send_str(junk)
                await ws.send_json({"message": "getUserData", "data": [{"sessionId": "s1"}]})
            elif '"bye"' in frame.data:
                await ws.close()

    async with ws_server(rude) as url:
        client = WcsClient(url)
        assert (await client.connect())["sessionId"] == "s1"
        await client.send("bye", None)
        await asyncio.sleep(0.2)
        await client.close()


async def test_a_server_that_closes_at_once_fails_connect_fast() -> None:
    async def hang_up(ws: web.WebSocketResponse) -> None:
        await ws.close()

    async with ws_server(hang_up) as url:
        client = WcsClient(url)
        started = asyncio.get_running_loop().time()
        with pytest.raises(WcsError, match="connection closed"):
            await client.connect()
        assert asyncio.get_running_loop().time() - started < 5
        await client.close()
