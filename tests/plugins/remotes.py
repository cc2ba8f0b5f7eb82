"""Fake remotes for pulls and pushes, each a real server on 127.0.0.1: what a broken or
hostile "WCS" may do (flood frames, redirect, speak SSH, answer HTTP errors, hang up,
stay silent). Each records when a connection reached it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Talk = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]
Converse = Callable[[web.WebSocketResponse], Awaitable[None]]


@dataclass
class Remote:
    """A fake remote: its port and the time (monotonic) of each connection it got."""

    port: int = 0
    connections: list[float] = field(default_factory=list)

    @property
    def uri(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"


@asynccontextmanager
async def tcp_remote(talk: Talk) -> AsyncIterator[Remote]:
    """A TCP server whose every connection ``talk`` handles (then it is closed)."""
    remote = Remote()
    closing = asyncio.Event()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        remote.connections.append(time.monotonic())
        talking = asyncio.ensure_future(talk(reader, writer))
        ending = asyncio.ensure_future(closing.wait())
        try:  # until the talk ends or the server closes (silent remotes talk forever)
            await asyncio.wait({talking, ending}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (talking, ending):
                task.cancel()
            await asyncio.gather(talking, ending, return_exceptions=True)
            writer.close()

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    remote.port = server.sockets[0].getsockname()[1]
    try:
        yield remote
    finally:
        closing.set()
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)


@asynccontextmanager
async def http_remote(answer: Answer) -> AsyncIterator[Remote]:
    """An HTTP server answering every request with ``answer(request)``."""
    remote = Remote()

    async def handle(request: web.Request) -> web.StreamResponse:
        remote.connections.append(time.monotonic())
        return await answer(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    remote.port = runner.addresses[0][1]
    try:
        yield remote
    finally:
        await runner.cleanup()


@asynccontextmanager
async def ws_remote(converse: Converse) -> AsyncIterator[Remote]:
    """A WebSocket server whose every session ``converse`` runs (then it is closed)."""

    async def answer(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        try:
            await converse(ws)
        finally:
            await ws.close()
        return ws

    async with http_remote(answer) as remote:
        yield remote


# --- behaviours -------------------------------------------------------------------------


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept the connection and close it at once."""


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept the connection, then never read nor send (until the test ends)."""
    await asyncio.Event().wait()


def banner(text: bytes) -> Talk:
    """Send ``text`` at once (as an SSH server does), read what comes, then hang up."""

    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(text)
        await writer.drain()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.read(4096), 5)
        writer.write(b"Protocol mismatch.\r\n")

    return talk


def http_error(status: int, body: str) -> Answer:
    """Answer ``status`` with ``body`` (and a header carrying it too)."""

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=body, headers={"X-Detail": body})

    return answer


def redirect(location: str) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": location})

    return answer


def frame(message: str, *data: Any) -> str:
    return json.dumps({"message": message, "data": list(data)})


async def until_connection(ws: web.WebSocketResponse) -> dict[str, Any] | None:
    """The client's ``connection`` payload, once it came (None if it closed first)."""
    async for message in ws:
        if isinstance(message.data, str) and '"connection"' in message.data:
            return dict(json.loads(message.data)["data"][0])
    return None


def accepting(then: Converse) -> Converse:
    """Accept the session (getUserData), then run ``then``."""

    async def converse(ws: web.WebSocketResponse) -> None:
        if await until_connection(ws) is None:
            return
        await ws.send_str(frame("getUserData", {"sessionId": "fake", "authToken": "t"}))
        await then(ws)

    return converse


async def hangs_up_the_websocket(ws: web.WebSocketResponse) -> None:
    """Upgrade, then close at once (before any answer)."""


async def never_answers(ws: web.WebSocketResponse) -> None:
    """Read what the client sends, never answer."""
    async for _ in ws:
        pass


def failing_streams(info: str) -> Converse:
    """Every playStream/publishStream is answered FAILED with ``info``."""

    async def converse(ws: web.WebSocketResponse) -> None:
        async for message in ws:
            if not isinstance(message.data, str):
                continue
            sent = json.loads(message.data)
            if sent["message"] in ("playStream", "publishStream"):
                stream = sent["data"][0]
                await ws.send_str(frame("notifyStreamStatusEvent", {
                    "mediaSessionId": stream["mediaSessionId"], "name": stream["name"],
                    "status": "FAILED", "info": info}))

    return converse


def refusing(info: str) -> Converse:
    """The session is refused with a ``fail`` whose info is ``info``."""

    async def converse(ws: web.WebSocketResponse) -> None:
        if await until_connection(ws) is not None:
            await ws.send_str(frame("fail", {"apiMethod": "connection", "info": info}))

    return converse
