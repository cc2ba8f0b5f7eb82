"""The console's Hooks page in Chromium: the REST-hook outbox by application and status,
the pending and dead notifications, and a dead one replayed (the backend process then
gets it) or deleted (after a confirmation naming it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiortc.mediastreams import AudioStreamTrack

from hookcast.config.home import Home
from hookcast.server import Server
from hookcast.signalling.client import WcsClient
from tests.core.rtc.relay_harness import PatternVideoTrack
from tests.e2e.test_console import Console, reload_until
from tests.hook_backend import HookBackend, free_port

pytestmark = pytest.mark.usefixtures("loopback")


@pytest.fixture
async def hook_backend(tmp_path: Path) -> AsyncIterator[HookBackend]:
    """ConnectionStatusEvent: 400 (final: dead), then 200, then 400 again; StreamStatus
    Event: 500 (pending, tried again every 30 s or so)."""
    process = HookBackend(free_port(), tmp_path / "backend.jsonl")
    await asyncio.to_thread(process.start, "--answer", "ConnectionStatusEvent=400,200,400",
                            "--answer", "StreamStatusEvent=500")
    yield process
    await asyncio.to_thread(process.kill)


@pytest.fixture
async def hooked(home: Home, hook_backend: HookBackend,
                 start_server: Callable[..., Any]) -> Server:
    home.apps_file.write_text(json.dumps({"apps": [{
        "name": "defaultApp", "appKey": "defaultApp", "url": hook_backend.url,
        "methods": ["ConnectionStatusEvent", "StreamStatusEvent"]}]}))
    server: Server = await start_server(home, rest_retry_min_delay="30")
    return server


async def cell(page: Any, selector: str) -> str:
    return str(await page.locator(selector).text_content()).strip()


async def test_the_hooks_page_shows_the_outbox_and_replays_or_deletes_dead_ones(
        browser: Any, hooked: Server, hook_backend: HookBackend) -> None:
    console = Console(browser, hooked)
    client = WcsClient(f"ws://127.0.0.1:{hooked.ws_port}/")
    try:
        await client.connect()
        stream = await client.publish("cam", [PatternVideoTrack(), AudioStreamTrack()])
        await stream.wait_status("PUBLISHING")
        await hook_backend.wait_until(lambda r: len(r) >= 2, "ESTABLISHED and PUBLISHING", 10)
        page = await console.open("/hooks")
        await reload_until(page, "#outbox-dead tr[data-id]")
        app = "#outbox-counts tr[data-app=defaultApp]"
        assert [await cell(page, f"{app} [data-count={s}]")
                for s in ("pending", "dead", "delivered")] == ["1", "1", "0"]
        pending = page.locator("#outbox-pending tbody tr")
        assert await pending.count() == 1
        text = str(await pending.text_content())
        assert "StreamStatusEvent" in text and f"stream/{stream.media_session_id}" in text
        assert "http_5xx" in text
        dead = page.locator("#outbox-dead tbody tr")
        text = str(await dead.text_content())
        assert "ConnectionStatusEvent" in text and f"session/{client.session_id}" in text
        assert "http_4xx: final" in text
        # replayed: the backend gets it (200 this time), the page shows it delivered
        await dead.get_by_role("button", name="retry").click()
        await hook_backend.wait_until(
            lambda r: [h["answer"] for h in r if h["method"] == "ConnectionStatusEvent"]
            == [400, 200], "the replay", 10)
        # (the outbox commits the delivery just after the backend answered: reload until
        # the page shows it)
        await reload_until(page, "th[data-total=delivered]:text-is('1')")
        assert await page.locator("p#outbox-dead").count() == 1, "no dead one left"
        # the session leaves: its DISCONNECTED is refused for good, then deleted here
        await client.close()
        await hook_backend.wait_until(
            lambda r: [h["answer"] for h in r if h["method"] == "ConnectionStatusEvent"]
            == [400, 200, 400], "DISCONNECTED", 10)
        await reload_until(page, "#outbox-dead tr[data-id]")
        dead = page.locator("#outbox-dead tbody tr")
        row_id = await dead.get_attribute("data-id")
        console.answers.append(False)  # asked, naming it: kept
        await dead.get_by_role("button", name="delete").click()
        await page.wait_for_function("() => !document.querySelector('button:disabled')")
        assert console.confirms == [f"Delete the dead notification {row_id} "
                                    "(ConnectionStatusEvent)? It will not be delivered."]
        assert await page.locator("#outbox-dead tbody tr").count() == 1
        console.answers.append(True)
        await dead.get_by_role("button", name="delete").click()
        await reload_until(page, "p#outbox-dead")
        assert await cell(page, "[data-total=dead]") == "0"
        assert await cell(page, "[data-total=pending]") == "2"  # PUBLISHING, UNPUBLISHED
    finally:
        await client.close()
        for context in console.contexts:
            await context.close()
    assert not console.dialogs and not console.foreign(), (console.dialogs, console.foreign())
    assert not [line for line in console.logs if line.startswith("pageerror")], console.logs
