"""The record_naming plugin and the core's safe-name rule, through real recordings: real
WebRTC publishers with ``record: true``, files found in records/ and decoded."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hookcast.config.home import Home
from hookcast.server import Server
from hookcast.signalling.client import WcsClient
from tests.conftest import write_plugin
from tests.core.recording.test_recording import EVENTS, decode, publish, settled, wait_events
from tests.served import hookcast

Start = Callable[..., Any]
Connect = Callable[..., Any]
pytestmark = pytest.mark.usefixtures("loopback")


async def record(server: Server, client: WcsClient, name: str, seconds: float = 1.2,
                 codec: str = "H264") -> dict[str, Any]:
    """Publish ``name`` with ``record: true`` for ``seconds``; its last status event, once
    every file is final."""
    stream, _ = await publish(client, name, codec, record=True)
    await asyncio.sleep(seconds)
    await client.stop(stream)
    await settled(server)
    return stream.last


def files(home: Home) -> list[str]:
    return sorted(p.name for p in home.records.iterdir() if not p.name.startswith("."))


async def test_template_with_every_variable_and_end_variables_renamed(
    home: Home, start_server: Start, connect_client: Connect
) -> None:
    template = ("{streamName}_{mediaSessionId}_{sessionId}_{login}_{audioCodec}_{videoCodec}_"
                "{startTime}_{startTimeMillis}_{endTime}_{endTimeMillis}_{duration}")
    write_plugin(home, "events", EVENTS)
    server = await start_server(home, stream_record_policy_template=template)
    client: WcsClient = await connect_client(server, custom={"login": "alice"})
    before = time.time()
    stream, _ = await publish(client, "cam", record=True)
    recording = stream.last["recordName"]
    assert recording.endswith("_{endTime}_{endTimeMillis}_{duration}.mp4"), recording
    async with aiohttp.ClientSession() as http:  # while recording: as WCS shows it
        async with http.post(f"http://127.0.0.1:{server.http_port}/rest-api/recorder/find_all",
                             json={}) as response:
            assert [r["fileName"] for r in await response.json()] == [recording]
    await asyncio.sleep(2)
    await client.stop(stream)
    await settled(server)
    after = time.time()
    (finished,) = await wait_events(home, "finished")
    name = finished["file"]
    assert files(home) == [name] and finished["recordName"] == name
    fields = name.removesuffix(".mp4").split("_")
    start, start_ms, end, end_ms, duration = (int(f) for f in fields[6:])
    assert fields[:6] == ["cam", stream.media_session_id, client.session_id, "alice", "opus",
                          "H264"]
    assert before - 1 <= start <= start_ms / 1000 <= end_ms / 1000 <= after
    assert end == end_ms // 1000 and start == start_ms // 1000
    # milliseconds, not seconds x 1000: the very end time the file was announced with
    assert end_ms == int(finished["finished"] * 1000), (end_ms, finished["finished"])
    media = decode(home.records / name)
    assert abs(duration / 1000 - media["duration"]) < 0.05
    assert abs((end_ms - start_ms) / 1000 - media["duration"]) < 1.5


@pytest.mark.parametrize(("properties", "name", "expected"), [
    ({"stream_record_policy": "streamName"}, "show/one", "showone.mp4"),
    ({"stream_record_policy": "streamName", "exclude_record_name_characters": ":.,/"},
     "a:b.c,d/e", "abcde.mp4"),
    ({"stream_record_policy": "streamName", "encode_record_name": "true,HEX"}, "show/one",
     b"show/one".hex() + ".mp4"),
    ({"stream_record_policy": "streamName", "encode_record_name": "true,BASE64"},
     "show/one?>>", base64.urlsafe_b64encode(b"show/one?>>").decode() + ".mp4"),
    # the file-name-safe alphabet: "-" for "+" and "_" for "/" (the standard alphabet
    # would give Pj4+Pz8/, which the core's cleaning alone would not turn into this)
    ({"stream_record_policy": "streamName", "encode_record_name": "true,BASE64"},
     ">>>???", "Pj4-Pz8_.mp4"),
    ({"stream_record_policy_template": "rec-{streamName}"}, "cam", "rec-cam.mp4"),
], ids=["streamName", "excluded", "hex", "base64", "base64-url-safe", "template"])
async def test_policies_and_encodings(
    home: Home, start_server: Start, connect_client: Connect, properties: dict[str, str],
    name: str, expected: str
) -> None:
    server = await start_server(home, **properties)
    last = await record(server, await connect_client(server), name)
    assert files(home) == [expected] == [last["recordName"]]
    assert decode(home.records / expected)["video"] > 0


async def test_a_long_name_is_cut_and_a_taken_name_is_never_overwritten(
    home: Home, start_server: Start, connect_client: Connect
) -> None:
    taken = home.records / "cam.mp4"
    taken.write_bytes(b"an earlier recording")
    server = await start_server(home, stream_record_policy="streamName",
                                max_stream_name_length="1000")
    client: WcsClient = await connect_client(server)
    await record(server, client, "cam")
    long_name = "é" + "n" * 299
    await record(server, client, long_name)
    assert taken.read_bytes() == b"an earlier recording"
    (cut,) = [f for f in files(home) if f.startswith("é")]
    assert files(home) == sorted(["cam.mp4", "cam_1.mp4", cut])
    assert len(cut.encode()) <= 244 and cut.endswith(".mp4") and long_name.startswith(cut[:-4])
    assert decode(home.records / cut)["video"] > 0


HOSTILE = ["../../etc/x", "a/b", ".hidden", "$(touch pwned)", "a;rm -rf x", "`touch pwned2`",
           "two\nlines", "日本語のストリーム" * 80]
ARGV_LOG = """#!{python}
import json, os, sys
with open(os.path.join(os.environ["HOOKCAST_HOME"], "argv.jsonl"), "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
"""


async def test_hostile_names_stay_in_records_and_reach_the_script_as_one_argument(
    home: Home, start_server: Start, connect_client: Connect, tmp_path: Path
) -> None:
    import json
    import sys

    script = home.hooks / "argv.py"
    script.write_text(ARGV_LOG.format(python=sys.executable))
    script.chmod(0o755)
    (home.root / "x").write_text("must survive")
    server = await start_server(home, stream_record_policy="streamName",
                                max_stream_name_length="1000",
                                on_record_hook_script="hooks/argv.py")
    client: WcsClient = await connect_client(server)
    for name in HOSTILE:
        await record(server, client, name, seconds=0.8)
    nul = await client.publish("a\x00b", [], record=True)
    refused = await nul.wait_status("FAILED")
    assert "name: must not contain a NUL character" in refused["info"]
    log = home.root / "argv.jsonl"
    deadline = time.monotonic() + 20
    while not log.exists() or len(log.read_text().splitlines()) < len(HOSTILE):
        assert time.monotonic() < deadline, "the record script did not run for every file"
        await asyncio.sleep(0.2)
    check_hostile_runs(home, tmp_path, [json.loads(line) for line in log.read_text().splitlines()])


def check_hostile_runs(home: Home, tmp_path: Path, runs: list[list[str]]) -> None:
    """The script got each exact name and a file inside records/; nothing was executed."""
    assert sorted(argv[0] for argv in runs) == sorted(HOSTILE)
    for name, path in runs:
        file = Path(path)
        assert file.parent == home.records.resolve() and file.exists(), (name, path)
        assert not file.name.startswith(".") and len(file.name.encode()) <= 244
    assert len(files(home)) == len(HOSTILE)
    outside = [p for p in tmp_path.rglob("*") if p.name in ("pwned", "pwned2")]
    assert outside == [] and not Path("pwned").exists()
    assert (home.root / "x").read_text() == "must survive"


HOSTILE_NAMER = """
from hookcast import hookimpl

NAMES = {"one": "../../outside", "two": "/etc/passwd", "three": "a\\x00b\\nc",
         "four": "....hidden", "five": "x" * 1000, "six": "", "seven": "../.."}

@hookimpl
def record_file_name(stream, template, variables):
    return NAMES[stream.name]
"""


async def test_a_hostile_naming_plugin_cannot_leave_records(
    home: Home, start_server: Start, connect_client: Connect, tmp_path: Path
) -> None:
    """The safe-name rule is the core's: a drop-in replacing record_naming (swapped out
    with disabled_plugins) names every file, and every file still lands in records/."""
    write_plugin(home, "namer", HOSTILE_NAMER)
    server = await start_server(home, disabled_plugins="record_naming")
    client: WcsClient = await connect_client(server)
    before = {p for p in tmp_path.parent.rglob("*") if p.is_file()}
    for name in ("one", "two", "three", "four", "five", "six", "seven"):
        await record(server, client, name, seconds=0.8)
    made = {p for p in tmp_path.parent.rglob("*") if p.is_file()} - before
    assert {p.parent for p in made} == {home.records}, made
    names = files(home)
    assert len(names) == 7
    assert {"_.._outside.mp4", "_etc_passwd.mp4", "a_b_c.mp4", "hidden.mp4", "_...mp4",
            "x" * 240 + ".mp4"} < set(names)
    # an empty answer is no answer: the core's own template names that one
    assert [n for n in names if n.startswith("stream-")] != []
    assert all(len(n.encode()) <= 244 and not n.startswith(".") for n in names)


SWAPPED = """
from hookcast import hookimpl

