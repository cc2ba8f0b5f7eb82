"""The web console in Chromium (fake camera, loopback only): publish, see it live on the
dashboard, play it, terminate it; record and play back; VOD from the media page; escaping,
cross-site request refusal, sign-in; no request to any host but the server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import av
import pytest

from hookcast.config.home import Home
from hookcast.server import Server
from hookcast.signalling.client import WcsClient
from tests.core.rtc.relay_harness import PatternVideoTrack
from tests.plugins.vod_files import make_media

XSS = "<script>alert(1)</script>"
FRAMES = ("sel => { const v = document.querySelector(sel);"
          " return v ? v.getVideoPlaybackQuality().totalVideoFrames : 0; }")


class Console:
    """Pages of one server's console, with every request and dialog they made."""

    def __init__(self, browser: Any, server: Server) -> None:
        self.browser = browser
        self.base = f"http://127.0.0.1:{server.http_port}"
        self.requests: list[str] = []
        self.dialogs: list[str] = []  # dialogs no test expected (dismissed)
        self.confirms: list[str] = []  # confirm() dialogs a test answered
        self.answers: list[bool] = []  # what to answer the next confirm() dialogs
        self.logs: list[str] = []
        self.contexts: list[Any] = []

    async def open(self, path: str) -> Any:
        context = await self.browser.new_context(accept_downloads=True)
        self.contexts.append(context)
        page = await context.new_page()
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("websocket", lambda socket: self.requests.append(socket.url))
        page.on("dialog", self._dialog)
        page.on("console", lambda message: self.logs.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.logs.append(f"pageerror: {error}"))
        await page.goto(self.base + path)
        return page

    async def _dialog(self, dialog: Any) -> None:
        if dialog.type == "confirm" and self.answers:
            self.confirms.append(dialog.message)
            await (dialog.accept() if self.answers.pop(0) else dialog.dismiss())
            return
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    def foreign(self) -> list[str]:
        return [url for url in self.requests if urlsplit(url).hostname != "127.0.0.1"]


@pytest.fixture
async def console(browser: Any, server: Server) -> AsyncIterator[Console]:
    opened = Console(browser, server)
    yield opened
    for context in opened.contexts:
        await context.close()
    assert not opened.dialogs, f"a page ran a dialog: {opened.dialogs}"
    assert not opened.foreign(), f"requests to other hosts: {opened.foreign()}"


async def text_of(page: Any, selector: str, text: str, timeout: float = 20) -> None:
    await page.wait_for_function(
        "([sel, text]) => (document.querySelector(sel)?.textContent || '').includes(text)",
        arg=[selector, text], timeout=timeout * 1000)


async def reload_until(page: Any, selector: str, within: float = 20) -> None:
    """Reload a server-rendered page until ``selector`` is on it."""
    for _ in range(int(within / 0.25)):
        if await page.locator(selector).count():
            return
        await asyncio.sleep(0.25)
        await page.reload()
    raise AssertionError(f"{selector} never appeared on {page.url}")


async def publish(page: Any, name: str, codec: str = "VP8", record: bool = False) -> None:
    await page.fill("#name", name)
    await page.select_option("#codec", codec)
    if record:
        await page.check("#record")
    await page.click("#start")
    await text_of(page, "#status", "PUBLISHING")


async def test_publish_see_it_live_play_it_and_terminate_it(console: Console) -> None:
    publisher = await console.open("/publish")
    await publish(publisher, "cam")
    dashboard = await console.open("/")
    await text_of(dashboard, "#streams", "cam", timeout=2)
    await text_of(dashboard, "#streams", "PUBLISHING", timeout=2)
    player = await console.open("/play?name=cam")  # plays at once
    await text_of(player, "#status", "PLAYING")
    await player.wait_for_function(f"() => ({FRAMES})('#video') > 30", timeout=15000)
    await text_of(player, "#resolution", "x", timeout=5)
    # the dashboard sees the player, the publisher's bitrate and its players count
    await dashboard.wait_for_function(
        "() => [...document.querySelectorAll('#streams tr')].some(r => r.textContent.includes('player'))",
        timeout=5000)
    await dashboard.wait_for_function(
        "() => [...document.querySelectorAll('#streams tr')].some("
        "r => r.textContent.includes('publisher') && /[0-9.]+ (kb|Mb)\\/s/.test(r.textContent))",
        timeout=5000)
    row = dashboard.locator("#streams tr", has_text="publisher")
    await row.get_by_role("button", name="terminate").click()
    await text_of(publisher, "#status", "UNPUBLISHED")
    await text_of(player, "#status", "STOPPED")
    await dashboard.wait_for_function(
        "() => !document.querySelector('#streams').textContent.includes('PUBLISHING')",
        timeout=5000)


