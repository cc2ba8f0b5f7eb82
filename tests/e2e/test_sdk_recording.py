"""The SDK's own Stream Recording example page, unmodified, against hookcast: record,
stop, follow the download link, play the file in the page's <video>.

The page builds its download link from its own origin (``/client/records/<name>``, as
WCS serves the examples and the records from one web server), so the page is served by
hookcast itself: the SDK package is copied into the home's web root (www/, served at
/www/), as an integrator hosts the examples beside hookcast.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from typing import Any

import av

from hookcast.config.home import Home
from tests.e2e.conftest import Page, sdk_folder
from tests.e2e.test_sdk_examples import wait_text

EXAMPLE = "/www/websdk/examples/demo/streaming/stream_recording/recording.html"


async def test_stream_recording_example_records_and_plays_back(
    home: Home, start_server: Callable[..., Any], browser: Any
) -> None:
    # copied (as hard links: quick), never symlinked: a symlink out of www/ is not served
    shutil.copytree(sdk_folder(), home.www / "websdk", copy_function=os.link)
    server = await start_server(home)
    context = await browser.new_context()
    try:
        page = Page(await context.new_page(), "recording")
        await page.page.goto(f"http://127.0.0.1:{server.http_port}{EXAMPLE}")
        await page.page.fill("#url", f"ws://127.0.0.1:{server.ws_port}/recorded")
        await page.page.click("#publishBtn")
        await wait_text(page, "#status", "PUBLISHING")
        await asyncio.sleep(5)
        await page.page.click("#publishBtn")  # now labelled Stop
        await wait_text(page, "#status", "UNPUBLISHED")
        await page.page.wait_for_selector("#downloadDiv", state="visible", timeout=10000)
        link = await page.page.get_attribute("#link", "href")
        assert link is not None and link.startswith(
            f"http://127.0.0.1:{server.http_port}/client/records/stream-")
        name = link.rsplit("/", 1)[1]
        assert name.endswith(".webm"), "Chromium publishes VP8 by default: WebM"
        download = await page.page.request.get(link)
        assert download.status == 200 and download.headers["content-type"] == "video/webm"
        body = await download.body()
        # the file may still be being made final when the link shows: wait for it
        await _final(home, name)
        assert body[:4] == b"\x1a\x45\xdf\xa3", "an EBML (WebM) file"
        with av.open(str(home.records / name)) as container:
            assert {s.type: s.codec_context.name for s in container.streams} == {
                "video": "vp8", "audio": "opus"}
        await page.page.evaluate("() => { const v = document.querySelector('#recVideo');"
                                 " v.muted = true; return v.play(); }")
        await page.page.wait_for_function(
            "() => document.querySelector('#recVideo').getVideoPlaybackQuality()"
            ".totalVideoFrames > 30", timeout=15000)
        played = await page.page.evaluate(
            "() => { const v = document.querySelector('#recVideo');"
            " return [v.videoWidth, v.duration, v.error]; }")
        assert played[0] > 0 and played[1] > 3 and played[2] is None, played
    finally:
        await context.close()


async def _final(home: Home, name: str) -> None:
    for _ in range(100):
        if not (home.records / f".{name}.recording").exists():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} was not made final")