@hookimpl
def record_file_name(stream, variables):
    return "swapped-" + variables["streamName"]
"""


async def test_swapped_naming_plugin_and_the_core_fallback(
    home: Home, start_server: Start, connect_client: Connect
) -> None:
    server = await start_server(home, disabled_plugins="record_naming",
                                stream_record_policy="streamName",
                                encode_record_name="true,HEX")
    client: WcsClient = await connect_client(server)
    await record(server, client, "cam")
    stream = client.streams[next(iter(client.streams))]
    # no naming plugin: the core expands the template itself (record_naming's options,
    # stream_record_policy and encode_record_name, are its own and do not apply)
    assert files(home) == [f"stream-{client.session_id}-{stream.media_session_id}.mp4"]
    write_plugin(home, "swapped", SWAPPED)
    server2 = await start_server(home, disabled_plugins="record_naming")
    await record(server2, await connect_client(server2), "cam")
    assert "swapped-cam.mp4" in files(home)


def test_an_unknown_template_variable_stops_the_start(home: Home) -> None:
    home.properties_file.write_text("stream_record_policy_template={streamName}-{user}\n")
    result = hookcast("config", "--check", home=home)
    assert result.returncode == 2
    assert ("stream_record_policy_template={streamName}-{user}: unknown variable {user}; "
            "known: {streamName}, {mediaSessionId}, {sessionId}, {login}, {audioCodec}, "
            "{videoCodec}, {startTime}, {startTimeMillis}, {endTime}, {endTimeMillis}, "
            "{duration}") in result.stderr
    home.properties_file.write_text("encode_record_name=true,ROT13\n")
    result = hookcast("config", "--check", home=home)
    assert result.returncode == 2
    assert "encode_record_name=true,ROT13: expected false, true,HEX or true,BASE64" in result.stderr


async def test_rest_file_template_is_checked_and_used(
    home: Home, start_server: Start, connect_client: Connect
) -> None:
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    stream, _ = await publish(client, "cam")
    url = f"http://127.0.0.1:{server.http_port}/rest-api/stream/startRecording"
    async with aiohttp.ClientSession() as http:
        bad = {"mediaSessionId": stream.media_session_id, "config": {"fileTemplate": "{nope}"}}
        async with http.post(url, json=bad) as response:
            assert response.status == 400
            assert "config.fileTemplate: unknown variable {nope}" in await response.text()
        good = {"mediaSessionId": stream.media_session_id,
                "config": {"fileTemplate": "by-rest-{streamName}"}}
        async with http.post(url, json=good) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["fileName"] == "by-rest-cam.mp4"
    await asyncio.sleep(1)
    await client.stop(stream)
    await settled(server)
    assert files(home) == ["by-rest-cam.mp4"]
