"""WHIP and WHEP with clients hookcast did not write, in Chromium (issue 25):

- FFmpeg's WHIP muxer publishes; the official WCS Web SDK plays it in the browser;
- a WHEP library from npm (medooze's whip-whep, tests/e2e/install-whep.sh), on a page of
  another origin, plays a stream a WCS client publishes;
- the console's Play page plays over WHEP (``/play?name=X&whep=1``), waits for a stream
  not published yet, and its Stop ends the session on the server.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from hookcast.server import Server
from tests.e2e.conftest import PAGES, REPO, Page, missing, static_site
from tests.e2e.test_console import FRAMES, Console, text_of
from tests.plugins.test_pull import publish, rest
from tests.plugins.test_whip import _ffmpeg_whip

WHEP_DIR = REPO / ".cache" / "whep" / "node_modules" / "whip-whep"
Connect = Callable[..., Any]


def whep_folder() -> Path:
    """The installed whip-whep package (tests/e2e/install-whep.sh)."""
    if not (WHEP_DIR / "whep.js").exists():
        subprocess.run(["sh", str(Path(__file__).parent / "install-whep.sh")], timeout=300)
    if not (WHEP_DIR / "whep.js").exists():
        missing("the whip-whep WHEP client is not installed and npm could not fetch it: "
                "run sh tests/e2e/install-whep.sh with network access (make test does)")
    return WHEP_DIR


@pytest.fixture
async def whep_site() -> AsyncIterator[str]:
    """An HTTP server on 127.0.0.1 (another origin than hookcast's) serving our pages at
    /pages/ and the whip-whep package at /whep/."""
    async with static_site({"/whep/": whep_folder(), "/pages/": PAGES}) as base:
        yield base


async def until(predicate: Callable[[], Awaitable[bool]], within: float,
                what: str | Callable[[], Awaitable[str]]) -> None:
    """Wait for ``predicate``; fail with ``what`` (a text, or one read at the failure)."""
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(what if isinstance(what, str) else await what())
        await asyncio.sleep(0.2)


async def test_ffmpeg_publishes_over_whip_and_the_web_sdk_plays_it(
        server: Server, open_page: Callable[[str], Any]) -> None:
    """FFmpeg's own WHIP muxer (H.264 baseline + Opus, a candidate-less offer) publishes;
    the official Web SDK in Chromium plays it over WCS signalling and decodes its frames;
    closing the muxer (its DELETE) stops the SDK's player."""
    done = threading.Event()
    endpoint = f"http://127.0.0.1:{server.http_port}/whip/ffmpeg"
    muxing = asyncio.ensure_future(asyncio.to_thread(_ffmpeg_whip, endpoint, 30.0, done))
    try:
        async def published() -> bool:
            assert not muxing.done(), f"FFmpeg stopped: {muxing.result()} frames sent"
            status, _ = await rest(server, "stream/find", {"name": "ffmpeg", "published": True})
            return status == 200
        await until(published, 15, "FFmpeg's WHIP stream was never published")
        player: Page = await open_page("player")
        await player.call("url => hc.connect(url)", f"ws://127.0.0.1:{server.ws_port}")
        await player.call("name => hc.play(name)", "ffmpeg")
        await player.wait_status("player", "PLAYING")

        async def decoding() -> bool:
            return await player.video_frames(False) > 30
        async def sdk_log() -> str:
            return "the SDK's player decoded no video:\n" + "\n".join(player.console[-40:])
        await until(decoding, 15, sdk_log)
        first = await player.video_frames(False)
        await asyncio.sleep(2)
        assert await player.video_frames(False) >= first + 30, "the picture moves on"
        size = await player.call(
            "() => { const v = document.querySelector('#remote video');"
            " return [v.videoWidth, v.videoHeight]; }")
        assert size == [320, 240]
        done.set()
        assert await asyncio.wait_for(muxing, 15) > 60
        await player.wait_status("player", "STOPPED", timeout=10)  # the muxer's DELETE
    finally:
        done.set()
        await asyncio.gather(muxing, return_exceptions=True)


async def test_an_npm_whep_library_plays_a_wcs_stream_cross_origin(
        server: Server, browser: Any, whep_site: str, connect_client: Connect) -> None:
    """whip-whep's WHEPClient, on a page of another origin (CORS), plays what a WCS
    client publishes: the video decodes; its stop() DELETEs the session.

    The library POSTs its offer before gathering (no candidates) and trickles them by
    PATCH without If-Match, which hookcast refuses (428, an unhandled rejection in the
    page): the session connects by peer-reflexive candidates, as FFmpeg's does."""
    await publish(await connect_client(server), "cam", "H264")
    context = await browser.new_context()
    try:
        page = Page(await context.new_page(), "whep")
        await page.page.goto(f"{whep_site}/pages/whep_player.html")
        await page.page.wait_for_function("window.hc !== undefined")
        endpoint = f"http://127.0.0.1:{server.http_port}/whep/cam"
        session = await page.call("url => hc.view(url)", endpoint)
        assert session.startswith(f"http://127.0.0.1:{server.http_port}/whep-sessions/")

        async def decoding() -> bool:
            return int(await page.call("hc.framesDecoded()")) > 30
        async def page_log() -> str:
            return (f"no video decoded; peer connection: {await page.call('hc.events')}\n"
                    + "\n".join(page.console[-40:]))
        await until(decoding, 15, page_log)
        assert await page.call("hc.videoSize()") == [320, 240]
        status, players = await rest(server, "stream/find", {"name": "cam", "published": False})
        assert status == 200 and len(players) == 1, players
        await page.call("hc.stop()")

        async def gone() -> bool:
            status, _ = await rest(server, "stream/find", {"name": "cam", "published": False})
            return status == 404
        await until(gone, 5, "the library's DELETE did not end the WHEP session")
    finally:
        await context.close()


async def test_the_console_plays_over_whep_waits_and_stops(
        server: Server, browser: Any, connect_client: Connect) -> None:
    """/play?name=X&whep=1 plays over WHEP (no WebSocket): before X is published the
    server's 404 "Stream not found" shows and, with &wait=1, the page tries again; once a
    WCS client publishes X it plays and decodes; Stop DELETEs the WHEP session; when the
    publisher stops, the page shows the stream STOPPED."""
    console = Console(browser, server)
    try:
        player = await console.open(f"/play?name={quote('soon on')}&whep=1&wait=1")
        assert await player.is_checked("#whep")
        await text_of(player, "#info", "Stream not found")
        await text_of(player, "#retry", "Stream not found; trying again in")
        wcs = await connect_client(server)
        publisher, _, _ = await publish(wcs, "soon on")
        await text_of(player, "#status", "PLAYING", timeout=15)
        await player.wait_for_function(f"() => ({FRAMES})('#video') > 30", timeout=15000)
        await text_of(player, "#resolution", "320x240", timeout=5)
        status, players = await rest(server, "stream/find",
                                     {"name": "soon on", "published": False})
        assert status == 200 and len(players) == 1, players
        await player.click("#start")  # Stop
        await text_of(player, "#status", "STOPPED")
        status, _ = await rest(server, "stream/find", {"name": "soon on", "published": False})
        assert status == 404, "Stop ended the WHEP session on the server"
        whep = [url for url in console.requests if "/whep/" in url]
        assert whep and all(url.endswith("/whep/soon%20on") for url in whep), whep
        assert not [url for url in console.requests if url.startswith("ws")], "no WebSocket"
        assert await player.locator("script:not([src])").count() == 0
        assert not [line for line in console.logs if "Content Security Policy" in line]
        # played again, the page learns when the server ends the stream (DTLS closed)
        await player.click("#start")
        await text_of(player, "#status", "PLAYING", timeout=15)
        await wcs.stop(publisher)
        await text_of(player, "#status", "STOPPED", timeout=5)
        await text_of(player, "#info", "Stopped by the server")
        assert await player.text_content("#start") == "Play"
    finally:
        for context in console.contexts:
            await context.close()
    assert not console.dialogs and not console.foreign()
