"""The record_script plugin: real recordings finish, real scripts run (argv, never a
shell), and what they were given, how long they ran and what became of them is checked."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc.mediastreams import AudioStreamTrack

from hookcast.config.home import Home
from hookcast.config.skeleton import init_home
from hookcast.server import Server
from hookcast.signalling.client import WcsClient
from tests.core.recording.test_recording import publish, settled

Start = Callable[..., Any]
Connect = Callable[..., Any]
pytestmark = pytest.mark.usefixtures("loopback")

#: writes its argv, environment and start/end times to runs/<pid>.json
LOGGING_SCRIPT = """#!{python}
import json, os, sys, time
started = time.time()
time.sleep(float(os.environ.get("HOOKCAST_SCRIPT_SLEEP", "0")))
folder = os.path.join(os.environ["HOOKCAST_HOME"], "runs")
os.makedirs(folder, exist_ok=True)
path = os.path.join(folder, f"{{os.getpid()}}.json")
with open(path + ".part", "w") as out:
    json.dump({{"argv": sys.argv, "env": dict(os.environ), "cwd": os.getcwd(),
               "started": started, "ended": time.time()}}, out)
os.rename(path + ".part", path)  # whole, or not there
"""


def install(home: Home, name: str, text: str) -> Path:
    path = home.hooks / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def runs(home: Home) -> list[dict[str, Any]]:
    folder = home.root / "runs"
    found = [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.exists() else []
    return sorted(found, key=lambda run: run["started"])


async def wait_runs(home: Home, count: int, limit: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + limit
    while len(found := runs(home)) < count:
        assert time.monotonic() < deadline, f"{count} script runs expected, {len(found)} seen"
        await asyncio.sleep(0.2)
    return found


async def metrics(server: Server) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{server.http_port}/metrics") as response:
            return await response.text()


async def test_argv_and_environment_as_documented(
    home: Home, start_server: Start, connect_client: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = install(home, "log.py", LOGGING_SCRIPT.format(python=sys.executable))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "server-secret")
    monkeypatch.setenv("HOOKCAST_SECRET", "the server's own, not the scripts'")
    monkeypatch.setenv("HOOKCAST_SCRIPT_BUCKET", "for-scripts")
    server = await start_server(home, on_record_hook_script="hooks/log.py",
                                stream_record_policy="streamName")
    client: WcsClient = await connect_client(server)
    stream, _ = await publish(client, "it's a \"cam\" $HOME", record=True)
    await asyncio.sleep(1.5)
    await client.stop(stream)
    await settled(server)
    (run,) = await wait_runs(home, 1)
    file = home.records / stream.last["recordName"]
    assert run["argv"] == [str(script), "it's a \"cam\" $HOME", str(file.resolve())]
    env = run["env"]
    hookcast = {k: v for k, v in env.items() if k.startswith("HOOKCAST_")}
    assert set(hookcast) == {
        "HOOKCAST_EVENT", "HOOKCAST_STREAM_NAME", "HOOKCAST_MEDIA_SESSION_ID",
        "HOOKCAST_SESSION_ID", "HOOKCAST_APP_KEY", "HOOKCAST_FILE", "HOOKCAST_FILE_NAME",
        "HOOKCAST_PART", "HOOKCAST_DURATION", "HOOKCAST_SIZE", "HOOKCAST_RECOVERED",
        "HOOKCAST_ERROR", "HOOKCAST_HOME", "HOOKCAST_RECORDS", "HOOKCAST_SCRIPT_BUCKET"}
    assert hookcast["HOOKCAST_EVENT"] == "record" and hookcast["HOOKCAST_PART"] == "1"
    assert hookcast["HOOKCAST_STREAM_NAME"] == "it's a \"cam\" $HOME"
    assert hookcast["HOOKCAST_MEDIA_SESSION_ID"] == stream.media_session_id
    assert hookcast["HOOKCAST_SESSION_ID"] == client.session_id
    assert hookcast["HOOKCAST_FILE"] == str(file.resolve())
    assert hookcast["HOOKCAST_SIZE"] == str(file.stat().st_size)
    assert 1.0 < float(hookcast["HOOKCAST_DURATION"]) < 2.5
    assert hookcast["HOOKCAST_RECOVERED"] == "false" and hookcast["HOOKCAST_ERROR"] == ""
    assert hookcast["HOOKCAST_SCRIPT_BUCKET"] == "for-scripts"
    assert "AWS_SECRET_ACCESS_KEY" not in env and "HOOKCAST_SECRET" not in env and "PATH" in env
    assert run["cwd"] == str(home.root)
    assert 'hookcast_record_scripts_total{outcome="ok",property="on_record_hook_script"} 1.0' \
        in await metrics(server)


async def test_timeout_kills_the_process_group(
    home: Home, start_server: Start, connect_client: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    install(home, "slow.sh", "#!/bin/sh\nsleep 60 &\necho $! > \"$HOOKCAST_HOME/child\"\n"
                             "echo $$ > \"$HOOKCAST_HOME/parent\"\necho 'stuck' >&2\nsleep 60\n")
    server = await start_server(home, on_record_hook_script="hooks/slow.sh",
                                record_hook_timeout="1")
    client: WcsClient = await connect_client(server)
    stream, _ = await publish(client, "cam", record=True)
    await asyncio.sleep(1)
    await client.stop(stream)
    await settled(server)
    deadline = time.monotonic() + 15
    while "timeout" not in await metrics(server):
        assert time.monotonic() < deadline, "the script was not killed"
        await asyncio.sleep(0.2)
    for pid_file in ("parent", "child"):
        pid = int((home.root / pid_file).read_text())
        assert not running(pid), f"the script's {pid_file} is still running"
    assert "killed after 1 s" in caplog.text and "stderr: stuck" in caplog.text


def running(pid: int) -> bool:
    """The process exists and is not a zombie (killed, waiting for its reaper)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


