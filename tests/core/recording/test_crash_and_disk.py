"""Recording as an operator's server lives it: ``hookcast serve`` killed with SIGKILL in
the middle of a recording, stopped with SIGTERM, and a records/ that fills up or cannot
be written (a real tmpfs in a private mount namespace)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from aiortc.mediastreams import AudioStreamTrack

from hookcast.config.home import Home
from hookcast.signalling.client import WcsClient
from tests.conftest import write_plugin
from tests.core.recording.test_recording import EVENTS, decode, events
from tests.core.rtc.relay_harness import DecodingSink, PatternVideoTrack
from tests.served import Served, configure

pytestmark = pytest.mark.usefixtures("loopback", "relay_installed")


def can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs none /mnt"],
                           capture_output=True)
    return probe.returncode == 0


def needs_mount() -> None:
    if not can_mount():
        reason = "needs a private mount namespace (unshare -m as root) for a small tmpfs"
        if __import__("os").environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def serve_with_records_on(home: Home, options: str) -> Served:
    """``hookcast serve`` whose records/ is a tmpfs mounted with ``options``, seen by the
    server alone (a mount namespace of its own)."""
    mount = f"mount -t tmpfs -o {options} tmpfs {home.records}"
    command = ("unshare", "-m", "sh", "-c", f'{mount} && exec "$0" "$@"', sys.executable,
               "-m", "hookcast")
    return Served.start(home, command=command)


async def publish(ws_port: int, name: str, **fields: Any) -> tuple[WcsClient, Any]:
    client = WcsClient(f"ws://127.0.0.1:{ws_port}/")
    await client.connect()
    stream = await client.publish(name, [PatternVideoTrack(), AudioStreamTrack()],
                                  video_codec="H264", **fields)
    await stream.wait_status("PUBLISHING")
    return client, stream


async def wait_until(condition: Callable[[], bool], what: str, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"not in time: {what}"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("mp4_audio", ["aac", "opus"])
async def test_kill_9_leaves_a_playable_file_made_final_at_the_next_start(
        home: Home, mp4_audio: str) -> None:
    """The file is named with ``{duration}``, known only at its end: it is written as
    ``cam-{duration}.mp4`` and renamed once recovered, from what it holds; with AAC (the
    transcode) and with Opus kept as it is (record_mp4_audio=opus)."""
    write_plugin(home, "events", EVENTS)
    template = "{streamName}-{duration}"
    configure(home, ip="127.0.0.1", stream_record_policy_template=template,
              record_mp4_audio=mp4_audio)
    served = Served.start(home)
    await asyncio.to_thread(served.wait_ready)
    client, stream = await publish(served.ws_port, "cam", record=True)
    try:
        name = stream.last["recordName"]
        assert name == "cam-{duration}.mp4"
        await asyncio.sleep(5)
        served.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(served.process.wait, 10)
    finally:
        await client.close()
    path = home.records / name
    assert (home.records / f".{name}.recording").exists(), "the marker of a cut file is left"
    cut = decode(path)
    assert cut["codecs"] == {"video": "h264", "audio": mp4_audio}
    assert cut["video"] >= 2.5 * 30, f"only {cut['video']} frames survived the kill"
    configure(home, ip="127.0.0.1", stream_record_policy_template=template,
              record_mp4_audio=mp4_audio)
    again = Served.start(home)
    try:
        await asyncio.to_thread(again.wait_ready)
        await wait_until(lambda: any(e["event"] == "finished" for e in events(home)),
                         "the recovered recording announced")
    finally:
        again.stop()
    (finished,) = [e for e in events(home) if e["event"] == "finished"]
    assert finished["recovered"] is True and finished["stream"] == "cam"
    assert finished["file"] == f"cam-{round(finished['duration'] * 1000)}.mp4"
    assert not path.exists(), "renamed, not copied"
    path = home.records / finished["file"]
    assert finished["size"] == path.stat().st_size and finished["duration"] >= 2.5
    assert not (home.records / f".{name}.recording").exists()
    final = decode(path)
    assert final["video"] >= cut["video"] - 2 and path.read_bytes()[4:8] == b"ftyp"
    assert final["codecs"] == {"video": "h264", "audio": mp4_audio}
    assert b"moov" in path.read_bytes()[:4096], "made final: the index is at the front"


async def test_sigterm_finishes_every_open_file(home: Home) -> None:
    configure(home, ip="127.0.0.1")
    served = Served.start(home)
    await asyncio.to_thread(served.wait_ready)
    clients = [await publish(served.ws_port, f"cam{i}", record=True) for i in range(3)]
    names = [stream.last["recordName"] for _, stream in clients]  # told at PUBLISHING
    try:
        await asyncio.sleep(3)
        stderr = await asyncio.to_thread(served.stop, 30)
    finally:
        for client, _ in clients:
            await client.close()
    assert served.process.returncode == 0, stderr
    assert not list(home.records.glob(".*.recording")), "every file final: no marker left"
    for name in names:
        media = decode(home.records / name)
        assert media["video"] > 60 and media["codecs"] == {"video": "h264", "audio": "aac"}


async def test_a_full_disk_ends_the_recording_and_never_the_stream(home: Home) -> None:
    needs_mount()
    write_plugin(home, "events", EVENTS)
    configure(home, ip="127.0.0.1")
    served = serve_with_records_on(home, "size=400k")
    await asyncio.to_thread(served.wait_ready)
    client, stream = await publish(served.ws_port, "cam", record=True)
    viewer = WcsClient(f"ws://127.0.0.1:{served.ws_port}/")
    try:
        await viewer.connect()
        played = await viewer.play("cam")
        await played.wait_status("PLAYING")
        video = next(t for t in played.tracks if t.kind == "video")
        sink = DecodingSink(video, "video/h264")
        await wait_until(lambda: any(e["event"] == "finished" for e in events(home)),
                         "the recording ended by the full disk", limit=40)
        (finished,) = [e for e in events(home) if e["event"] == "finished"]
        assert "No space left on device" in finished["error"], finished
        before = sink.frames
        await asyncio.sleep(2)
        assert sink.frames - before >= 45, "the player goes on after the recording failed"
        assert sink.errors == 0 and stream.status == "PUBLISHING" and played.status == "PLAYING"
        await sink.close()
        metrics = await asyncio.to_thread(served.get, "/metrics")
        assert "hookcast_recordings_failed_total 1.0" in metrics
        assert "hookcast_recordings_active 0.0" in metrics
    finally:
        await viewer.close()
        await client.close()
        stderr = served.stop()
    assert "recording of cam ended: " in stderr and "No space left on device" in stderr


async def test_an_unwritable_records_folder_is_said_and_the_stream_goes_on(home: Home) -> None:
    needs_mount()
    write_plugin(home, "events", EVENTS)
    configure(home, ip="127.0.0.1")
    served = serve_with_records_on(home, "ro")
    await asyncio.to_thread(served.wait_ready)
    client, stream = await publish(served.ws_port, "cam", record=True)
    try:
        await wait_until(lambda: any(e["event"] == "finished" for e in events(home)),
                         "the failed recording announced")
        (finished,) = [e for e in events(home) if e["event"] == "finished"]
        assert "Read-only file system" in finished["error"] and finished["size"] == 0
        assert stream.status == "PUBLISHING"
        metrics = await asyncio.to_thread(served.get, "/metrics")
        assert "hookcast_recordings_failed_total 1.0" in metrics
    finally:
        await client.close()
        stderr = served.stop()
    assert "recording of cam cannot start: OSError: Read-only file system" in stderr


HOLDING = """#!/bin/sh
echo "$$" >> "$HOOKCAST_HOME/held"
sleep 60
"""
TELLING = """#!/bin/sh
echo "$HOOKCAST_RECOVERED $HOOKCAST_FILE_NAME" >> "$HOOKCAST_HOME/announced"
"""


def rest(served: Served, method: str, body: Any = None) -> tuple[int, Any]:
    """A REST call to a served process: (status, parsed answer)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{served.http_port}/rest-api/{method}", method="POST",
        data=json.dumps(body if body is not None else {}).encode(),
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


