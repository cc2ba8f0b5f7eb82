"""A real HTTP backend for REST-hook tests: records every hook, answers as told."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
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

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        raw = await request.read()
        body = json.loads(raw)
        self.received.append((method, body, dict(request.headers), raw))
        if method in self.raw:
            status, content = self.raw[method]
            return web.Response(body=content, status=status, content_type="application/json")
        answer = (self.answer_for(method, body) if self.answer_for else None) or self.answers.get(method, (200, None, 0.0))
        status, reply, delay = answer
        if delay:
            await asyncio.sleep(delay)
        return web.json_response(body if reply is None else reply, status=status)

    def bodies(self, method: str) -> list[dict[str, Any]]:
        return [body for m, body, _, _ in self.received if m == method]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.bodies(method)) < count:
            assert time.monotonic() < deadline, f"{method}: {len(self.bodies(method))} of {count}; got {[m for m, *_ in self.received]}"
            await asyncio.sleep(0.02)
        return self.bodies(method)


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    backend = Backend()
    app = web.Application()
    app.router.add_post("/hooks/{method}", backend.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    backend.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks"
    yield backend
    await runner.cleanup()
