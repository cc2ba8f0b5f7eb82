"""The REST-hook outbox as an operator lives it: ``hookcast serve`` processes, real WCS
clients publishing over WebRTC, and a backend process (tests/hook_backend.py) that is
down, killed, restarted, or hangs. What is checked is what the backend receives (its
log: method, ``webhook-id``, body) and what the REST API shows."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc.mediastreams import AudioStreamTrack

from hookcast.config.home import Home
from hookcast.signalling.client import WcsClient
from tests.core.rtc.relay_harness import PatternVideoTrack
from tests.hook_backend import HookBackend, free_port
from tests.served import Served, configure

pytestmark = pytest.mark.usefixtures("loopback", "relay_installed")
#: the notifications the application enables (no connect or publishStream: those are
#: admission calls, sent at once, and a backend that is down would refuse every client)
METHODS = ("ConnectionStatusEvent", "StreamStatusEvent", "RecordingStatusEvent")
#: retries every 1 to 5 s (jittered), so a backend that comes back is found quickly
FAST = {"rest_retry_min_delay": "1", "rest_retry_max_delay": "5"}
Event = tuple[str, str, str]  # (method, mediaSessionId or sessionId, status)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[HookBackend]:
    """The backend's port and log; not started (a test starts it when it is "up")."""
    process = HookBackend(free_port(), tmp_path / "backend.jsonl")
    yield process
    process.kill()


@pytest.fixture
def servers() -> Iterator[list[Served]]:
    """Every ``hookcast serve`` a test starts; killed at the end if still running."""
    started: list[Served] = []
    yield started
    for served in started:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait(10)
        served.remove_log()


async def serve(home: Home, backend: HookBackend, servers: list[Served],
                **properties: str) -> Served:
    """``hookcast serve`` on ``home`` (new free ports) with defaultApp's hooks going to
    ``backend``; returns once it answers."""
    home.apps_file.write_text(json.dumps({"apps": [{
        "name": "defaultApp", "appKey": "defaultApp", "url": backend.url,
        "methods": list(METHODS)}]}))
    configure(home, ip="127.0.0.1", **{**FAST, **properties})
    served = Served.start(home)
    servers.append(served)
    await asyncio.to_thread(served.wait_ready)
    return served


