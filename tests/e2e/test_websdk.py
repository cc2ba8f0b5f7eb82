"""The official WCS Web SDK, in Chromium, publishes to and plays from hookcast."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from core.server import Server
from tests.e2e.conftest import Page

OpenPage = Callable[[str], Awaitable[Page]]


async def frames_decoded(page: Page, at_least: int, timeout: float = 15) -> int:
    deadline = asyncio.get_running_loop().time() + timeout
    while (frames := await page.call("hc.framesDecoded()")) < at_least:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{page.name}: only {frames} frames decoded; SDK log:\n" + "\n".join(page.console[-40:]))
        await asyncio.sleep(0.2)
    return frames  # type: ignore[no-any-return]


async def test_publish_on_a_play_on_b(server: Server, open_page: OpenPage) -> None:
    url = f"ws://127.0.0.1:{server.ws_port}"
    a, b = await open_page("A"), await open_page("B")
    await a.call("url => hc.connect(url)", url)
    await a.call("name => hc.publish(name)", "cam")
    await a.wait_status("publisher", "PUBLISHING")
    await b.call("url => hc.connect(url)", url)
    await b.call("name => hc.play(name)", "cam")
    await b.wait_status("player", "PLAYING")
    assert await frames_decoded(b, 30) >= 30
