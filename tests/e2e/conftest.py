"""Real-browser tests: Debian's Chromium, driven by Playwright, runs pages that use the
official WCS Web SDK from npm against a real hookcast server on 127.0.0.1.

Chromium is never downloaded: the tests use /usr/bin/chromium (Debian package
``chromium``); without it they skip, saying how to install it. The SDK is installed
from npm into .cache/websdk (ignored by git) on first use. With ``CI`` set in the
environment, a missing Chromium or SDK fails instead: CI must run these tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hookcast.config.home import Home
from hookcast.server import Server

REPO = Path(__file__).resolve().parents[2]
SDK_CACHE = REPO / ".cache" / "websdk"
SDK_DIR = SDK_CACHE / "node_modules" / "@flashphoner" / "websdk"
PAGES = Path(__file__).parent / "pages"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]


def missing(reason: str) -> None:
    """Skip for want of Chromium or the SDK; with ``CI`` set, fail instead (CI that
    silently skipped the browser tests would pass with the SDK support broken)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} [CI is set: the browser tests must run]", pytrace=False)
    pytest.skip(reason)


def sdk_folder() -> Path:
    """The installed @flashphoner/websdk package (tests/e2e/install-websdk.sh)."""
    if not (SDK_DIR / "flashphoner-webrtc-only.js").exists():
        subprocess.run(["sh", str(Path(__file__).parent / "install-websdk.sh")], timeout=300)
    if not (SDK_DIR / "flashphoner-webrtc-only.js").exists():
        missing(
            "the WCS Web SDK is not installed and npm could not fetch it: "
            "run sh tests/e2e/install-websdk.sh with network access (make test does)"
        )
    return SDK_DIR


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        missing(f"Chromium is not installed at {CHROMIUM}: apt-get install chromium (CI's .ci/run does)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def static_site(folders: dict[str, Path]) -> AsyncIterator[str]:
    """An HTTP server on 127.0.0.1 (an origin of its own) serving each folder at its
    prefix ("/sdk/", "/pages/", ...); yields its base URL."""
    app = web.Application()
    for prefix, folder in folders.items():
        app.router.add_static(prefix, folder)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def site() -> AsyncIterator[str]:
    """An HTTP server on 127.0.0.1 serving our pages at /pages/ and the SDK package at
    /sdk/."""
    async with static_site({"/sdk/": sdk_folder(), "/pages/": PAGES}) as base:
        yield base


#: The browser's own video frame counter of the page's live SDK stream that publishes
#: (framesEncoded) or plays (framesDecoded), from the SDK's native getStats; 0 before
#: the first report. Works on any page using the SDK, the unmodified examples included.
VIDEO_FRAMES = """published => {
  const stream = Flashphoner.getSessions().flatMap((session) => session.getStreams())
    .find((s) => s.published() === published && ["PUBLISHING", "PLAYING"].includes(s.status()));
  if (!stream) return 0;
  const [type, field] = published ? ["outbound-rtp", "framesEncoded"] : ["inbound-rtp", "framesDecoded"];
  return new Promise((resolve) => stream.getStats((stats) => {
    const video = (stats[type] || []).find((report) => report.kind === "video");
    resolve(video ? video[field] || 0 : 0);
  }, true));
}"""
#: the share of the publisher's encoded frames every player must decode in the same window
KEPT_UP = 0.9


class Page:
    """One browser page running our SDK driver; keeps what the SDK logged."""

    def __init__(self, page: Any, name: str) -> None:
        self.page = page
        self.name = name
        self.console: list[str] = []
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))

    async def call(self, expression: str, *args: Any) -> Any:
        return await self.page.evaluate(expression, *args)

    async def events(self) -> list[dict[str, Any]]:
        return await self.page.evaluate("hc.events")  # type: ignore[no-any-return]

    async def video_frames(self, published: bool) -> int:
        """Frames this page's publisher encoded (``published``) or its player decoded."""
        return int(await self.page.evaluate(VIDEO_FRAMES, published))

    async def wait_status(self, role: str, status: str, timeout: float = 20) -> dict[str, Any]:
        """Wait until the SDK reported ``status`` for ``role``; fail with the SDK log."""
        try:
            await self.page.wait_for_function(
                "([role, status]) => hc.events.some(e => e.role === role && e.status === status)",
                arg=[role, status], timeout=timeout * 1000,
            )
        except Exception as error:
            raise AssertionError(
                f"{self.name}: no {status} for {role}; SDK events: {await self.events()}\n"
                f"SDK log:\n" + "\n".join(self.console[-60:])
            ) from error
        events = await self.events()
        return next(e for e in events if e["role"] == role and e["status"] == status)


async def frames_over(seconds: float, publisher: Page, *players: Page) -> tuple[int, list[int]]:
    """(frames the publisher encoded, frames each player decoded) over the same window:
    every page is read at once at both ends, so a slow machine slows both sides alike."""
    async def read() -> list[int]:
        return list(await asyncio.gather(
            publisher.video_frames(True), *(p.video_frames(False) for p in players)))

    before = await read()
    await asyncio.sleep(seconds)
    after = await read()
    encoded, *decoded = (a - b for a, b in zip(after, before, strict=True))
    return encoded, decoded


def assert_kept_up(encoded: int, decoded: list[int], players: list[Page]) -> None:
    """Every player decoded at least KEPT_UP of what the publisher encoded in the window."""
    logs = "\n".join(f"{p.name}: " + "\n".join(p.console[-20:]) for p in players)
    assert encoded > 0, f"the publisher encoded no video in the window; log:\n{logs}"
    assert all(count >= KEPT_UP * encoded for count in decoded), (
        f"the publisher encoded {encoded} frames in the window, the players decoded "
        f"{decoded} (each must decode at least {KEPT_UP:.0%}); log:\n{logs}"
    )


@pytest.fixture
async def open_page(browser: Any, site: str) -> AsyncIterator[Callable[[str], Awaitable[Page]]]:
    contexts = []

    async def open_one(name: str) -> Page:
        context = await browser.new_context()
        contexts.append(context)
        page = Page(await context.new_page(), name)
        await page.page.goto(f"{site}/pages/sdk_client.html")
        await page.page.wait_for_function("window.hc !== undefined")
        return page

    yield open_one
    for context in contexts:
        await context.close()


@pytest.fixture
async def server(home: Home, start_server: Callable[..., Any]) -> Server:
    return await start_server(home)  # type: ignore[no-any-return]