async def test_concurrency_bound_holds_with_ten_recordings_ending_at_once(
    home: Home, start_server: Start, connect_client: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(home, "log.py", LOGGING_SCRIPT.format(python=sys.executable))
    monkeypatch.setenv("HOOKCAST_SCRIPT_SLEEP", "1")
    server = await start_server(home, on_record_hook_script="hooks/log.py",
                                record_hook_concurrency="3")
    client: WcsClient = await connect_client(server)
    streams = []
    for number in range(10):  # audio only: ten publishers are cheap
        stream = await client.publish(f"mic{number}", [AudioStreamTrack()], record=True)
        await stream.wait_status("PUBLISHING")
        streams.append(stream)
    await asyncio.sleep(1.5)
    await asyncio.gather(*(client.stop(stream) for stream in streams))
    await settled(server)
    found = await wait_runs(home, 10, limit=40)
    assert sorted(run["argv"][1] for run in found) == sorted(f"mic{n}" for n in range(10))
    overlap = max(sum(1 for other in found if other["started"] <= run["started"] < other["ended"])
                  for run in found)
    assert overlap <= 3, f"{overlap} scripts ran at once"
    assert overlap >= 2, "the scripts were not run side by side"


async def test_missing_script_warns_once_and_recordings_go_on(
    home: Home, start_server: Start, connect_client: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(home, on_record_hook_script="hooks/nope.sh")
    assert caplog.text.count("on_record_hook_script=hooks/nope.sh: no such file") == 1
    client: WcsClient = await connect_client(server)
    for _ in range(2):
        stream, _ = await publish(client, "cam", record=True)
        await asyncio.sleep(0.8)
        await client.stop(stream)
        await settled(server)
    await asyncio.sleep(0.5)
    assert len(list(home.records.glob("*.mp4"))) == 2
    assert caplog.text.count("nope.sh: no such file") == 1
    assert 'outcome="missing"' in await metrics(server)


async def test_an_empty_property_turns_it_off(
    home: Home, start_server: Start, connect_client: Connect
) -> None:
    install(home, "log.py", LOGGING_SCRIPT.format(python=sys.executable))
    server = await start_server(home, on_record_hook_script="")
    client: WcsClient = await connect_client(server)
    stream, _ = await publish(client, "cam", record=True)
    await asyncio.sleep(0.8)
    await client.stop(stream)
    await settled(server)
    await asyncio.sleep(1)
    assert runs(home) == [] and "record_scripts" not in await metrics(server)


async def test_the_shipped_script_copies_the_file(
    tmp_path: Path, start_server: Start, connect_client: Connect,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """hooks/on_record_hook.sh as `hookcast init` writes it, with HOOKCAST_SCRIPT_COPY_DIR."""
    home = Home(tmp_path / "home")
    init_home(home)
    copies = tmp_path / "copies with spaces"
    monkeypatch.setenv("HOOKCAST_SCRIPT_COPY_DIR", str(copies))
    server = await start_server(home, stream_record_policy="streamName")
    client: WcsClient = await connect_client(server)
    stream, _ = await publish(client, "a 'quoted' $(name)", record=True)
    await asyncio.sleep(1)
    await client.stop(stream)
    await settled(server)
    original = home.records / stream.last["recordName"]
    copy = copies / original.name
    deadline = time.monotonic() + 15
    while not copy.exists():
        assert time.monotonic() < deadline, "the file was not copied"
        await asyncio.sleep(0.2)
    assert copy.read_bytes() == original.read_bytes()
    assert [p.name for p in copies.iterdir()] == [original.name]


async def test_what_a_script_prints_is_logged_with_its_exit(
    home: Home, start_server: Start, connect_client: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """stdout and stderr tails in the exit line: escaped, the last LOGGED_CHARACTERS of
    each (a script printing 100 KB does not make a 100 KB line)."""
    install(home, "talk.sh", "#!/bin/sh\n"
                             "echo 'uploading'; printf 'done \\033[31mred\\n'\n"
                             "echo 'a warning' >&2\n"
                             "head -c 100000 /dev/zero | tr '\\0' x >&2; echo ' the end' >&2\n"
                             "exit 3\n")
    server = await start_server(home, on_record_hook_script="hooks/talk.sh")
    client: WcsClient = await connect_client(server)
    stream, _ = await publish(client, "cam", record=True)
    await asyncio.sleep(1)
    await client.stop(stream)
    await settled(server)  # the file is final once its script is over: it has run
    (line,) = [r.getMessage() for r in caplog.records if "hooks/talk.sh for stream" in
               r.getMessage()]
    assert ": exit 3 in " in line, line
    assert "; stdout: uploading\\ndone \\x1b[31mred; stderr: ..." in line, line
    stderr = line.split("; stderr: ", 1)[1]
    assert stderr.startswith("...x") and stderr.endswith("x the end") and len(stderr) == 503
