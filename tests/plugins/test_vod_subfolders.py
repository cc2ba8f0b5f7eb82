"""Files in sub-folders of media/ through the real server: listed by
``/rest-api/media/find_all`` under their relative name (``shows/ep1.mp4``), played by
``vod://shows/ep1.mp4`` and ``vod-live://shows/ep1.mp4`` (real WebRTC players that decode
what they receive), kept current as folders come and go; every way out of media/
through a sub-folder refused."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hookcast.config.home import Home
from hookcast.keys import MEDIA
from hookcast.media import catalogue
from hookcast.server import Server
from hookcast.signalling.client import WcsClient
from tests.plugins.test_vod import play, rest
from tests.plugins.vod_files import FPS, make_media, numbers

Start = Callable[..., Any]
Connect = Callable[..., Any]
pytestmark = pytest.mark.usefixtures("loopback")


async def media_names(server: Server) -> list[str]:
    status, media = await rest(server, "media/find_all")
    assert status == 200, media
    return [m["fileName"] for m in media]


async def until_listed(server: Server, expected: list[str], limit: float = 10) -> None:
    deadline = time.monotonic() + limit
    while (listed := await media_names(server)) != expected:
        assert time.monotonic() < deadline, f"{listed} != {expected}"
        await asyncio.sleep(0.2)


async def test_a_file_in_a_sub_folder_is_listed_and_plays(
    home: Home, start_server: Start, connect_client: Connect
) -> None:
    await asyncio.to_thread(make_media, home.media / "top.mp4", seconds=1)
    (home.media / "shows" / "season 1").mkdir(parents=True)
    await asyncio.to_thread(make_media, home.media / "shows" / "ep1.mp4", seconds=3)
    await asyncio.to_thread(shutil.copy, home.media / "top.mp4",
                            home.media / "shows" / "season 1" / "ep2.mp4")
    server = await start_server(home)
    status, media = await rest(server, "media/find_all")
    assert status == 200, media
    files = {m["fileName"]: m for m in media}
    assert list(files) == ["shows/ep1.mp4", "shows/season 1/ep2.mp4", "top.mp4"]
    episode = files["shows/ep1.mp4"]
    assert episode["uri"] == "vod://shows/ep1.mp4" and episode["videoCodec"] == "H264"
    assert abs(episode["duration"] - 3) < 0.2 and episode["problem"] == ""
    client: WcsClient = await connect_client(server)
    ends = {episode["uri"]: "End of file", "vod-live://shows/ep1.mp4": "Stopped by publisher stop"}
    for uri, end in ends.items():
        player, got, reading = await play(client, uri)
        stopped = await player.wait_status("STOPPED", timeout=20)
        assert stopped["info"] == end, uri
        await asyncio.wait_for(reading, 10)
        sequence = numbers(got)
        assert got.errors == 0 and len(sequence) >= 0.8 * 3 * FPS, uri
        assert sequence == list(range(sequence[0], sequence[0] + len(sequence))), uri
    player, got, reading = await play(client, "vod://shows/season 1/ep2.mp4")
    await player.wait_status("STOPPED", timeout=20)
    await asyncio.wait_for(reading, 10)
    assert numbers(got)[0] == 0 and len(got.pictures) >= 20

    # the tree is watched: a new folder with a file, a folder moved away
    (home.media / "news").mkdir()
    await asyncio.to_thread(make_media, home.media / "news" / "today.webm", video="vp8",
                            audio="opus", seconds=1)
    await until_listed(server, ["news/today.webm", "shows/ep1.mp4",
                                "shows/season 1/ep2.mp4", "top.mp4"])
    await asyncio.to_thread((home.media / "shows").rename, home.root / "archive")
    await until_listed(server, ["news/today.webm", "top.mp4"])


@pytest.mark.parametrize("uri", [
    "vod://shows/../../conf/server.properties",
    "vod://shows/../../outside/good.mp4",
    "vod://shows/../../../../../../etc/passwd",
    "vod://shows/%2e%2e/%2e%2e/outside/good.mp4",
    "vod://shows/..%2f..%2foutside/good.mp4",
    "vod://shows\\..\\..\\outside\\good.mp4",
    "vod://shows//../../outside/good.mp4",
    "vod:///shows/ep1.mp4",
    "vod://linked/good.mp4",  # a sub-folder that is a link out of media/
    "vod://shows/linked/good.mp4",  # the same, one level down
    "vod://shows/.hidden/ep1.mp4",
    "vod-live://shows/../../outside/good.mp4",
    "vod-live://linked/good.mp4",
])
async def test_no_way_out_of_media_through_a_sub_folder(
    home: Home, start_server: Start, connect_client: Connect, uri: str
) -> None:
    (home.media / "shows" / ".hidden").mkdir(parents=True)
    await asyncio.to_thread(make_media, home.media / "shows" / "ep1.mp4", seconds=1)
    outside = home.root / "outside"
    outside.mkdir()
    await asyncio.to_thread(shutil.copy, home.media / "shows" / "ep1.mp4", outside / "good.mp4")
    (home.media / "linked").symlink_to(outside)
    (home.media / "shows" / "linked").symlink_to(outside)
    await asyncio.to_thread(shutil.copy, home.media / "shows" / "ep1.mp4",
                            home.media / "shows" / ".hidden" / "ep1.mp4")
    server = await start_server(home)
    assert await media_names(server) == ["shows/ep1.mp4"], "links and hidden folders unlisted"
    client: WcsClient = await connect_client(server)
    player = await client.play(uri)
    failed = await player.wait_status("FAILED")
    assert failed["info"] == "File not found", uri
    if uri.startswith("vod-live://"):
        status, answer = await rest(server, "vod/startup", {"uri": uri})
        assert status == 404, answer
    again, got, reading = await play(client, "vod://shows/ep1.mp4")  # the server goes on
    await again.wait_status("STOPPED", timeout=20)
    await asyncio.wait_for(reading, 10)
    assert len(got.pictures) >= 20


def _deep(media: Path, levels: int) -> None:
    folder = media.joinpath(*[f"l{n}" for n in range(1, levels + 1)])
    folder.mkdir(parents=True)
    make_media(folder / "deep.mp4", seconds=0.2)


async def test_depth_and_count_are_bounded(
    home: Home, start_server: Start, caplog: pytest.LogCaptureFixture
) -> None:
    """MAX_DEPTH levels of sub-folders are listed, not one more; MAX_FILES files at
    most; what is left out is said once in the log."""
    await asyncio.to_thread(_deep, home.media, catalogue.MAX_DEPTH + 1)
    for number in range(5):
        await asyncio.to_thread(make_media, home.media / f"f{number}.mp4", seconds=0.2)
    names, left_out = await asyncio.to_thread(catalogue.walk, home.media, 8, 3)
    assert names == ["f0.mp4", "f1.mp4", "f2.mp4"]
    assert left_out == "folders deeper than 8 levels and files beyond the first 3"
    names, left_out = await asyncio.to_thread(catalogue.walk, home.media, 9, 100)
    assert names[-1] == "/".join(f"l{n}" for n in range(1, 10)) + "/deep.mp4" and not left_out
    server = await start_server(home)
    expected = [f"f{n}.mp4" for n in range(5)]
    assert await media_names(server) == expected, "the 9th level is not listed"
    said = [r.getMessage() for r in caplog.records if "are not listed" in r.getMessage()]
    assert said == [f"{home.media}: folders deeper than 8 levels are not listed"]
    eighth = home.media.joinpath(*[f"l{n}" for n in range(1, 9)])
    await asyncio.to_thread(shutil.copy, home.media / "f0.mp4", eighth / "x.mp4")
    await until_listed(server, ["f0.mp4", "f1.mp4", "f2.mp4", "f3.mp4", "f4.mp4",
                                "l1/l2/l3/l4/l5/l6/l7/l8/x.mp4"])


async def test_the_media_watcher_ends_with_the_server(home: Home, start_server: Start) -> None:
    (home.media / "shows").mkdir(parents=True)
    server = await start_server(home)
    media = server.http_app[MEDIA]
    watcher = media._watcher
    assert watcher is not None and watcher._observer is not None
    observer = watcher._observer
    assert observer.is_alive()
    await server.stop()
    assert media._watcher is None and not observer.is_alive()
