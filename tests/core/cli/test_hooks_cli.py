"""``hookcast hooks outbox|retry|delete`` against a real ``hookcast serve`` and a backend
process (tests/hook_backend.py) that refuses one event for good (400: dead) and fails
another (500: pending, retried): the table and ``--json``, replaying the dead one (the
backend then gets it), deleting, and the refusals (status 1) and wrong command lines
(status 2)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiortc.mediastreams import AudioStreamTrack

from hookcast.config.home import Home
from hookcast.signalling.client import WcsClient
from tests.core.cli.test_rest_commands import ok, refused
from tests.core.rtc.relay_harness import PatternVideoTrack
from tests.hook_backend import HookBackend, free_port
from tests.served import Served, hookcast

pytestmark = pytest.mark.usefixtures("loopback", "relay_installed")


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[HookBackend]:
    """ConnectionStatusEvent: 400 once (final: dead), then 200; StreamStatusEvent: 500
    (pending, tried again every 30 s or so)."""
    process = HookBackend(free_port(), tmp_path / "backend.jsonl")
    process.start("--answer", "ConnectionStatusEvent=400,200",
                  "--answer", "StreamStatusEvent=500")
    yield process
    process.kill()


def hooked(home: Home, backend: HookBackend, serving: Callable[..., Served],
           **properties: str) -> Served:
    home.apps_file.write_text(json.dumps({"apps": [{
        "name": "defaultApp", "appKey": "defaultApp", "url": backend.url,
        "methods": ["ConnectionStatusEvent", "StreamStatusEvent"]}]}))
    served = serving(ip="127.0.0.1", rest_retry_min_delay="30", **properties)
    served.wait_ready()
    return served


async def run(*args: str, home: Home, code: int = 0) -> str:
    """stdout of a command that must succeed (``code`` 0), or stderr of one that must fail
    with ``code``; the command runs off the event loop (the test's client lives on it)."""
    if code == 0:
        return await asyncio.to_thread(lambda: ok(*args, home=home))
    return await asyncio.to_thread(lambda: refused(*args, home=home, code=code))


async def rows(home: Home, *options: str) -> list[dict[str, Any]]:
    found = json.loads(await run("hooks", "outbox", "--json", *options, home=home))
    assert isinstance(found, list)
    return found


async def test_list_retry_and_delete_outbox_rows(
        home: Home, backend: HookBackend, serving: Callable[..., Served]) -> None:
    served = await asyncio.to_thread(hooked, home, backend, serving)
    assert (await run("hooks", "outbox", home=home)).split() == [
        "ID", "STATUS", "APP", "METHOD", "KEY", "ATTEMPTS", "NEXT", "LAST", "RESULT"]
    client = WcsClient(f"ws://127.0.0.1:{served.ws_port}/")
    try:
        await client.connect()
        stream = await client.publish("cam", [PatternVideoTrack(), AudioStreamTrack()])
        await stream.wait_status("PUBLISHING")
        await backend.wait_until(lambda r: len(r) >= 2, "ESTABLISHED and PUBLISHING", 10)
        for _ in range(50):  # the outcome of the delivery is saved just after it
            if len(await rows(home, "--status", "dead")) == 1:
                break
            await asyncio.sleep(0.1)
        [dead] = await rows(home, "--status", "dead")
        [pending] = await rows(home, "--status", "pending")
        assert (dead["method"], dead["attempts"], dead["lastResult"]) == (
            "ConnectionStatusEvent", 1, "http_4xx: final")
        assert (pending["method"], pending["lastResult"]) == ("StreamStatusEvent", "http_5xx")
        table = (await run("hooks", "outbox", home=home)).splitlines()
        assert len(table) == 3
        by_id = {line.split()[0]: line.split() for line in table[1:]}
        assert by_id[str(dead["id"])][1:6] == [
            "dead", "defaultApp", "ConnectionStatusEvent", f"session/{client.session_id}",
            "1"]
        assert by_id[str(dead["id"])][6:] == ["-", "http_4xx:", "final"]
        line = by_id[str(pending["id"])]
        assert line[1:5] == ["pending", "defaultApp", "StreamStatusEvent",
                             f"stream/{stream.media_session_id}"]
        assert line[6].count("-") == 2 and line[-1] == "http_5xx", "its next attempt's time"
        assert await rows(home, "--app", "otherApp") == []
        assert await rows(home, "--app", "defaultApp", "--status", "dead") == [dead]

        # refusals name what is wrong; pending rows are never deleted
        assert "say which rows: IDs, or --status delivered|dead" in await run(
            "hooks", "delete", home=home, code=2)
        assert f"Not found: no delivered or dead row among {pending['id']}" in await run(
            "hooks", "delete", str(pending["id"]), home=home, code=1)
        assert "Not found: no dead row among 999999" in await run(
            "hooks", "retry", "999999", home=home, code=1)
        assert "invalid choice: 'pending'" in await run(
            "hooks", "delete", "--status", "pending", home=home, code=2)
        assert "invalid int value: 'x'" in await run("hooks", "retry", "x", home=home, code=2)
        assert [row["id"] for row in await rows(home, "--status", "pending")] == [pending["id"]]

        # the dead one replayed: the backend takes it this time
        assert await run("hooks", "retry", str(dead["id"]), home=home) == \
            f"retried 1 notification: {dead['id']}\n"
        received = await backend.wait_until(
            lambda r: [h["answer"] for h in r if h["id"] == dead["eventId"]] == [400, 200],
            "the replay", 10)
        assert [h["body"]["status"] for h in received if h["id"] == dead["eventId"]] == [
            "ESTABLISHED", "ESTABLISHED"]
        assert await run("hooks", "retry", home=home) == "no dead notifications\n"
        for _ in range(50):
            if await rows(home, "--status", "delivered"):
                break
            await asyncio.sleep(0.1)
        [done] = await rows(home, "--status", "delivered")
        assert (done["id"], done["attempts"]) == (dead["id"], 1)
        assert await run("hooks", "delete", "--status", "delivered", home=home) == \
            "deleted 1 notification\n"
        assert await run("hooks", "delete", "--status", "dead", "--app", "defaultApp",
                         home=home) == "no dead notifications of defaultApp\n"
        assert [row["id"] for row in await rows(home)] == [pending["id"]]
    finally:
        await client.close()


def test_a_server_without_hooks_and_no_server_are_said(
        home: Home, tmp_path: Path, serving: Callable[..., Served]) -> None:
    served = serving(disabled_plugins="rest_hooks")
    served.wait_ready()
    for command in (("outbox",), ("retry", "1"), ("delete", "--status", "dead")):
        assert "unknown method /rest-api/hooks/outbox/" in refused("hooks", *command,
                                                                  home=home)
        unreachable = refused("hooks", *command, "--url", "http://127.0.0.1:1", home=home)
        assert "cannot reach hookcast at http://127.0.0.1:1" in unreachable
    result = hookcast("hooks", home=home)
    assert result.returncode == 2 and "{outbox,retry,delete}" in result.stderr
