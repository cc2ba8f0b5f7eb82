"""The SDK's Player example page on server B plays, through a pull, the stream the SDK's
Two-way Streaming page publishes on server A (Chromium, both servers on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from hookcast.server import Server
from tests.conftest import make_home
from tests.e2e.conftest import assert_kept_up, frames_over
from tests.e2e.test_sdk_examples import open_example, wait_text


async def test_player_on_b_plays_what_two_way_publishes_on_a_via_pull(
    server: Server, browser: Any, site: str, tmp_path: Path, start_server: Callable[..., Any],
) -> None:
    b: Server = await start_server(make_home(tmp_path / "b"))
    two_way = await open_example(browser, site, "two_way_streaming/two_way_streaming.html",
                                 "two-way on A")
    await two_way.page.fill("#urlServer", f"ws://127.0.0.1:{server.ws_port}")
    await two_way.page.click("#connectBtn")
    await wait_text(two_way, "#connectStatus", "ESTABLISHED")
    await two_way.page.fill("#publishStream", "example")
    await two_way.page.click("#publishBtn")
    await wait_text(two_way, "#publishStatus", "PUBLISHING")

    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{b.http_port}/rest-api/pull/pull", json={
                "uri": f"ws://127.0.0.1:{server.ws_port}/websocket",
                "localStreamName": "example"}) as response:
            pulled = await response.json()
    assert response.status == 200 and pulled["status"] == "ACTIVE", pulled

    player = await open_example(browser, site, "player/player.html", "player on B")
    await player.page.fill("#url", f"ws://127.0.0.1:{b.ws_port}")
    await player.page.fill("#streamName", "example")
    await player.page.click("#playBtn")
    await wait_text(player, "#status", "PLAYING")
    await player.page.wait_for_function(
        "() => { const v = document.querySelector('#remoteVideo video');"
        " return v && v.getVideoPlaybackQuality().totalVideoFrames > 0; }",
        timeout=15000,
    )
    encoded, decoded = await frames_over(3.0, two_way, player)
    assert_kept_up(encoded, decoded, [two_way, player])

    await two_way.page.click("#publishBtn")  # Stop: B's player hears of it through the pull
    await wait_text(two_way, "#publishStatus", "UNPUBLISHED")
    await wait_text(player, "#status", "STOPPED")
