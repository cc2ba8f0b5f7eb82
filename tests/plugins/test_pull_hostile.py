"""Pulls and pushes against remotes that misbehave on purpose (tests/plugins/remotes.py):
what they send never reaches a REST answer, never fills the log, never leads the server
elsewhere, and never holds a terminate."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hookcast.server import Server
from tests.conftest import make_home
from tests.plugins import remotes
from tests.plugins.remotes import Remote, accepting, frame, until_connection
from tests.plugins.test_pull import publish, rest, wait_entry
from tests.served import Served, configure, free_port

Start = Callable[..., Any]
Connect = Callable[..., Any]
pytestmark = pytest.mark.usefixtures("loopback")
MiB = 1 << 20
#: what /pull/terminate may take, whatever the remote does (README)
TERMINATE_BOUND = 3.0


async def call(port: int, method: str, body: Any) -> tuple[int, Any]:
    """POST ``body`` to the REST method of the server whose HTTP port is ``port``."""
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{port}/rest-api/{method}"
        async with http.post(url, json=body) as response:
            return response.status, await response.json(content_type=None)


# --- a remote flooding frames: the log stays small ----------------------------------


HOSTILE = "\x1b[31mhostile\nforged line " + "X" * 300
JUNK = [
    frame("fail", {"apiMethod": "playStream", "info": HOSTILE}),
    frame("fail", {"apiMethod": "connection", "info": HOSTILE}),
    frame("fail", HOSTILE),
    "{not json " + HOSTILE,
    "[1, 2, 3]",
    frame("notifyStreamStatusEvent", {"mediaSessionId": "nobody", "status": "FAILED",
                                      "info": HOSTILE}),
    frame("setRemoteSDP", "nobody"),
    frame("notifyStreamStatusEvent", "not an object"),
    "[" * 50_000,  # nested deeper than the JSON decoder recurses
]


async def flood(ws: web.WebSocketResponse) -> None:
    """Accept the session, then send junk as fast as the connection takes it; after a
    second, fail the client's stream too (so the link retries: a new flood each time)."""
    if await until_connection(ws) is None:
        return
    await ws.send_str(frame("getUserData", {"sessionId": "flood"}))
    plays: list[str] = []

    async def read() -> None:
        async for message in ws:
            sent = json.loads(message.data) if isinstance(message.data, str) else {}
            if sent.get("message") == "playStream":
                plays.append(sent["data"][0]["mediaSessionId"])

    reader = asyncio.create_task(read())
    started = time.monotonic()
    try:
        while not ws.closed:
            for junk in JUNK:
                await ws.send_str(junk)
            if plays and time.monotonic() - started > 1:
                await ws.send_str(frame("fail", {"apiMethod": "playStream", "id": plays[-1],
                                                 "info": HOSTILE}))
            await asyncio.sleep(0)
    except (ConnectionError, RuntimeError):
        pass  # the client went away
    finally:
        reader.cancel()


async def test_a_remote_flooding_frames_adds_less_than_a_mebibyte_of_log(
    tmp_path: Path,
) -> None:
    home = make_home(tmp_path / "b")
    configure(home, pull_connect_timeout="2", pull_retry_initial_delay="0.1",
              pull_retry_max_delay="0.2", pull_retry_attempts="1000")
    b = Served.start(home)
    try:
        await asyncio.to_thread(b.wait_ready)
        async with remotes.ws_remote(flood) as remote:
            before = b.log_size()
            status, made = await call(b.http_port, "pull/pull",
                                      {"uri": remote.uri, "localStreamName": "x"})
            assert status == 200 and made["status"] == "RETRYING", made
            await asyncio.sleep(10)
            assert len(remote.connections) >= 3, "the link retried: a new flood each time"
            status, _ = await call(b.http_port, "pull/terminate", {"localStreamName": "x"})
            assert status == 200
            written = b.log_size() - before
        log = await asyncio.to_thread(b.stop)
    finally:
        if b.process.poll() is None:
            b.process.kill()
        b.remove_log()
    assert written < MiB, f"{written} bytes of log in 10 s"
    assert "similar lines suppressed" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert "\x1b" not in log and "\nforged line" not in log, "remote bytes are escaped"


# --- redirects are not followed -------------------------------------------------------


@pytest.mark.parametrize("direction", ["pull", "push"])
async def test_a_redirect_is_not_followed(
    tmp_path: Path, start_server: Start, connect_client: Connect, direction: str,
) -> None:
    b = await start_server(make_home(tmp_path / "b"), pull_retry_attempts="0")
    if direction == "push":
        await publish(await connect_client(b), "x")
    async with remotes.ws_remote(accepting(remotes.never_answers)) as elsewhere, \
            remotes.http_remote(remotes.redirect(
                f"http://127.0.0.1:{elsewhere.port}/")) as redirecting:
        status, made = await rest(b, f"pull/{direction}",
                                  {"uri": redirecting.uri, "localStreamName": "x"})
        assert status == 200, made
        assert len(redirecting.connections) == 1
        assert elsewhere.connections == [], "the redirect led the server elsewhere"
    assert made["status"] == "FAILED" and made["uri"] == redirecting.uri, made
    assert made["error"] == "gave up after 1 failed attempt: redirect not followed", made


