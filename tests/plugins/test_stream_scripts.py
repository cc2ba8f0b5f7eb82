"""The stream_scripts plugin: a real publish, play, stop and unpublish each run their
script once, with the documented argv and environment."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import pytest

from hookcast.config.home import Home
from hookcast.signalling.client import WcsClient
from tests.core.recording.test_recording import publish
from tests.plugins.test_record_script import LOGGING_SCRIPT, install, runs, wait_runs

Start = Callable[..., Any]
Connect = Callable[..., Any]
pytestmark = pytest.mark.usefixtures("loopback")


async def test_publish_play_stop_unpublish_each_run_their_script_once(
    home: Home, start_server: Start, connect_client: Connect
) -> None:
    script = install(home, "event.py", LOGGING_SCRIPT.format(python=sys.executable))
    scripts = {f"on_{event}_hook_script": "hooks/event.py"
               for event in ("publish", "unpublish", "play", "stop")}
    server = await start_server(home, **scripts)
    publisher: WcsClient = await connect_client(server)
    viewer: WcsClient = await connect_client(server)
    stream, _ = await publish(publisher, "cam; rm -rf /")
    await wait_runs(home, 1)
    player = await viewer.play("cam; rm -rf /")
    await player.wait_status("PLAYING")
    await wait_runs(home, 2)
    await viewer.stop(player)
    await wait_runs(home, 3)
    await publisher.stop(stream)
    await wait_runs(home, 4)
    await asyncio.sleep(1)  # nothing more comes
    found = runs(home)
    events = [(run["env"]["HOOKCAST_EVENT"], run["argv"]) for run in found]
    assert events == [
        ("publish", [str(script), "cam; rm -rf /", stream.media_session_id]),
        ("play", [str(script), "cam; rm -rf /", player.media_session_id]),
        ("stop", [str(script), "cam; rm -rf /", player.media_session_id]),
        ("unpublish", [str(script), "cam; rm -rf /", stream.media_session_id]),
    ]
    statuses = [run["env"]["HOOKCAST_STATUS"] for run in found]
    assert statuses == ["PUBLISHING", "PLAYING", "STOPPED", "UNPUBLISHED"]
    for run, client in zip(found, (publisher, viewer, viewer, publisher), strict=True):
        env = run["env"]
        assert env["HOOKCAST_STREAM_NAME"] == "cam; rm -rf /"
        assert env["HOOKCAST_SESSION_ID"] == client.session_id
        assert env["HOOKCAST_APP_KEY"] == "defaultApp" and env["HOOKCAST_HOME"] == str(home.root)
        assert env["HOOKCAST_MEDIA_SESSION_ID"] == run["argv"][2]


async def test_no_property_no_script(
    home: Home, start_server: Start, connect_client: Connect
) -> None:
    install(home, "event.py", LOGGING_SCRIPT.format(python=sys.executable))
    server = await start_server(home, on_play_hook_script="hooks/event.py")
    client: WcsClient = await connect_client(server)
    stream, _ = await publish(client, "cam")
    await client.stop(stream)
    await asyncio.sleep(1.5)
    assert runs(home) == []  # only on_play_hook_script is set, and nobody played