async def rest(served: Served, method: str, body: dict[str, Any] | None = None,
               ) -> tuple[int, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        url = f"http://127.0.0.1:{served.http_port}/rest-api/{method}"
        async with http.post(url, json=body or {}) as response:
            return response.status, await response.json(content_type=None)


async def outbox(served: Served, status: str) -> list[dict[str, Any]]:
    """The outbox's rows of ``status`` (REST hooks/outbox/find_all), oldest first."""
    code, rows = await rest(served, "hooks/outbox/find_all", {"status": status,
                                                              "limit": 10000})
    assert code in (200, 404), rows
    return sorted(rows, key=lambda row: row["id"]) if code == 200 else []


async def wait_outbox(served: Served, status: str, count: int,
                      timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(rows := await outbox(served, status)) < count:
        assert time.monotonic() < deadline, f"{len(rows)} {status} rows, not {count}"
        await asyncio.sleep(0.2)
    return rows



# --- streams -------------------------------------------------------------------------


async def publish_and_stop(ws_port: int, name: str, hold: float = 2.0,
                           record: bool = False) -> tuple[str, str]:
    """One session publishes ``name`` (recording it if ``record``) for ``hold`` seconds,
    stops it and leaves; its (sessionId, mediaSessionId)."""
    client = WcsClient(f"ws://127.0.0.1:{ws_port}/")
    try:
        await client.connect()
        stream = await client.publish(name, [PatternVideoTrack(), AudioStreamTrack()],
                                      record=record)
        await stream.wait_status("PUBLISHING")
        await asyncio.sleep(hold)
        await client.stop(stream)
        return client.session_id, stream.media_session_id
    finally:
        await client.close()


def expected(sessions: list[str], streams: list[str], recorded: bool) -> Counter[Event]:
    """What a backend must receive, once each: every session's ESTABLISHED and
    DISCONNECTED, every stream's PUBLISHING and UNPUBLISHED (and its recording's STARTED
    and FINISHED)."""
    events: Counter[Event] = Counter()
    for session in sessions:
        events.update([("ConnectionStatusEvent", session, "ESTABLISHED"),
                       ("ConnectionStatusEvent", session, "DISCONNECTED")])
    for stream in streams:
        events.update([("StreamStatusEvent", stream, "PUBLISHING"),
                       ("StreamStatusEvent", stream, "UNPUBLISHED")])
        if recorded:
            events.update([("RecordingStatusEvent", stream, "STARTED"),
                           ("RecordingStatusEvent", stream, "FINISHED")])
    return events


def event_of(hook: dict[str, Any]) -> Event:
    body = hook["body"]
    key = body["sessionId"] if hook["method"] == "ConnectionStatusEvent" \
        else body["mediaSessionId"]
    return hook["method"], key, body["status"]


def delivered(received: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The hooks answered 200, by webhook-id (the first such receipt of each)."""
    found: dict[str, dict[str, Any]] = {}
    for hook in received:
        if hook["answer"] == 200:
            found.setdefault(hook["id"], hook)
    return found


def assert_exactly(received: list[dict[str, Any]], events: Counter[Event]) -> None:
    """Every expected event arrived under one id of its own, nothing else did, and a
    repeated id is a retry: the same body again."""
    bodies: dict[str, Any] = {}
    for hook in received:
        assert bodies.setdefault(hook["id"], hook["body"]) == hook["body"], \
            f"id {hook['id']} came with two bodies: a duplicate that is not a retry"
    got = Counter(event_of(hook) for hook in delivered(received).values())
    assert set(bodies) == set(delivered(received)), "every id received was delivered"
    assert got == events, (f"missing {events - got}, unexpected {got - events}")


def assert_in_order(received: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """Per stream (and per session), the hooks came in the order the outbox made them
    (its row ids), a retry never after the next event of its key; and a stream's
    PUBLISHING before its UNPUBLISHED, its recording's STARTED before its FINISHED."""
    row_of = {row["eventId"]: row["id"] for row in rows}
    by_key: dict[str, list[int]] = defaultdict(list)
    statuses: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for hook in received:
        method, key, status = event_of(hook)
        by_key[key].append(row_of[hook["id"]])
        if hook["answer"] == 200 and (method, status) not in statuses[key]:
            statuses[key].append((method, status))
    for key, ids in by_key.items():
        assert ids == sorted(ids), f"{key}: hooks out of the outbox's order {ids}"
    for key, seen in statuses.items():
        for first, then in ((("StreamStatusEvent", "PUBLISHING"),
                             ("StreamStatusEvent", "UNPUBLISHED")),
                            (("RecordingStatusEvent", "STARTED"),
                             ("RecordingStatusEvent", "FINISHED")),
                            (("ConnectionStatusEvent", "ESTABLISHED"),
                             ("ConnectionStatusEvent", "DISCONNECTED"))):
            if first in seen or then in seen:
                assert seen.index(first) < seen.index(then), f"{key}: {seen}"


def remove(database: Path) -> None:
    """Delete an SQLite database and its WAL files."""
    for extra in ("", "-wal", "-shm"):
        Path(f"{database}{extra}").unlink(missing_ok=True)


# --- the tests -----------------------------------------------------------------------


async def test_a_backend_down_for_60_s_gets_every_event_once_in_order_per_stream(
        home: Home, backend: HookBackend, servers: list[Served]) -> None:
    """50 streams publish, record and stop (in batches of 10) while the backend is down;
    it comes back 60 s after the first: every event arrives within 20 s, under one id
    each, in order per stream and per session."""
    served = await serve(home, backend, servers)
    down = time.monotonic()
    done: list[tuple[str, str]] = []
    for batch in range(5):
        done += await asyncio.gather(*(
            publish_and_stop(served.ws_port, f"cam{batch}-{n}", record=True)
            for n in range(10)))
    sessions, streams = [s for s, _ in done], [m for _, m in done]
    events = expected(sessions, streams, recorded=True)
    pending = await wait_outbox(served, "pending", sum(events.values()))
    assert all(row["lastResult"] in ("", "unreachable") for row in pending)
    tried = [row for row in pending if row["attempts"]]
    assert tried and all(row["lastResult"] == "unreachable" for row in tried)
    await asyncio.sleep(max(0.0, 60 - (time.monotonic() - down)))
    await asyncio.to_thread(backend.start)
    back = time.monotonic()
    total = sum(events.values())
    received = await backend.wait_until(
        lambda r: len(delivered(r)) >= total, f"{total} events delivered", 20)
    took = time.monotonic() - back
    await asyncio.sleep(2)  # nothing more comes (no event twice, no stray event)
    received = await asyncio.to_thread(backend.received)
    assert_exactly(received, events)
    rows = await wait_outbox(served, "delivered", total)
    assert_in_order(received, rows)
    assert await outbox(served, "pending") == [] and await outbox(served, "dead") == []
    print(f"{total} events from {len(streams)} streams delivered {took:.1f} s after the "
          f"backend came back ({len(received)} receipts)")


async def test_kill_9_with_events_pending_then_a_restart_delivers_them(
        home: Home, backend: HookBackend, servers: list[Served]) -> None:
    served = await serve(home, backend, servers)
    done = await asyncio.gather(*(publish_and_stop(served.ws_port, f"cam{n}", hold=0.5)
                                  for n in range(3)))
    events = expected([s for s, _ in done], [m for _, m in done], recorded=False)
    pending = await wait_outbox(served, "pending", sum(events.values()))
    served.process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(served.process.wait, 10)
    await asyncio.to_thread(backend.start)
    again = await serve(home, backend, servers)
    total = len(pending)
    received = await backend.wait_until(
        lambda r: len(delivered(r)) >= total, f"the {total} pending events", 20)
    assert set(delivered(received)) == {row["eventId"] for row in pending}
    assert_exactly(received, events)
    assert_in_order(received, await wait_outbox(again, "delivered", total))
    assert f"{total} notifications pending from before, delivering" in again.log()


async def test_a_hanging_backend_is_retried_and_never_slows_a_publish(
        home: Home, backend: HookBackend, servers: list[Served]) -> None:
    """StreamStatusEvent hangs (the backend never answers): the request times out after
    rest_request_timeout (4 s) and the event is tried again under the same id; a
    publish meanwhile gets PUBLISHING as fast as ever. Once the backend answers, the
    events are delivered."""
    await asyncio.to_thread(backend.start, "--hang", "StreamStatusEvent")
    served = await serve(home, backend, servers, rest_request_timeout="4")
    first = WcsClient(f"ws://127.0.0.1:{served.ws_port}/")
    second = WcsClient(f"ws://127.0.0.1:{served.ws_port}/")
    try:
        await first.connect()
        hung = await first.publish("hung", [PatternVideoTrack()])
        await hung.wait_status("PUBLISHING")

        def attempts(received: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
            return [h for h in received if h["method"] == "StreamStatusEvent"
                    and h["body"]["name"] == name]

        await backend.wait_until(lambda r: bool(attempts(r, "hung")), "the first attempt", 10)
        await second.connect()
        started = time.monotonic()
        quick = await second.publish("quick", [PatternVideoTrack()])
        await quick.wait_status("PUBLISHING")
        round_trip = time.monotonic() - started
        assert round_trip < 2, f"publish to PUBLISHING took {round_trip:.2f} s"
        print(f"publish to PUBLISHING with a hanging backend: {round_trip:.2f} s")
        received = await backend.wait_until(lambda r: len(attempts(r, "hung")) >= 2,
                                            "a second attempt after the timeout", 15)
        tries = attempts(received, "hung")
        assert {h["id"] for h in tries} == {tries[0]["id"]}, "retried under the same id"
        assert tries[1]["time"] - tries[0]["time"] >= 4, "tried again after the timeout"
        [row] = [r for r in await outbox(served, "pending") if r["eventId"] == tries[0]["id"]]
        assert row["lastResult"] == "timeout" and row["attempts"] >= 1
        backend.kill()
        await asyncio.to_thread(backend.start)  # answers promptly now
        received = await backend.wait_until(
            lambda r: {"hung", "quick"} <= {h["body"]["name"] for h in r
                                            if h["method"] == "StreamStatusEvent"
                                            and h["answer"] == 200},
            "both PUBLISHING delivered", 20)
        assert delivered(received).keys() >= {tries[0]["id"]}
    finally:
        await first.close()
        await second.close()


async def test_a_database_deleted_is_made_again(
        home: Home, backend: HookBackend, servers: list[Served]) -> None:
    """Deleted while the server is stopped: made again at the next start, without a word
    (nothing was lost that it knew of). Deleted while it runs (the backend down, events
    pending): it is made again at the next write, with what is pending, said in one
    line; a restart then delivers those events."""
    await asyncio.to_thread(backend.start)
    served = await serve(home, backend, servers)
    database = home.root / "state" / "outbox.db"
    await publish_and_stop(served.ws_port, "before", hold=0.5)
    await backend.wait_until(lambda r: len(delivered(r)) >= 4, "4 events", 10)
    await asyncio.to_thread(served.stop)
    await asyncio.to_thread(remove, database)
    served = await serve(home, backend, servers)
    assert database.exists() and "outbox" not in served.log(), served.log()
    await publish_and_stop(served.ws_port, "after", hold=0.5)
    await backend.wait_until(lambda r: len(delivered(r)) >= 8, "4 more events", 10)
    # (the backend counts an event before the server has its answer: wait for the rows)
    assert len(await wait_outbox(served, "delivered", 4)) == 4, \
        "a new database: only the new rows"
    # deleted under the running server, with the backend down: events pending
    await asyncio.to_thread(backend.kill)
    await publish_and_stop(served.ws_port, "first", hold=0.5)
    await wait_outbox(served, "pending", 4)
    await asyncio.to_thread(remove, database)
    await publish_and_stop(served.ws_port, "second", hold=0.5)
    await wait_outbox(served, "pending", 8)
    assert database.exists(), "made again at the next write"
    assert served.log().count("deleted or replaced while the server ran") == 1
    await asyncio.to_thread(served.stop)
    await asyncio.to_thread(backend.start)
    served = await serve(home, backend, servers)
    await backend.wait_until(lambda r: len(delivered(r)) >= 16, "the 8 pending events", 20)
