"""Which recordings are listed, downloaded and deleted, through the real server: real
WebRTC publishers with ``record: true``, a real record script, real HTTP requests.

One rule for the three: a file is final once it is recorded, complete, renamed and
announced (its record script over); before that a download or a delete is 409 and
``/records/find_all`` leaves it out. Symbolic links in records/ are never followed,
listed, served or deleted; each final file keeps its stream name and times in a hidden
sidecar that goes with it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from hookcast.api import records
from hookcast.config.home import Home
from hookcast.server import Server
from hookcast.signalling.client import WcsClient
from tests.conftest import write_plugin
from tests.core.recording.test_recording import EVENTS, decode, events, http, publish, settled
from tests.plugins.test_record_script import install

Start = Callable[..., Any]
Connect = Callable[..., Any]
pytestmark = pytest.mark.usefixtures("loopback")

#: a record script that says it started, then holds until $HOOKCAST_HOME/release exists
#: (at most 40 s), then says what it saw
HOLDING_SCRIPT = """#!{python}
import json, os, sys, time
home = os.environ["HOOKCAST_HOME"]
open(os.path.join(home, "started"), "a").write(sys.argv[2] + "\\n")
deadline = time.time() + 40
while not os.path.exists(os.path.join(home, "release")) and time.time() < deadline:
    time.sleep(0.05)
with open(os.path.join(home, "ran"), "a") as out:
    out.write(json.dumps({{"file": sys.argv[2], "size": os.path.getsize(sys.argv[2]),
                          "ended": time.time()}}) + "\\n")
