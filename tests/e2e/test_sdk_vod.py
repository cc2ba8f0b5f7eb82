"""The SDK's own Player example page plays a file from media/ as ``vod://``, and shows
FAILED ``File not found`` for a file that is not there."""

from __future__ import annotations

from typing import Any

from hookcast.server import Server
from tests.e2e.test_sdk_examples import open_example, wait_text
from tests.plugins.vod_files import make_media


async def test_player_example_plays_vod_and_says_file_not_found(
    server: Server, browser: Any, site: str
) -> None:
    make_media(server.home.media / "sample.mp4", seconds=6)
    url = f"ws://127.0.0.1:{server.ws_port}"
    player = await open_example(browser, site, "player/player.html", "vod player")
    await player.page.fill("#url", url)
    await player.page.fill("#streamName", "vod://sample.mp4")
    await player.page.click("#playBtn")
    await wait_text(player, "#status", "PLAYING")
    await player.page.wait_for_function(
        "() => { const v = document.querySelector('#remoteVideo video');"
        " return v && v.getVideoPlaybackQuality().totalVideoFrames > 60; }",
        timeout=15000,
    )
    quality = await player.page.evaluate(
        "() => { const q = document.querySelector('#remoteVideo video')"
        ".getVideoPlaybackQuality(); return [q.totalVideoFrames, q.droppedVideoFrames]; }")
    assert quality[0] > 60 and quality[1] < 0.1 * quality[0], quality
    await wait_text(player, "#status", "STOPPED", timeout=20)  # the end of the file

    await player.page.fill("#streamName", "vod://missing.mp4")
    await player.page.click("#playBtn")
    await wait_text(player, "#status", "FAILED")
    await wait_text(player, "#info", "File not found")
