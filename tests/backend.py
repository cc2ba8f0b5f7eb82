"""A real HTTP backend for REST-hook tests: records every hook, answers as told."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web


@dataclass
class Backend:
    """Records every hook; ``answers[method]`` is (status, body or None to echo, delay)."""

    url: str = ""
    received: list[tuple[str, dict[str, Any], dict[str, str], bytes]] = field(default_factory=list)
    answers: dict[str, tuple[int, Any, float]] = field(default_factory=dict)
    answer_for: Callable[[str, dict[str, Any]], tuple[int, Any, float] | None] | None = None
    #: method -> (status, raw body bytes): answered as they are, for malformed replies
    raw: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    #: method -> (pieces, gap in seconds): the answer goes out with chunked transfer
    #: encoding, split into that many pieces, each flushed, ``gap`` apart
    chunked: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: method -> Location: answered ``307 Temporary Redirect`` pointing there
    redirects: dict[str, str] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        raw = await request.read()
        body = json.loads(raw)
        self.received.append((method, body, dict(request.headers), raw))
        if method in self.redirects:
            return web.Response(status=307, headers={"Location": self.redirects[method]})
        if method in self.raw:
            status, content = self.raw[method]
            return web.Response(body=content, status=status, content_type="application/json")
        answer = (self.answer_for(method, body) if self.answer_for else None) or self.answers.get(method, (200, None, 0.0))
        status, reply, delay = answer
        if delay:
            await asyncio.sleep(delay)
        if method in self.chunked:
            return await self._in_pieces(request, status, json.dumps(body if reply is None else reply).encode(), *self.chunked[method])
        return web.json_response(body if reply is None else reply, status=status)

    @staticmethod
    async def _in_pieces(request: web.Request, status: int, content: bytes, pieces: int, gap: float) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        size = -(-len(content) // pieces)  # ceiling: exactly `pieces` pieces
        try:
            for start in range(0, len(content), size):
                if start:
                    await asyncio.sleep(gap)
                await response.write(content[start:start + size])
            await response.write_eof()
        except ConnectionResetError:  # the server hung up mid-reply (a reply over its cap)
            pass
        return response

    def methods(self) -> list[str]:
        return [m for m, *_ in self.received]

    def bodies(self, method: str) -> list[dict[str, Any]]:
        return [body for m, body, _, _ in self.received if m == method]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
        await self.wait_until(lambda: len(self.bodies(method)) >= count, f"{method} x{count}", timeout)
        return self.bodies(method)

    async def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
        """Poll ``condition`` until it holds; fail naming ``what`` and what arrived."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"{self.url}: waited {timeout}s for {what}; got {self.methods()}"
            await asyncio.sleep(0.02)


@asynccontextmanager
async def serving() -> AsyncIterator[Backend]:
    """A Backend listening on 127.0.0.1 (a free port) at ``<url>/<method>``."""
    backend = Backend()
    app = web.Application()
    app.router.add_post("/hooks/{method}", backend.handle)
    # handlers still answering (a test's hanging backend) are cancelled after a moment
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    backend.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks"
    try:
        yield backend
    finally:
        await runner.cleanup()


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    async with serving() as backend:
        yield backend
