"""The official WCS Web SDK, in Chromium, publishes to and plays from hookcast."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from hookcast.keys import ENGINE
from hookcast.server import Server
from tests.e2e.conftest import Page, assert_kept_up, frames_over

OpenPage = Callable[[str], Awaitable[Page]]


async def frames_decoded(page: Page, at_least: int, timeout: float = 15) -> int:
    """Frames the player page's <video> decoded, once at least ``at_least``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (frames := await page.call("hc.framesDecoded()")) < at_least:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(
                f"{page.name}: only {frames} frames decoded; SDK log:\n" + "\n".join(page.console[-40:])
            )
        await asyncio.sleep(0.2)
    return frames  # type: ignore[no-any-return]


async def connected(open_page: OpenPage, name: str, server: Server) -> Page:
    page = await open_page(name)
    await page.call("url => hc.connect(url)", f"ws://127.0.0.1:{server.ws_port}")
    return page


async def publish_on_a_play_on_b(
    server: Server, open_page: OpenPage, options: dict[str, str] | None = None
) -> tuple[Page, Page]:
    """Page A publishes ``cam`` (with SDK stream options), page B plays it."""
    a = await connected(open_page, "A", server)
    await a.call("([name, options]) => hc.publish(name, options)", ["cam", options or {}])
    await a.wait_status("publisher", "PUBLISHING")
    b = await connected(open_page, "B", server)
    await b.call("name => hc.play(name)", "cam")
    await b.wait_status("player", "PLAYING")
    return a, b


async def test_publish_on_a_play_on_b(server: Server, open_page: OpenPage) -> None:
    a, b = await publish_on_a_play_on_b(server, open_page)
    await frames_decoded(b, 1)
    # B decodes (nearly) every frame A encodes, counted by the browser over the same window
    encoded, decoded = await frames_over(3.0, a, b)
    assert_kept_up(encoded, decoded, [a, b])


@pytest.mark.parametrize(
    ("codec", "strip"),
    [("VP8", "H264,VP9,AV1,H265"), ("H264", "VP8,VP9,AV1,H265")],
)
async def test_vp8_and_h264_publishers(
    server: Server, open_page: OpenPage, codec: str, strip: str
) -> None:
    a, b = await publish_on_a_play_on_b(server, open_page, {"stripCodecs": strip})
    await frames_decoded(b, 1)
    encoded, decoded = await frames_over(3.0, a, b)
    assert_kept_up(encoded, decoded, [a, b])
    published = await a.call("hc.stats('publisher')")
    played = await b.call("hc.stats('player')")
    assert published["outboundStream"]["video"]["codec"] == codec
    assert played["inboundStream"]["video"]["codec"] == codec
    stream = server.http_app[ENGINE].registry.publisher("cam")
    assert stream is not None and stream.video_codec == codec


async def test_stop_on_a_stops_b(server: Server, open_page: OpenPage) -> None:
    a, b = await publish_on_a_play_on_b(server, open_page)
    await a.call("hc.stop('publisher')")
    await a.wait_status("publisher", "UNPUBLISHED")
    stopped = await b.wait_status("player", "STOPPED")
    assert stopped["info"] == "Stopped by publisher stop"


async def test_closing_a_stops_b(server: Server, open_page: OpenPage) -> None:
    a, b = await publish_on_a_play_on_b(server, open_page)
    await a.page.close()
    stopped = await b.wait_status("player", "STOPPED")
    assert stopped["info"] == "Stopped by publisher stop"


async def test_name_in_use_fails_as_the_sdk_reports_it(server: Server, open_page: OpenPage) -> None:
    await publish_on_a_play_on_b(server, open_page)
    c = await connected(open_page, "C", server)
    await c.call("name => hc.publish(name)", "cam")
    failed = await c.wait_status("publisher", "FAILED")
    assert failed["info"] == "Stream name is already in use"