async def test_record_stop_find_play_seek_download_delete(console: Console, server: Server,
                                                          tmp_path: Path) -> None:
    publisher = await console.open("/publish")
    await publish(publisher, "recorded", record=True)
    await asyncio.sleep(5)
    await publisher.click("#start")  # Stop
    await text_of(publisher, "#status", "UNPUBLISHED")
    records = await console.open("/records")
    await reload_until(records, "tr[data-file]")  # the file is final once the stream stopped
    row = records.locator("tr[data-file]").first
    name = await row.get_attribute("data-file")
    assert name and name.endswith(".webm")
    # told apart by the stream it recorded and when, in the reader's own time
    assert await row.locator("[data-field=stream]").text_content() == "recorded"
    for field in ("started", "ended"):
        shown = await row.locator(f"[data-field={field}] time").text_content()
        assert shown and "T" not in shown and "Z" not in shown, shown  # localised
    await row.get_by_role("button", name="play").click()
    await records.wait_for_function(f"() => ({FRAMES})('#video') > 10", timeout=15000)
    assert await records.evaluate("() => document.querySelector('#video').duration") > 3
    await records.evaluate(
        "() => new Promise(done => { const v = document.querySelector('#video');"
        " v.addEventListener('seeked', done, {once: true}); v.currentTime = 1.0; })")
    assert abs(await records.evaluate("() => document.querySelector('#video').currentTime")
               - 1.0) < 0.6
    async with records.expect_download() as waiting:
        await row.locator("a.download").click()
    download = await waiting.value
    saved = tmp_path / name
    await download.save_as(saved)
    with av.open(str(saved)) as container:
        assert sum(1 for _ in container.decode(video=0)) > 60
    console.answers.append(False)  # asked to confirm, naming the file: not deleted
    await row.get_by_role("button", name="delete").click()
    await records.wait_for_function("() => !document.querySelector('button:disabled')")
    assert console.confirms == [f"Delete the recording {name}? This cannot be undone."]
    assert (server.home.records / name).exists()
    assert await records.locator("tr[data-file]").count() == 1
    console.answers.append(True)
    await row.get_by_role("button", name="delete").click()
    await records.wait_for_function("() => !document.querySelector('tr[data-file]')", timeout=5000)
    assert not (server.home.records / name).exists() and len(console.confirms) == 2


async def test_vod_plays_from_the_media_page(console: Console, server: Server) -> None:
    make_media(server.home.media / "sample.mp4", seconds=8)
    media = await console.open("/media")
    await reload_until(media, "tr[data-file='sample.mp4']")  # found by watching media/
    await media.click("tr[data-file='sample.mp4'] a.play")
    await media.wait_for_url(lambda url: urlsplit(url).path == "/play")
    assert await media.input_value("#name") == "vod://sample.mp4"
    await text_of(media, "#status", "PLAYING")  # the link plays at once
    await media.wait_for_function(f"() => ({FRAMES})('#video') > 30", timeout=15000)


async def test_names_render_as_text_and_actions_need_the_token(console: Console,
                                                               server: Server) -> None:
    make_media(server.home.media / "<img src=x onerror=alert(2)>.mp4", seconds=2)
    client = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    await client.connect()
    try:
        stream = await client.publish(XSS, [PatternVideoTrack()])
        await stream.wait_status("PUBLISHING")
        dashboard = await console.open("/")
        await text_of(dashboard, "#streams", XSS, timeout=5)
        for path in ("/publish", f"/play?name={XSS}", "/records", "/media", "/plugins", "/hooks"):
            page = await console.open(path)
            await page.wait_for_load_state("networkidle")
            assert await page.locator("script:not([src])").count() == 0, path
        media = await console.open("/media")
        await reload_until(media, "tr[data-file]")
        await text_of(media, "main", "<img src=x onerror=alert(2)>.mp4")
        # an action without the page's X-CSRF-Token is refused; with it, it runs
        refused, done = await dashboard.evaluate("""async () => {
            const call = (headers) => fetch('/console/api/stream/terminate', {method: 'POST',
                headers: {'Content-Type': 'application/json', ...headers}, body: '{"name": "nothing"}'});
            const without = await call({});
            const withToken = await call({'X-CSRF-Token': document.body.dataset.csrf});
            return [without.status, withToken.status];
        }""")
        assert (refused, done) == (403, 404)
    finally:
        await client.close()