# --- the entry's error: a category, never the remote's bytes -------------------------


MARK = "hostile-bytes-7f3a"


def talking(remote: Callable[..., Any], behaviour: Any) -> Callable[[], Any]:
    return lambda: remote(behaviour)


CASES: dict[str, tuple[Callable[[], Any] | None, str]] = {
    "closed port": (None, "connection refused"),
    "silent port": (talking(remotes.tcp_remote, remotes.silent), "timed out"),
    "ssh banner": (talking(remotes.tcp_remote, remotes.banner(
        f"SSH-2.0-OpenSSH_9.6 {MARK}\r\n".encode())), "not a WCS WebSocket server"),
    "hang up": (talking(remotes.tcp_remote, remotes.hang_up),
                "connection closed by the remote"),
    "http 404": (talking(remotes.http_remote, remotes.http_error(404, MARK)),
                 "not a WCS WebSocket server"),
    "http 500": (talking(remotes.http_remote, remotes.http_error(500, MARK)),
                 "not a WCS WebSocket server"),
    "websocket closed": (talking(remotes.ws_remote, remotes.hangs_up_the_websocket),
                         "connection closed by the remote"),
    "silent websocket": (talking(remotes.ws_remote, remotes.never_answers), "timed out"),
    "refused, known info": (talking(remotes.ws_remote, remotes.refusing(
        f"Restricted access: {MARK}")), "refused by the remote: Restricted access"),
    "refused, any info": (talking(remotes.ws_remote, remotes.refusing(
        f"{MARK}\nforged")), "refused by the remote"),
    "stream failed, known info": (talking(remotes.ws_remote, accepting(
        remotes.failing_streams("Stream not found"))),
        "refused by the remote: Stream not found"),
    "stream failed, any info": (talking(remotes.ws_remote, accepting(
        remotes.failing_streams(f"Stream not found{MARK}"))), "refused by the remote"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_the_error_is_a_category_not_what_the_remote_sent(
    tmp_path: Path, start_server: Start, case: str,
) -> None:
    b = await start_server(make_home(tmp_path / "b"), pull_connect_timeout="1")
    opened, category = CASES[case]
    if opened is None:  # nothing listens there
        made = await pulled(b, f"ws://127.0.0.1:{free_port()}/")
    else:
        async with opened() as remote:
            made = await pulled(b, remote.uri)
    assert made["status"] == "RETRYING" and made["error"] == category, made
    assert MARK not in json.dumps(made) and "SSH" not in made["error"]
    assert not any(str(code) in made["error"] for code in (404, 500)), made


async def pulled(server: Server, uri: str) -> dict[str, Any]:
    """The entry /pull/pull answers for ``uri`` (the pull then terminated)."""
    status, made = await rest(server, "pull/pull", {"uri": uri, "localStreamName": "x"})
    assert status == 200, made
    assert (await rest(server, "pull/terminate", {"localStreamName": "x"}))[0] == 200
    return dict(made)


# --- pull_allowed_hosts ----------------------------------------------------------------


async def test_pull_allowed_hosts_refuses_other_targets(
    tmp_path: Path, start_server: Start,
) -> None:
    b = await start_server(make_home(tmp_path / "b"),
                           pull_allowed_hosts="media-*.example.com, 127.0.0.0/30",
                           pull_retry_attempts="0", pull_connect_timeout="1")
    async with remotes.ws_remote(remotes.hangs_up_the_websocket) as remote:
        refused = [f"ws://127.0.0.5:{remote.port}/", f"ws://localhost:{remote.port}/",
                   "wss://example.com/", "ws://media-1.example.com.evil.org/",
                   f"ws://2130706437:{remote.port}/", f"ws://[::1]:{remote.port}/"]
        for uri in refused:
            for method, name in (("pull/pull", "x"), ("pull/push", "nothing")):
                status, answer = await rest(b, method, {"uri": uri, "localStreamName": name})
                assert status == 403 and answer["field"] == "uri", (uri, answer)
                assert "pull_allowed_hosts" in answer["message"], answer
        assert remote.connections == [], "a refused target is never connected to"
        status, made = await rest(b, "pull/pull", {"uri": remote.uri, "localStreamName": "x"})
        assert status == 200 and made["status"] == "FAILED", made
        assert len(remote.connections) == 1, "an allowed address is connected to"
    status, made = await rest(b, "pull/pull", {"uri": "wss://MEDIA-1.example.com:8443/",
                                               "localStreamName": "y"})
    assert status == 200 and made["error"].endswith("host not found"), made


# --- terminate answers within a bound, whatever the remote does ----------------------


SILENT: dict[str, Callable[[], Any]] = {
    "accepts TCP, never sends": talking(remotes.tcp_remote, remotes.silent),
    "never answers the WebSocket session": talking(remotes.ws_remote,
                                                   remotes.never_answers),
    "never answers the stream": talking(remotes.ws_remote, accepting(remotes.never_answers)),
}


@pytest.mark.parametrize("remote", list(SILENT))
async def test_terminate_answers_in_time_while_connecting_to_a_silent_remote(
    tmp_path: Path, start_server: Start, remote: str,
) -> None:
    b = await start_server(make_home(tmp_path / "b"))  # pull_connect_timeout: 15 s
    async with SILENT[remote]() as silent:
        pulling = asyncio.create_task(rest(b, "pull/pull", {"uri": silent.uri,
                                                            "localStreamName": "x"}))
        await listed(b, "x", "CONNECTING")
        await asyncio.sleep(0.5)  # well into the attempt
        started = time.monotonic()
        status, gone = await rest(b, "pull/terminate", {"localStreamName": "x"})
        took = time.monotonic() - started
        assert took < TERMINATE_BOUND, f"terminate took {took:.1f} s"
        assert status == 200 and gone["terminated"][0]["status"] == "FINISHED", gone
        status, made = await asyncio.wait_for(pulling, 5)
        assert status == 200 and made["status"] == "FINISHED", made


async def listed(server: Server, local: str, status: str, within: float = 10) -> None:
    """Wait until ``local``'s entry is listed with ``status``."""
    deadline = time.monotonic() + within
    while True:
        code, found = await rest(server, "pull/find_all")
        if code == 200 and any(e["localStreamName"] == local and e["status"] == status
                               for e in found):
            return
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.05)


async def test_terminate_answers_in_time_when_an_active_remote_freezes(
    tmp_path: Path, start_server: Start, connect_client: Connect,
) -> None:
    """A real server, frozen (SIGSTOP) while a pull from it and a push to it flow: it
    keeps the connections open but never reads nor answers again."""
    a_home = make_home(tmp_path / "a")
    configure(a_home, ip="127.0.0.1")
    a = Served.start(a_home)
    try:
        await asyncio.to_thread(a.wait_ready)
        b = await start_server(make_home(tmp_path / "b"))
        await publish(await connect_client(b), "cam")
        uri = f"ws://127.0.0.1:{a.ws_port}/"
        status, pushed = await rest(b, "pull/push", {"uri": uri, "localStreamName": "cam"})
        assert status == 200 and pushed["status"] == "ACTIVE", pushed
        status, pulled_back = await rest(b, "pull/pull", {
            "uri": uri, "localStreamName": "copy", "remoteStreamName": "cam"})
        assert status == 200 and pulled_back["status"] == "ACTIVE", pulled_back
        a.process.send_signal(signal.SIGSTOP)
        for name in ("copy", "cam"):  # the pull, then the push
            started = time.monotonic()
            status, gone = await rest(b, "pull/terminate", {"localStreamName": name})
            took = time.monotonic() - started
            assert status == 200 and len(gone["terminated"]) == 1, gone
            assert took < TERMINATE_BOUND, f"terminate {name} took {took:.1f} s"
    finally:
        a.process.send_signal(signal.SIGCONT)
        a.stop(signum=signal.SIGKILL)


# --- retries back off ------------------------------------------------------------------


async def test_retries_back_off_doubling_up_to_the_maximum(
    tmp_path: Path, start_server: Start,
) -> None:
    b = await start_server(make_home(tmp_path / "b"), pull_retry_initial_delay="0.2",
                           pull_retry_max_delay="0.8", pull_retry_attempts="6")
    async with remotes.ws_remote(remotes.hangs_up_the_websocket) as remote:
        status, _ = await rest(b, "pull/pull", {"uri": remote.uri, "localStreamName": "x"})
        assert status == 200
        await wait_entry(b, "x", "FAILED", within=30)
        gaps = between(remote)
    expected = [0.2, 0.4, 0.8, 0.8, 0.8, 0.8]
    assert len(gaps) == len(expected), gaps
    for gap, wait in zip(gaps, expected, strict=True):
        # an attempt adds its own time to the wait (a loaded machine more); without the
        # cap the fourth gap would be 1.6 s
        assert wait * 0.9 <= gap < wait + 0.6, (gaps, expected)


def between(remote: Remote) -> list[float]:
    """The gaps between the remote's connections, in seconds."""
    times = remote.connections
    return [later - earlier for earlier, later in itertools.pairwise(times)]
