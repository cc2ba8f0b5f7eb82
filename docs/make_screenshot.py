"""Makes docs/console-dashboard.png: the console's dashboard with live streams.

    sh tests/isolated.sh .venv/bin/python docs/make_screenshot.py

A server on 127.0.0.1, two publishers (VP8 and H.264), three players, a recording and
a vod-live:// reading of a generated file; Chromium (Debian's) takes the picture."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import aiohttp
from aiortc.mediastreams import AudioStreamTrack
from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hookcast.server import Server  # noqa: E402
from hookcast.signalling.client import WcsClient  # noqa: E402
from tests.conftest import make_home, make_settings  # noqa: E402
from tests.core.rtc.relay_harness import PatternVideoTrack  # noqa: E402
from tests.e2e.conftest import CHROMIUM, FLAGS  # noqa: E402
from tests.plugins.vod_files import make_media  # noqa: E402


async def main() -> None:
    home = make_home(Path(tempfile.mkdtemp()))
    make_media(home.media / "intro.mp4", seconds=30)
    server = Server(home, make_settings())
    await server.start()
    clients = []
    try:
        url = f"ws://127.0.0.1:{server.ws_port}/"
        for name, codec in (("studio-a", "VP8"), ("lobby-cam", "H264")):
            client = WcsClient(url)
            await client.connect(appKey="defaultApp")
            stream = await client.publish(name, [PatternVideoTrack(), AudioStreamTrack()],
                                          video_codec=codec, record=name == "studio-a")
            await stream.wait_status("PUBLISHING")
            clients.append(client)
        for name in ("studio-a", "studio-a", "lobby-cam"):
            client = WcsClient(url)
            await client.connect()
            await (await client.play(name)).wait_status("PLAYING")
            clients.append(client)
        async with aiohttp.ClientSession() as http:
            await http.post(f"http://127.0.0.1:{server.http_port}/rest-api/vod/startup",
                            json={"uri": "vod-live://intro.mp4", "localStreamName": "intro",
                                  "loop": True})
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = await browser.new_page(viewport={"width": 1280, "height": 820})
            await page.emulate_media(color_scheme="dark")
            await page.goto(f"http://127.0.0.1:{server.http_port}/")
            await asyncio.sleep(25)  # a sparkline's worth of history
            await page.screenshot(path=str(ROOT / "docs" / "console-dashboard.png"))
            await browser.close()
    finally:
        for client in clients:
            await client.close()
        await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