async def test_kill_9_keeps_the_end_time_and_what_is_not_final_yet(home: Home) -> None:
    """A file a kill cut short ends at its last write, not at the restart: its
    ``{endTimeMillis}``, its announced end and its sidecar say so. Killed again while its
    record script runs, it stays unfinished (not listed, not served) and is announced
    again, its script run again, at the next start; then it is listed with its stream
    name and times."""
    write_plugin(home, "events", EVENTS)
    for name, text in (("hold.sh", HOLDING), ("tell.sh", TELLING)):
        (home.hooks / name).write_text(text)
        (home.hooks / name).chmod(0o755)
    template = "{streamName}-{endTimeMillis}"

    def serve(script: str) -> Served:
        configure(home, ip="127.0.0.1", stream_record_policy_template=template,
                  on_record_hook_script=script)
        return Served.start(home)

    served = serve("hooks/hold.sh")
    await asyncio.to_thread(served.wait_ready)
    client, stream = await publish(served.ws_port, "cam", record=True)
    cut = home.records / stream.last["recordName"]
    try:
        await asyncio.sleep(3)
        served.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(served.process.wait, 10)
    finally:
        await client.close()
    ended = cut.stat().st_mtime - 1.25  # its last write: moved back, away from any restart
    os.utime(cut, (ended, ended))
    final_name = f"cam-{int(ended * 1000)}.mp4"

    served = serve("hooks/hold.sh")  # announces it; killed while its script runs
    try:
        await asyncio.to_thread(served.wait_ready)
        await wait_until(lambda: (home.root / "held").exists(), "the record script started")
        (finished,) = [e for e in events(home) if e["event"] == "finished"]
        assert finished["file"] == final_name and finished["recovered"] is True, finished
        assert abs(finished["finished"] - ended) < 0.001, (finished["finished"], ended)
        assert await asyncio.to_thread(rest, served, "records/find_all") == (200, [])
        status, _ = await asyncio.to_thread(rest, served, "records/delete",
                                            {"fileName": final_name})
        assert status == 409
    finally:
        served.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(served.process.wait, 10)
        for pid in (home.root / "held").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    assert not cut.exists() and (home.records / final_name).exists()
    marker = json.loads((home.records / f".{final_name}.recording").read_text())
    assert marker["state"] == "finishing"
    assert sorted(p.name for p in home.records.iterdir()) == [
        f".{final_name}.recording", final_name]

    served = serve("hooks/tell.sh")  # announced again, then final
    try:
        await asyncio.to_thread(served.wait_ready)

        def listed() -> list[dict[str, Any]]:
            return list(rest(served, "records/find_all")[1])

        await wait_until(lambda: bool(listed()), "the file final at last")
        (found,) = listed()
    finally:
        served.stop()
    assert found["fileName"] == final_name and found["streamName"] == "cam"
    assert found["endTime"] == int(ended * 1000) and 0 < found["startTime"] < found["endTime"]
    assert (home.root / "announced").read_text() == f"true {final_name}\n"
    sidecar = json.loads((home.records / f".{final_name}.json").read_text())
    assert (sidecar["streamName"], sidecar["endTime"]) == ("cam", int(ended * 1000))
    assert sorted(p.name for p in home.records.iterdir()) == [f".{final_name}.json", final_name]
    assert decode(home.records / final_name)["video"] >= 30