async def test_a_play_link_plays_at_once_and_an_early_viewer_can_wait(
        console: Console, server: Server) -> None:
    """/play?name=X plays X without a click. A viewer who comes before the publisher is
    told so, may tick "wait for it" and sees the countdown to each new try; the stream
    plays once it is published. &wait=1 waits from the start; Stop ends the waiting."""
    player = await console.open("/play?name=later")
    await text_of(player, "#status", "FAILED")
    await text_of(player, "#info", "Stream not found")
    await text_of(player, "#retry", "not published yet: tick “wait for it”")
    await player.check("#wait")
    await text_of(player, "#retry", "Stream not found; trying again in 5 s", timeout=2)
    await text_of(player, "#retry", "trying again in 4 s", timeout=3)  # it counts down
    assert await player.text_content("#start") == "Stop"
    client = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    await client.connect()
    try:
        stream = await client.publish("later", [PatternVideoTrack()])
        await stream.wait_status("PUBLISHING")
        await text_of(player, "#status", "PLAYING", timeout=15)
        await player.wait_for_function(f"() => ({FRAMES})('#video') > 30", timeout=15000)
        assert await player.locator("#retry").is_hidden()
        early = await console.open(f"/play?name={quote('nobody yet')}&wait=1")
        await text_of(early, "#retry", "Stream not found; trying again in")
        assert await early.is_checked("#wait")
        await early.click("#start")  # Stop
        await text_of(early, "#status", "STOPPED")
        assert await early.locator("#retry").is_hidden()
        assert await early.text_content("#start") == "Play"
    finally:
        await client.close()


@pytest.fixture
async def guarded(home: Home, start_server: Callable[..., Any]) -> Server:
    return await start_server(home, rest_api_token="s3cret-token")  # type: ignore[no-any-return]


async def test_with_rest_auth_on_the_console_asks_for_it(browser: Any, guarded: Server) -> None:
    console = Console(browser, guarded)
    page = await console.open("/")
    await page.wait_for_selector("#token")
    assert "#streams" not in await page.content()
    await page.fill("#token", "wrong")
    await page.click("button[type=submit]")
    await text_of(page, "#notice", "wrong token")
    await page.fill("#token", "s3cret-token")
    await page.click("button[type=submit]")
    await page.wait_for_selector("#streams")
    await page.wait_for_function("() => document.getElementById('live').dataset.live === 'yes'",
                                 timeout=5000)
    async with aiohttp.ClientSession() as http:  # the console's API without it: 401
        async with http.get(f"{console.base}/console/events") as response:
            assert response.status == 401
    for context in console.contexts:
        await context.close()
    assert not console.foreign()


async def test_the_dashboard_starts_a_vod_live_reading_and_a_pull(console: Console,
                                                                  server: Server) -> None:
    make_media(server.home.media / "loop.mp4", seconds=6)
    dashboard = await console.open("/")
    await dashboard.fill("#vod-form input[name=uri]", "vod-live://loop.mp4")
    await dashboard.fill("#vod-form input[name=localStreamName]", "channel")
    await dashboard.check("#vod-form input[name=loop]")
    await dashboard.click("#vod-form button[type=submit]")
    await text_of(dashboard, "#vod", "vod-live://loop.mp4", timeout=5)
    await text_of(dashboard, "#streams", "channel", timeout=5)
    # this server pulls its own "channel" as "copy" (from its own signalling port)
    await dashboard.fill("#pull-form input[name=uri]", f"ws://127.0.0.1:{server.ws_port}/")
    await dashboard.fill("#pull-form input[name=remoteStreamName]", "channel")
    await dashboard.fill("#pull-form input[name=localStreamName]", "copy")
    await dashboard.click("#pull-form button[type=submit]")
    await text_of(dashboard, "#pulls", "ACTIVE", timeout=20)
    row = dashboard.locator("#pulls tr", has_text="copy")
    await row.get_by_role("button", name="terminate").click()
    await text_of(dashboard, "#pulls", "none", timeout=5)
    row = dashboard.locator("#vod tr", has_text="channel")
    await row.get_by_role("button", name="stop").click()
    await dashboard.wait_for_function(
        "() => !document.querySelector('#streams').textContent.includes('channel')", timeout=5000)