"""


async def until(check: Callable[[], Awaitable[bool]], what: str, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while not await check():
        assert time.monotonic() < deadline, f"not in time: {what}"
        await asyncio.sleep(0.1)


async def listed(server: Server) -> list[dict[str, Any]]:
    status, files, _ = await http(server, "GET", "/rest-api/records/find_all")
    assert status == 200, files
    return list(files)


async def refused_while_not_final(server: Server, name: str) -> None:
    """Not listed; a download and a delete are 409, saying why."""
    assert name not in [f["fileName"] for f in await listed(server)]
    status, body, _ = await http(server, "GET", f"/client/records/{name}")
    assert status == 409 and b"is not final yet" in body, (status, body[:200])
    status, answer, _ = await http(server, "POST", "/rest-api/records/delete", {"fileName": name})
    assert status == 409 and "is not final yet" in answer["message"], answer


async def test_a_file_is_listed_served_and_deleted_only_once_its_script_is_over(
    home: Home, start_server: Start, connect_client: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "FINAL_WAIT", 1.0)  # a download waits that long, then 409
    install(home, "hold.py", HOLDING_SCRIPT.format(python=sys.executable))
    server = await start_server(home, on_record_hook_script="hooks/hold.py")
    client: WcsClient = await connect_client(server)
    stream, _ = await publish(client, "cam", record=True)
    name = stream.last["recordName"]
    await until(lambda: _exists(home.records / name), "the file being written")
    await refused_while_not_final(server, name)  # being recorded
    await client.stop(stream)
    started = home.root / "started"
    await until(lambda: _exists(started), "the record script started")
    assert started.read_text().split() == [str((home.records / name).resolve())]
    await refused_while_not_final(server, name)  # finished, its script running
    assert (home.records / name).exists()
    (home.root / "release").touch()
    await until(lambda: _listed(server, name), "the file listed once its script is over")
    (ran,) = [json.loads(line) for line in (home.root / "ran").read_text().splitlines()]
    assert ran["size"] == (home.records / name).stat().st_size, "the script saw the file"
    content = (home.records / name).read_bytes()
    status, body, _ = await http(server, "GET", f"/client/records/{name}")
    assert status == 200 and body == content
    status, answer, _ = await http(server, "POST", "/rest-api/records/delete", {"fileName": name})
    assert (status, answer) == (200, {"deleted": name})
    assert not (home.records / name).exists()
    assert list(home.records.iterdir()) == [], "the sidecar went with the file"


async def test_a_download_asked_as_the_stream_stops_gets_the_final_file(
    home: Home, start_server: Start, connect_client: Connect
) -> None:
    """As the SDK's Stream Recording example does at UNPUBLISHED: the download waits
    (up to FINAL_WAIT) for the file to be final, its script over, and gets it whole."""
    install(home, "slow.sh", "#!/bin/sh\nsleep 1\necho \"$2\" > \"$HOOKCAST_HOME/ran\"\n")
    server = await start_server(home, on_record_hook_script="hooks/slow.sh")
    client: WcsClient = await connect_client(server)
    stream, _ = await publish(client, "cam", record=True)
    await asyncio.sleep(1.5)
    await client.stop(stream)
    name = stream.last["recordName"]
    status, body, _ = await http(server, "GET", f"/client/records/{name}")
    assert status == 200 and (home.root / "ran").exists(), "served once its script was over"
    assert body == (home.records / name).read_bytes() and decode(home.records / name)["video"]


async def _exists(path: Path) -> bool:
    return await asyncio.to_thread(path.exists)


async def _listed(server: Server, name: str) -> bool:
    return name in [f["fileName"] for f in await listed(server)]


async def record(server: Server, client: WcsClient, name: str, seconds: float = 1.5,
                 codec: str = "H264") -> dict[str, Any]:
    stream, _ = await publish(client, name, codec, record=True)
    await asyncio.sleep(seconds)
    await client.stop(stream)
    await settled(server)
    return stream.last


async def test_find_all_and_the_console_tell_recordings_apart(
    home: Home, start_server: Start, connect_client: Connect
) -> None:
    """Default names are UUIDs: the stream name, start and end time come with each file
    (REST and the console's records page), kept in a hidden sidecar that is never
    listed or served and goes with the file."""
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    before = time.time()
    first = await record(server, client, "front door")
    second = await record(server, client, "back <yard>", codec="VP8")
    after = time.time()
    files = {f["fileName"]: f for f in await listed(server)}
    assert set(files) == {first["recordName"], second["recordName"]}
    for last, stream in ((first, "front door"), (second, "back <yard>")):
        found = files[last["recordName"]]
        assert found["streamName"] == stream
        start, end = found["startTime"], found["endTime"]
        assert before * 1000 <= start < end <= after * 1000, found
        assert abs((end - start) / 1000 - found["duration"]) < 1.0, found
    status, page, _ = await http(server, "GET", "/records")
    html = page.decode()
    assert status == 200 and "<th>stream</th><th>started</th><th>ended</th>" in html
    assert '<td class="wrap" data-field="stream">front door</td>' in html
    assert '<td class="wrap" data-field="stream">back &lt;yard&gt;</td>' in html
    found = files[first["recordName"]]
    assert f'data-when="{found["startTime"]}"' in html and f'data-when="{found["endTime"]}"' in html
    sidecar = f".{first['recordName']}.json"
    assert (home.records / sidecar).exists()
    assert (await http(server, "GET", f"/client/records/{sidecar}"))[0] == 404
    status, _, _ = await http(server, "POST", "/rest-api/records/delete", {"fileName": sidecar})
    assert status == 404 and (home.records / sidecar).exists()
    status, _, _ = await http(server, "POST", "/rest-api/records/delete",
                              {"fileName": first["recordName"]})
    assert status == 200 and not (home.records / sidecar).exists()
    assert [p.name for p in home.records.iterdir() if p.name.startswith(".")] == [
        f".{second['recordName']}.json"]


async def test_links_in_records_are_never_followed(
    home: Home, start_server: Start, connect_client: Connect, tmp_path: Path
) -> None:
    server = await start_server(home)
    last = await record(server, await connect_client(server), "cam")
    real = home.records / last["recordName"]
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.mp4"
    shutil.copy(real, secret)  # a playable file outside records/
    (outside / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    hidden = home.records / ".hidden.mp4"
    shutil.copy(real, hidden)
    (home.records / "folder").mkdir()
    links = {
        "out.mp4": secret, "passwd.mp4": outside / "passwd", "inner.mp4": hidden,
        "sidecar.mp4": home.records / f".{real.name}.json", "dir.mp4": outside,
        "sub.mp4": home.records / "folder", "relative.mp4": Path(real.name),
    }
    for name, target in links.items():
        (home.records / name).symlink_to(target)
    assert [f["fileName"] for f in await listed(server)] == [real.name]
    for name in [*links, ".hidden.mp4", "folder"]:
        assert (await http(server, "GET", f"/client/records/{name}"))[0] == 404, name
        status, _, _ = await http(server, "POST", "/rest-api/records/delete", {"fileName": name})
        assert status == 404, name
    for name in links:
        assert (home.records / name).is_symlink(), f"{name} was deleted"
    for kept in (secret, outside / "passwd", hidden, real, home.records / f".{real.name}.json"):
        assert kept.exists(), f"{kept} was reached through a link"
    assert decode(hidden)["video"] > 0


async def test_a_pipe_or_a_link_to_one_never_holds_find_all(
    home: Home, start_server: Start, tmp_path: Path
) -> None:
    """Nothing in records/ but regular files is opened: a FIFO (and a link to one)
    would hold whoever opened it."""
    server = await start_server(home)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    os.mkfifo(home.records / "pipe.mp4")
    (home.records / "link.mp4").symlink_to(fifo)
    assert await asyncio.wait_for(listed(server), 10) == []
    for name in ("pipe.mp4", "link.mp4"):
        status, _, _ = await asyncio.wait_for(http(server, "GET", f"/client/records/{name}"), 10)
        assert status == 404


async def test_a_rename_a_crash_cut_short_is_finished_at_start(
    home: Home, start_server: Start, connect_client: Connect
) -> None:
    """What a kill between the two steps of a rename leaves — the file under its former
    name and its new one (hard links), the former name's marker (recording) and the new
    one's (finishing) — becomes one final file, announced once, at the next start."""
    write_plugin(home, "events", EVENTS)
    server = await start_server(home)
    last = await record(server, await connect_client(server), "cam")
    await server.stop()
    final = home.records / last["recordName"]
    former = home.records / "cam-{endTimeMillis}.mp4"
    os.link(final, former)
    (home.records / f".{final.name}.json").unlink()
    (home.records / f".{former.name}.recording").write_text(json.dumps({
        "state": "recording", "stream": {"name": "cam"}, "part": 1, "startedAt": 1.0}))
    (home.records / f".{final.name}.recording").write_text(json.dumps({
        "state": "finishing", "stream": {"name": "cam", "mediaSessionId": "m1"}, "part": 1,
        "startedAt": 1700000000.0, "finishedAt": 1700000002.5, "error": "", "duration": 1.5,
        "renamedFrom": former.name}))
    (home.root / "recordings.jsonl").unlink()
    server = await start_server(home)
    await until(lambda: _listed(server, final.name), "the file final")
    (found,) = await listed(server)
    assert (found["streamName"], found["startTime"], found["endTime"]) == (
        "cam", 1700000000000, 1700000002500)
    assert sorted(p.name for p in home.records.iterdir()) == [f".{final.name}.json", final.name]
    (announced,) = events(home)
    assert announced["file"] == final.name and announced["recovered"] is True
    assert decode(final)["video"] > 0