async def test_sigterm_gives_a_running_record_script_the_grace_then_ends(home: Home) -> None:
    """A file is final once its record script is over; at shutdown a script still
    running gets what is left of the 10 s grace, is killed, and the file is final: the
    server exits in time and leaves no marker."""
    (home.hooks / "hold.sh").write_text(HOLDING)
    (home.hooks / "hold.sh").chmod(0o755)
    configure(home, ip="127.0.0.1", on_record_hook_script="hooks/hold.sh")
    served = Served.start(home)
    await asyncio.to_thread(served.wait_ready)
    client, stream = await publish(served.ws_port, "cam", record=True)
    name = stream.last["recordName"]
    try:
        await asyncio.sleep(2)
    finally:
        await client.close()  # the stream ends: its file is finished, its script starts
    await wait_until(lambda: (home.root / "held").exists(), "the record script started")
    began = time.monotonic()
    stderr = await asyncio.to_thread(served.stop, 30)
    took = time.monotonic() - began
    assert served.process.returncode == 0, stderr
    assert 8 < took < 20, f"stopped in {took:.1f} s"
    assert "killed after" in stderr, stderr[-2000:]
    (pid,) = (home.root / "held").read_text().split()
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)
    assert sorted(p.name for p in home.records.iterdir()) == [f".{name}.json", name]
