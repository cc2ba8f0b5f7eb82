"""The catalogue of records/ through the real server: 10,000 final recordings (one short
file made with PyAV, copied as the server leaves a final file: the file and its
sidecar, no marker) listed by ``/rest-api/records/find_all`` over real HTTP, fast once
built; files added, changed and deleted on disk or through REST seen in time."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hookcast.config.home import Home
from hookcast.keys import RECORDS_CATALOGUE
from hookcast.recording import store
from hookcast.server import Server
from tests.plugins.vod_files import make_media

Start = Callable[..., Any]
COUNT = 10_000
#: epoch seconds of the oldest copy; copy i is i seconds newer
BASE = 1_700_000_000
#: what a second find_all of 10,000 files may take, wall time of the HTTP call
FAST = 0.100


def _final(source: Path, folder: Path, name: str, modified: int, stream: str) -> None:
    """``name`` in ``folder`` as a final recording: its sidecar, then the file (written
    aside, renamed into place), no marker."""
    sidecar = {"streamName": stream, "mediaSessionId": f"m-{name}", "part": 1,
               "startTime": (modified - 2) * 1000, "endTime": modified * 1000}
    store.sidecar_of(folder / name).write_text(json.dumps(sidecar))
    aside = folder / f".{name}.tmp"
    shutil.copyfile(source, aside)
    os.utime(aside, (modified, modified))
    os.replace(aside, folder / name)


def _rewrite(path: Path, content: Path) -> None:
    """``path`` rewritten in place with what ``content`` holds (same name, same inode)."""
    with open(path, "r+b") as file:
        file.truncate(0)
        file.write(content.read_bytes())


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as file:
        file.write(data)


def _many(source: Path, folder: Path) -> None:
    for number in range(COUNT):
        _final(source, folder, f"rec-{number:05d}.mp4", BASE + number, f"cam {number}")


async def find_all(server: Server) -> tuple[float, list[dict[str, Any]]]:
    """Wall time of one find_all over HTTP (request sent to body read), and its answer."""
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        async with session.get(
                f"http://127.0.0.1:{server.http_port}/rest-api/records/find_all") as response:
            raw = await response.read()
        took = time.perf_counter() - started
    assert response.status == 200, raw[:300]
    return took, json.loads(raw)


async def names(server: Server) -> list[str]:
    return [f["fileName"] for f in (await find_all(server))[1]]


async def until(check: Callable[[], Awaitable[bool]], what: str, limit: float = 2.0) -> float:
    """Seconds until ``check()`` holds (at most ``limit``)."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < limit, f"not within {limit} s: {what}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short H.264 + AAC MP4 made with PyAV."""
    return make_media(tmp_path_factory.mktemp("made") / "short.mp4", seconds=0.5)


async def test_ten_thousand_files_listed_fast_and_kept_current(
    home: Home, start_server: Start, recording: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await asyncio.to_thread(_many, recording, home.records)
    size = (await asyncio.to_thread(recording.stat)).st_size
    server = await start_server(home)
    first, files = await find_all(server)
    assert len(files) == COUNT
    assert [f["fileName"] for f in files] == [f"rec-{n:05d}.mp4" for n in
                                             reversed(range(COUNT))], "newest first"
    newest = files[0]
    assert newest == {
        "fileName": "rec-09999.mp4", "size": size,
        "createDate": (BASE + 9999) * 1000, "duration": newest["duration"],
        "videoCodec": "H264", "audioCodec": "AAC", "width": 320, "height": 240,
        "url": "/client/records/rec-09999.mp4", "streamName": "cam 9999",
        "startTime": (BASE + 9997) * 1000, "endTime": (BASE + 9999) * 1000}
    assert 0.4 < newest["duration"] < 0.7
    again = [(await find_all(server))[0] for _ in range(5)]
    with capsys.disabled():
        print(f"\nfind_all of {COUNT} files: first {first * 1000:.0f} ms (the catalogue "
              f"built at start, waited for), then {', '.join(f'{t * 1000:.0f}' for t in again)} ms")
    assert again[0] <= FAST, f"a second find_all took {again[0] * 1000:.0f} ms"
    assert sorted(again)[2] <= FAST

    # on disk: a file added, one deleted, one rewritten in place
    await asyncio.to_thread(_final, recording, home.records, "added.mp4", BASE + COUNT, "new")
    await asyncio.to_thread((home.records / "rec-00000.mp4").unlink)
    longer = await asyncio.to_thread(make_media, home.root / "longer.mp4", seconds=2)
    await asyncio.to_thread(_rewrite, home.records / "rec-00001.mp4", longer)

    async def added_and_deleted() -> bool:
        listed = await names(server)
        return listed[0] == "added.mp4" and "rec-00000.mp4" not in listed

    async def rewritten() -> bool:
        found = {f["fileName"]: f for f in (await find_all(server))[1]}
        return found["rec-00001.mp4"]["duration"] > 1.5

    await until(added_and_deleted, "a file added and one deleted on disk")
    await until(rewritten, "a file rewritten in place")
    took, files = await find_all(server)
    assert len(files) == COUNT and took <= FAST * 3

    # through REST: gone from the next listing at once
    async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{server.http_port}/rest-api/records/delete",
            json={"fileName": "rec-05000.mp4"}) as response:
        assert response.status == 200
    assert "rec-05000.mp4" not in await names(server)
    assert not (home.records / ".rec-05000.mp4.json").exists()


async def test_only_final_files_are_listed_and_one_made_final_at_once(
    home: Home, start_server: Start, recording: Path, tmp_path: Path
) -> None:
    """A file with a marker (being recorded) is left out until its marker goes, then
    listed by the very next call; hidden files, folders and links never are."""
    _final(recording, home.records, "done.mp4", BASE, "cam")
    shutil.copyfile(recording, home.records / ".hidden.mp4")
    shutil.copyfile(recording, tmp_path / "outside.mp4")
    (home.records / "out.mp4").symlink_to(tmp_path / "outside.mp4")
    (home.records / "inner.mp4").symlink_to(home.records / "done.mp4")
    (home.records / "folder.mp4").mkdir()
    (home.records / "notes.txt").write_text("not a recording")
    server = await start_server(home)
    assert await names(server) == ["done.mp4"]
    # as the server records: the marker (after the start: it would be recovered), the file
    store.write_marker(home.records / "busy.mp4", {"state": "recording"})
    shutil.copyfile(recording, home.records / "busy.mp4")
    assert await names(server) == ["done.mp4"]
    await asyncio.to_thread(_append, home.records / "busy.mp4", b"\0" * 100)  # still written
    assert await names(server) == ["done.mp4"]
    await asyncio.to_thread(store.make_final, home.records / "busy.mp4", {"streamName": "busy"})
    listed = (await find_all(server))[1]
    assert [f["fileName"] for f in listed] == ["busy.mp4", "done.mp4"], "at once"
    assert listed[0]["streamName"] == "busy"
    await asyncio.to_thread((home.records / "done.mp4").unlink)
    assert await names(server) == ["busy.mp4"], "a file deleted on disk: at once"


async def test_the_catalogue_ends_with_the_server_even_while_it_is_built(
    home: Home, start_server: Start, recording: Path
) -> None:
    """Stopped right after its start, the first build under way: the build is cancelled
    and the watcher's thread is gone."""
    for number in range(300):
        await asyncio.to_thread(_final, recording, home.records, f"r{number}.mp4", BASE, "cam")
    server = await start_server(home)
    catalogue = server.http_app[RECORDS_CATALOGUE]
    build, watcher = catalogue._build, catalogue._watcher
    assert build is not None and watcher is not None
    observer = watcher._observer
    assert observer is not None and observer.is_alive()
    await server.stop()
    assert build.done() and catalogue._watcher is None
    assert not observer.is_alive()
