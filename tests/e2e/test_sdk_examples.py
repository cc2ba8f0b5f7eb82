"""The SDK's own example pages, served unmodified from the npm package, against hookcast.

Only the server URL field is changed (the pages derive ws://<page host>:8080 by
default, and the test server listens on a free port)."""

from __future__ import annotations

from typing import Any

from hookcast.server import Server
from tests.e2e.conftest import Page, assert_kept_up, frames_over

EXAMPLES = "/sdk/examples/demo/streaming"


async def open_example(browser: Any, site: str, path: str, name: str) -> Page:
    context = await browser.new_context()
    page = Page(await context.new_page(), name)
    await page.page.goto(f"{site}{EXAMPLES}/{path}")
    return page


async def wait_text(page: Page, selector: str, text: str, timeout: float = 20) -> None:
    try:
        await page.page.wait_for_function(
            "([selector, text]) => document.querySelector(selector).textContent.trim() === text",
            arg=[selector, text], timeout=timeout * 1000,
        )
    except Exception as error:
        shown = await page.page.text_content(selector)
        raise AssertionError(
            f"{page.name}: {selector} shows {shown!r}, not {text!r}; page log:\n"
            + "\n".join(page.console[-60:])
        ) from error


async def test_two_way_streaming_and_player_examples(
    server: Server, browser: Any, site: str
) -> None:
    url = f"ws://127.0.0.1:{server.ws_port}"
    two_way = await open_example(browser, site, "two_way_streaming/two_way_streaming.html", "two-way")
    await two_way.page.fill("#urlServer", url)
    await two_way.page.click("#connectBtn")
    await wait_text(two_way, "#connectStatus", "ESTABLISHED")
    await two_way.page.fill("#publishStream", "example")
    await two_way.page.click("#publishBtn")
    await wait_text(two_way, "#publishStatus", "PUBLISHING")
    # the two-way page plays its own stream back
    await two_way.page.fill("#playStream", "example")
    await two_way.page.click("#playBtn")
    await wait_text(two_way, "#playStatus", "PLAYING")

    player = await open_example(browser, site, "player/player.html", "player")
    await player.page.fill("#url", url)
    await player.page.fill("#streamName", "example")
    await player.page.click("#playBtn")
    await wait_text(player, "#status", "PLAYING")
    await player.page.wait_for_function(
        "() => { const v = document.querySelector('#remoteVideo video');"
        " return v && v.getVideoPlaybackQuality().totalVideoFrames > 0; }",
        timeout=15000,
    )
    # both players (the two-way page's own and the player page) decode (nearly) every
    # frame the two-way page encodes, counted by the browser over the same window
    encoded, decoded = await frames_over(3.0, two_way, two_way, player)
    assert_kept_up(encoded, decoded, [two_way, player])

    await two_way.page.click("#publishBtn")  # now labelled Stop
    await wait_text(two_way, "#publishStatus", "UNPUBLISHED")
    await wait_text(player, "#status", "STOPPED")  # the example shows no info for STOPPED
