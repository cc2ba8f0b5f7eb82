"""REST hooks against a real aiohttp backend that records what it receives and answers
as each test tells it; clients are real WCS clients over real WebRTC."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiortc.mediastreams import AudioStreamTrack

from hookcast.config.apps import REST_METHODS
from hookcast.config.home import Home
from hookcast.plugins._rest_config import MAX_REPLY, SIGNATURE_HEADER, verify_signature
from hookcast.plugins.rest_hooks import RestHooks
from hookcast.server import Server
from hookcast.signalling.client import ClientStream, WcsClient
from tests.backend import Backend, serving
from tests.core.rtc.relay_harness import DecodingSink, PatternVideoTrack

Start = Callable[..., Any]
KEEP_ALIVE = "StreamKeepAliveEvent"
#: keep-alive every 300 ms, so a test sees several rounds within a second or two
KEEP_ALIVE_FAST = {"keep_alive_streaming_sessions_enabled": "true",
                   "streaming_sessions_keep_alive_interval": "300"}


def write_apps(home: Home, apps: dict[str, tuple[Backend, tuple[str, ...]]],
               rest_client_config: dict[str, Any] | None = None) -> None:
    """conf/apps.json: appKey -> (the backend its hooks go to, the methods it enables);
    every application declares ``rest_client_config`` when given."""
    home.apps_file.write_text(json.dumps({"apps": [
        {"name": key, "appKey": key, "url": backend.url, "methods": list(methods),
         **({"restClientConfig": rest_client_config} if rest_client_config else {})}
        for key, (backend, methods) in apps.items()
    ]}))


def use_backend(home: Home, backend: Backend, methods: tuple[str, ...] = REST_METHODS,
                rest_client_config: dict[str, Any] | None = None) -> None:
    write_apps(home, {"defaultApp": (backend, methods)}, rest_client_config)


def rest_hooks(server: Server) -> RestHooks:
    plugin = next(r.plugin for r in server.bus.plugins() if r.name == "rest_hooks")
    assert isinstance(plugin, RestHooks)
    return plugin


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout}s for {what}"
        await asyncio.sleep(0.02)


async def wait_metrics(server: Server, *lines: str, timeout: float = 10) -> str:
    """/metrics once it shows every one of ``lines``; fails naming those it never showed."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"http://127.0.0.1:{server.http_port}/metrics") as response:
                text = await response.text()
            missing = [line for line in lines if line not in text]
            if not missing:
                return text
            assert time.monotonic() < deadline, f"/metrics never showed {missing} in {timeout}s"
            await asyncio.sleep(0.05)


async def keep_alive_rounds(backend: Backend, alive: Callable[[dict[str, Any]], bool], rounds: int = 2) -> None:
    """Wait for ``rounds`` more keep-alives that ``alive`` picks (one per stream and interval:
    between the first and the last, every live stream had its turn)."""
    def count() -> int:
        return sum(1 for body in backend.bodies(KEEP_ALIVE) if alive(body))
    target = count() + rounds
    await backend.wait_until(lambda: count() >= target, f"{rounds} more keep-alive rounds")


async def assert_media_flows(camera: PatternVideoTrack, sink: DecodingSink, when: str, seconds: float = 2.0) -> None:
    """Over one window the player decodes >= 90 % of the frames the publisher sent in it
    (both ends counted over the same window: a busy machine slows both alike)."""
    sent, decoded = camera.count, sink.frames
    await asyncio.sleep(seconds)  # the measuring window
    sent, decoded = camera.count - sent, sink.frames - decoded
    assert sent > 0, f"{when}: the publisher sent no frame in {seconds}s; nothing was measured"
    assert decoded >= 0.9 * sent, f"{when}: decoded {decoded} of the {sent} frames sent in {seconds}s"


@pytest.fixture
async def hooked(home: Home, backend: Backend, start_server: Start) -> Callable[..., Any]:
    async def start(**properties: str) -> Server:
        use_backend(home, backend)
        return await start_server(home, **properties)  # type: ignore[no-any-return]

    return start


@pytest.fixture
def clients(connect_client: Callable[..., Any]) -> Callable[..., Any]:
    return connect_client


@pytest.fixture
async def backend_b() -> AsyncIterator[Backend]:
    """A second backend, for a second application."""
    async with serving() as backend:
        yield backend


async def publish(client: WcsClient, name: str, **fields: Any) -> ClientStream:
    stream = await client.publish(name, [PatternVideoTrack(), AudioStreamTrack()], **fields)
    await stream.wait_status("PUBLISHING")
    return stream


def config(**methods: dict[str, str]) -> dict[str, Any]:
    """A connect reply carrying restClientConfig."""
    return {"restClientConfig": methods}


async def test_every_method_arrives_with_its_fields(hooked: Start, backend: Backend, clients: Start) -> None:
    server = await hooked(**KEEP_ALIVE_FAST)
    publisher = await clients(server, custom={"room": "a"}, authToken="tok")
    published = await publish(publisher, "cam")
    viewer = await clients(server)
    played = await viewer.play("cam")
    await played.wait_status("PLAYING")
    # a keep-alive of each: the publisher's and the player's (which began later)
    await backend.wait_until(lambda: {b["published"] for b in backend.bodies("StreamKeepAliveEvent")}
                             == {True, False}, "a publisher's and a player's keep-alive")
    await viewer.stop(played)
    await publisher.stop(published)
    await publisher.close()
    await viewer.close()
    # a session's DISCONNECTED comes after every hook of its streams
    await backend.wait_until(lambda: [b["status"] for b in backend.bodies("ConnectionStatusEvent")].count("DISCONNECTED") == 2,
                             "both sessions' DISCONNECTED")

    connect = backend.bodies("connect")[0]
    assert connect["appKey"] == "defaultApp" and connect["sessionId"] == publisher.session_id
    assert connect["custom"] == {"room": "a"} and connect["authToken"] == "tok"
    assert connect["clientVersion"] == "2.0"
    statuses = [b["status"] for b in backend.bodies("ConnectionStatusEvent")]
    assert statuses.count("ESTABLISHED") == 2 and statuses.count("DISCONNECTED") == 2
    publish_hook = backend.bodies("publishStream")[0]
    assert (publish_hook["name"], publish_hook["published"], publish_hook["status"]) == ("cam", True, "PENDING")
    assert publish_hook["mediaSessionId"] == published.media_session_id
    assert publish_hook["sdp"].startswith("v=0")
    play_hook = backend.bodies("playStream")[0]
    assert (play_hook["name"], play_hook["published"]) == ("cam", False)
    events = [(b["published"], b["status"], b["info"]) for b in backend.bodies("StreamStatusEvent")]
    assert (True, "PUBLISHING", "") in events and (False, "PLAYING", "") in events
    assert (False, "STOPPED", "Stopped by user") in events
    assert (True, "UNPUBLISHED", "Stopped by user") in events
    assert backend.bodies("stopStream")[0]["mediaSessionId"] == played.media_session_id
    assert backend.bodies("unPublishStream")[0]["mediaSessionId"] == published.media_session_id
    alive = backend.bodies("StreamKeepAliveEvent")
    assert {b["published"] for b in alive} == {True, False}
    for method, _, headers, _ in backend.received:
        assert headers["Content-Type"].startswith("application/json"), method


async def test_rest_exclude_removes_the_sdp(hooked: Start, backend: Backend, clients: Start) -> None:
    backend.answers["connect"] = (200, config(publishStream={"restExclude": "sdp"}), 0.0)
    server = await hooked()
    await publish(await clients(server), "cam")
    assert "sdp" not in backend.bodies("publishStream")[0]
    assert "name" in backend.bodies("publishStream")[0]


async def test_client_exclude_hides_a_field_from_the_client(hooked: Start, backend: Backend, clients: Start) -> None:
    backend.answers["connect"] = (200, config(StreamStatusEvent={"clientExclude": "custom,createDate"}), 0.0)
    server = await hooked()
    published = await publish(await clients(server), "cam", custom={"secret": 1})
    assert "custom" not in published.last and "createDate" not in published.last
    assert published.last["name"] == "cam"
    assert (await backend.wait_for("StreamStatusEvent"))[0]["custom"] == {"secret": 1}  # the backend still gets it


async def test_overwrite_renames_a_stream(hooked: Start, backend: Backend, clients: Start) -> None:
    backend.answers["connect"] = (200, config(publishStream={"restPolicy": "OVERWRITE", "restOverwrite": "name"}), 0.0)
    backend.answer_for = lambda method, body: (200, {**body, "name": "renamed-" + body["name"]}, 0.0) if method == "publishStream" else None
    server = await hooked()
    published = await publish(await clients(server), "cam")
    assert published.last["name"] == "renamed-cam"
    played = await (await clients(server)).play("renamed-cam")
    await played.wait_status("PLAYING")


async def test_connect_403_refuses_the_session(hooked: Start, backend: Backend) -> None:
    backend.answers["connect"] = (403, {"error": "no"}, 0.0)
    server = await hooked()
    client = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    with pytest.raises(Exception, match="Restricted access: connect answered 403"):
        await client.connect()
    await client.close()


@pytest.mark.parametrize(("on_error", "status"), [("FAIL", "FAILED"), ("LOG", "PUBLISHING")])
async def test_publish_403_fails_with_fail_and_passes_with_log(
    hooked: Start, backend: Backend, clients: Start, on_error: str, status: str
) -> None:
    backend.answers["connect"] = (200, config(publishStream={"restOnError": on_error}), 0.0)
    backend.answers["publishStream"] = (403, {}, 0.0)
    server = await hooked()
    stream = await (await clients(server)).publish("cam", [PatternVideoTrack()])
    event = await stream.wait_status(status)
    if status == "FAILED":
        assert event["info"] == "Restricted access"


async def test_keep_alive_403_stops_only_that_publisher_and_its_players(
    hooked: Start, backend: Backend, clients: Start
) -> None:
    refusing = False  # until both players play: a refused publisher would have none
    backend.answer_for = lambda method, body: (403, {}, 0.0) if (
        refusing and method == KEEP_ALIVE and body["name"] == "doomed" and body["published"]) else None
    server = await hooked(**KEEP_ALIVE_FAST)
    doomed = await publish(await clients(server), "doomed")
    kept = await publish(await clients(server), "kept")
    doomed_player = await (await clients(server)).play("doomed")
    kept_player = await (await clients(server)).play("kept")
    await doomed_player.wait_status("PLAYING")
    await kept_player.wait_status("PLAYING")
    refusing = True
    event = await doomed.wait_status("UNPUBLISHED")
    assert event["info"] == "Terminated by keep-alive"
    assert (await doomed_player.wait_status("STOPPED"))["info"] == "Stopped by publisher stop"
    await keep_alive_rounds(backend, lambda b: b["name"] == "kept" and b["published"])
    await keep_alive_rounds(backend, lambda b: b["name"] == "kept" and not b["published"])
    assert (kept.status, kept_player.status) == ("PUBLISHING", "PLAYING")


async def test_keep_alive_403_for_a_player_stops_only_that_player(
    hooked: Start, backend: Backend, clients: Start
) -> None:
    backend.answer_for = lambda method, body: (403, {}, 0.0) if (
        method == "StreamKeepAliveEvent" and not body["published"] and body["custom"].get("who") == "bob") else None
    server = await hooked(**KEEP_ALIVE_FAST)
    published = await publish(await clients(server), "cam")
    bob = await (await clients(server)).play("cam", custom={"who": "bob"})
    alice = await (await clients(server)).play("cam", custom={"who": "alice"})
    event = await bob.wait_status("STOPPED")
    assert event["info"] == "Terminated by keep-alive"
    await keep_alive_rounds(backend, lambda b: b["custom"].get("who") == "alice")
    assert (published.status, alice.status) == ("PUBLISHING", "PLAYING")


async def test_hanging_or_dead_backend_never_delays_media(
    hooked: Start, backend: Backend, clients: Start
) -> None:
    server = await hooked(**{"rest_request_timeout": "1", "keep_alive_streaming_sessions_enabled": "true",
                             "streaming_sessions_keep_alive_interval": "200"})
    camera = PatternVideoTrack()
    published = await (await clients(server)).publish("cam", [camera, AudioStreamTrack()])
    await published.wait_status("PUBLISHING")
    played = await (await clients(server)).play("cam")
    await played.wait_status("PLAYING")
    sink = DecodingSink(next(t for t in played.tracks if t.kind == "video"), "video/vp8")
    await wait_until(lambda: sink.frames > 0, "the player's first decoded frame")
    backend.answers[KEEP_ALIVE] = (200, None, 30.0)  # hangs far past the timeout
    backend.answers["StreamStatusEvent"] = (200, None, 30.0)
    await backend.wait_for(KEEP_ALIVE, len(backend.bodies(KEEP_ALIVE)) + 2)  # two now hang
    await assert_media_flows(camera, sink, "while the backend hung")
    backend.url = "http://127.0.0.1:9/hooks"  # nothing listens there
    use_backend(server.home, backend)
    rest = rest_hooks(server)
    dead = rest.counts[(KEEP_ALIVE, "unreachable")]
    await wait_until(lambda: rest.counts[(KEEP_ALIVE, "unreachable")] >= dead + 2,
                     "the reloaded apps.json's keep-alives to find the backend down")
    await assert_media_flows(camera, sink, "while the backend was down")
    assert played.status == "PLAYING"
    await sink.close()


async def test_signature_verifies(hooked: Start, backend: Backend, clients: Start) -> None:
    server = await hooked(rest_hook_send_hash="true", rest_hook_secret_key="k3y")
    await publish(await clients(server), "cam")
    assert backend.received
    for method, _, headers, raw in backend.received:
        assert headers["Authorization"] == "WCS " + hmac.new(b"k3y", raw, hashlib.md5).hexdigest(), method
        assert verify_signature(raw, headers[SIGNATURE_HEADER], "k3y", time.time()), method
        assert not verify_signature(raw + b" ", headers[SIGNATURE_HEADER], "k3y", time.time())
        assert not verify_signature(raw, headers[SIGNATURE_HEADER], "k3y", time.time() + 3600)


async def test_only_enabled_methods_are_called(home: Home, backend: Backend, start_server: Start, clients: Start) -> None:
    enabled = {"publishStream", "ConnectionStatusEvent"}
    use_backend(home, backend, methods=tuple(enabled))
    server = await start_server(home)
    client = await clients(server)
    published = await publish(client, "cam")
    played = await client.play("cam")
    await played.wait_status("PLAYING")
    await client.stop(played)
    await client.stop(published)
    await client.close()
    # the session's DISCONNECTED is its last hook: every stream hook has run by then
    await backend.wait_until(lambda: any(b["status"] == "DISCONNECTED" for b in backend.bodies("ConnectionStatusEvent")),
                             "the session's DISCONNECTED")
    assert set(backend.methods()) == enabled


async def test_disable_rest_requests(hooked: Start, backend: Backend, clients: Start) -> None:
    server = await hooked(disable_rest_requests="true")
    client = await clients(server)
    await publish(client, "cam")
    await client.close()
    # rest_hooks has been told the session ended, after every hook of its stream
    await wait_metrics(server, 'hookcast_hook_calls_total{hook="after_session_disconnect",outcome="ok",plugin="rest_hooks"} 1.0')
    assert backend.received == []
    assert rest_hooks(server).counts == {}


async def test_hook_requests_are_counted_by_result(hooked: Start, backend: Backend, clients: Start) -> None:
    backend.answers["connect"] = (200, config(publishStream={"restOnError": "LOG"}), 0.0)
    backend.answers["publishStream"] = (403, {}, 0.0)
    backend.answers["StreamStatusEvent"] = (200, None, 5.0)
    server = await hooked(rest_request_timeout="1")
    await publish(await clients(server), "cam")
    await wait_metrics(  # the StreamStatusEvent request times out after 1 s
        server,
        'hookcast_rest_hook_requests_total{method="connect",result="ok"} 1.0',
        'hookcast_rest_hook_requests_total{method="publishStream",result="http_4xx"} 1.0',
        'hookcast_rest_hook_requests_total{method="StreamStatusEvent",result="timeout"} 1.0',
    )


async def test_local_applications_work_on_an_ipv6_bind(home: Home, start_server: Start, clients: Start) -> None:
    server = await start_server(home, bind_address="::1")  # defaultApp: /apps/EchoApp on this server
    client = WcsClient(f"ws://[::1]:{server.ws_port}/")
    assert (await client.connect())["sessionId"]
    await client.close()
    assert rest_hooks(server).counts[("connect", "ok")] == 1


async def test_an_overwrite_of_the_wrong_type_is_ignored(hooked: Start, backend: Backend, clients: Start) -> None:
    backend.answers["connect"] = (200, config(publishStream={"restPolicy": "OVERWRITE", "restOverwrite": "name,record"}), 0.0)
    backend.answer_for = lambda method, body: (200, {"name": ["not", "a", "name"], "record": "yes"}, 0.0) if method == "publishStream" else None
    server = await hooked()
    published = await publish(await clients(server), "cam")
    assert published.last["name"] == "cam" and published.last["record"] is False


async def test_a_reply_that_is_not_utf8_follows_rest_on_error(hooked: Start, backend: Backend, clients: Start) -> None:
    backend.raw["publishStream"] = (200, '{"name": "caf\xe9"}'.encode("latin-1"))
    server = await hooked()
    published = await publish(await clients(server), "cam")  # the reply is ignored, not fatal
    assert published.status == "PUBLISHING" and published.last["name"] == "cam"


# --- replies: read whole, capped, never redirected ------------------------------------------

RENAME = config(publishStream={"restPolicy": "OVERWRITE", "restOverwrite": "name"})


async def test_an_overwrite_sent_in_chunks_is_read_whole(hooked: Start, backend: Backend, clients: Start) -> None:
    backend.answers["connect"] = (200, RENAME, 0.0)
    backend.answer_for = lambda method, body: (200, {**body, "name": "renamed-" + body["name"]}, 0.0) if method == "publishStream" else None
    backend.chunked["publishStream"] = (5, 0.05)  # the name arrives in the last pieces
    server = await hooked()
    published = await publish(await clients(server), "cam")
    assert published.last["name"] == "renamed-cam"
    played = await (await clients(server)).play("renamed-cam")
    await played.wait_status("PLAYING")


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize(("on_error", "status"), [("FAIL", "FAILED"), ("LOG", "PUBLISHING")])
async def test_a_reply_over_the_cap_follows_rest_on_error(
    hooked: Start, backend: Backend, clients: Start, caplog: pytest.LogCaptureFixture,
    framing: str, on_error: str, status: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="hookcast.rest_hooks")
    backend.answers["connect"] = (200, config(publishStream={
        "restOnError": on_error, "restPolicy": "OVERWRITE", "restOverwrite": "name"}), 0.0)
    backend.answers["publishStream"] = (200, {"name": "renamed", "pad": "x" * MAX_REPLY}, 0.0)
    if framing == "chunked":  # no Content-Length: the cap is found while reading
        backend.chunked["publishStream"] = (16, 0.0)
    server = await hooked()
    stream = await (await clients(server)).publish("cam", [PatternVideoTrack(), AudioStreamTrack()])
    event = await stream.wait_status("PUBLISHING", "FAILED")
    assert stream.status == status, event
    assert event["name"] == "cam"  # the reply was not used
    if status == "FAILED":
        assert event["info"] == "Restricted access"
    assert f"publishStream {backend.url}/publishStream: a reply over {MAX_REPLY} bytes (the cap, 1 MiB)" in caplog.text
    assert rest_hooks(server).counts[("publishStream", "too_large")] == 1


async def test_a_redirect_is_not_followed(
    hooked: Start, backend: Backend, clients: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hookcast.rest_hooks")
    backend.answers["connect"] = (200, config(publishStream={"restOnError": "FAIL"}), 0.0)
    elsewhere = f"{backend.url}/elsewhere"
    backend.redirects["publishStream"] = elsewhere
    server = await hooked()
    stream = await (await clients(server)).publish("cam", [PatternVideoTrack(), AudioStreamTrack()])
    # the verdict comes once the hook's request is over (a followed redirect included)
    event = await stream.wait_status("PUBLISHING", "FAILED")
    assert (stream.status, event["info"]) == ("FAILED", "Restricted access")
    assert backend.bodies("elsewhere") == []
    assert f"publishStream {backend.url}/publishStream: 307, redirect to {elsewhere} not followed" in caplog.text
    assert rest_hooks(server).counts[("publishStream", "http_3xx")] == 1


# --- keep-alive: a stream's own application only ----------------------------------------------

WITHOUT_KEEP_ALIVE = tuple(m for m in REST_METHODS if m != KEEP_ALIVE)


@pytest.mark.parametrize(("listed", "b_methods", "keeper"), [
    ("appB", REST_METHODS, "appB"),  # defaultApp not listed: its stream gets none
    ("defaultApp,appB", WITHOUT_KEEP_ALIVE, "defaultApp"),  # appB does not enable it
], ids=["only-appB-listed", "appB-does-not-enable-it"])
async def test_keep_alive_goes_to_the_streams_own_application(
    home: Home, backend: Backend, backend_b: Backend, start_server: Start, clients: Start,
    listed: str, b_methods: tuple[str, ...], keeper: str,
) -> None:
    write_apps(home, {"defaultApp": (backend, REST_METHODS), "appB": (backend_b, b_methods)})
    server = await start_server(home, streaming_sessions_keep_alive_app_keys=listed, **KEEP_ALIVE_FAST)
    await publish(await clients(server), "cam-default")
    await publish(await clients(server, app_key="appB"), "cam-b")
    kept, other = (backend_b, backend) if keeper == "appB" else (backend, backend_b)
    own = "cam-b" if keeper == "appB" else "cam-default"
    # three more of its own: two whole intervals in which both streams were live
    await keep_alive_rounds(kept, lambda b: b["name"] == own, rounds=3)
    assert {(b["appKey"], b["name"]) for b in kept.bodies(KEEP_ALIVE)} == {(keeper, own)}
    assert other.bodies(KEEP_ALIVE) == []
    assert other.bodies("publishStream")  # that backend does hear of its own streams


async def test_keep_alive_disabled_by_rest_client_config(hooked: Start, backend: Backend, clients: Start) -> None:
    quiet = config(StreamKeepAliveEvent={"restPolicy": "DISABLE"})
    backend.answer_for = lambda method, body: (200, quiet, 0.0) if method == "connect" and body.get("custom", {}).get("quiet") else None
    server = await hooked(**KEEP_ALIVE_FAST)
    await publish(await clients(server, custom={"quiet": True}), "quiet")
    await publish(await clients(server), "loud")
    await keep_alive_rounds(backend, lambda b: b["name"] == "loud", rounds=3)
    assert {b["name"] for b in backend.bodies(KEEP_ALIVE)} == {"loud"}


async def test_terminate_never_waits_for_webhooks(hooked: Start, backend: Backend, clients: Start) -> None:
    """A StreamStatusEvent backend that hangs for the whole hook timeout: REST terminate
    answers once the media stopped; the hook is delivered afterwards, in the background."""
    server = await hooked(rest_request_timeout="10")
    backend.answers["StreamStatusEvent"] = (200, None, 8.0)
    stream = await publish(await clients(server), "cam")
    started = time.monotonic()
    async with aiohttp.ClientSession() as http, http.post(
        f"http://127.0.0.1:{server.http_port}/rest-api/stream/terminate", json={"name": "cam"},
    ) as response:
        assert response.status == 200
        assert await response.json() == {"terminated": [stream.media_session_id]}
    took = time.monotonic() - started
    assert took < 2.0, f"terminate waited {took:.1f} s for a webhook"
    await stream.wait_status("UNPUBLISHED")
    assert stream.info == "Stopped by rest /terminate"
    final = lambda: [b for b in backend.bodies("StreamStatusEvent") if b["status"] == "UNPUBLISHED"]  # noqa: E731
    await backend.wait_until(lambda: bool(final()), "the UNPUBLISHED StreamStatusEvent", 15)


async def test_recording_status_events_reach_the_backend(
    home: Home, backend: Backend, start_server: Start, clients: Start
) -> None:
    """hookcast's RecordingStatusEvent, enabled per application like the other methods:
    STARTED when the file opens, FINISHED once it is final, with its size and duration."""
    use_backend(home, backend, ("RecordingStatusEvent",))
    server = await start_server(home)
    client = await clients(server)
    stream = await publish(client, "cam", record=True)
    await asyncio.sleep(2)
    await client.stop(stream)
    events = await backend.wait_for("RecordingStatusEvent", 2, timeout=20)
    started, finished = events
    name = stream.last["recordName"]
    assert (started["status"], started["fileName"], started["name"]) == ("STARTED", name, "cam")
    assert (finished["status"], finished["fileName"], finished["error"]) == ("FINISHED", name, "")
    assert finished["size"] == (home.records / name).stat().st_size > 0
    assert 1.5 < finished["duration"] < 3.0 and finished["recovered"] is False
    assert finished["mediaSessionId"] == stream.media_session_id and finished["record"] is True
    assert set(backend.methods()) == {"RecordingStatusEvent"}


# --- an application's own restClientConfig (apps.json) ----------------------------------------

GUARDED = {"publishStream": {"restOnError": "FAIL"}, "playStream": {"restOnError": "FAIL"}}


@pytest.mark.parametrize("declared", [True, False], ids=["app-declares-FAIL", "no-app-default"])
@pytest.mark.parametrize("trouble", ["http-500", "timeout", "backend-down"])
async def test_an_apps_fail_refuses_what_its_backend_cannot_answer(
    home: Home, start_server: Start, clients: Start, trouble: str, declared: bool
) -> None:
    """The backend's connect reply carries no restClientConfig (it echoes): the
    application's own decides. With it, a publish or play the backend cannot answer is
    refused; without it, admitted (WCS's default, LOG)."""
    async with contextlib.AsyncExitStack() as running:
        backend = await running.enter_async_context(serving())
        use_backend(home, backend, rest_client_config=GUARDED if declared else None)
        server = await start_server(home, rest_request_timeout="1")
        client = await clients(server)
        await publish(client, "cam")  # while the backend answers
        assert "restClientConfig" not in backend.bodies("connect")[0]
        if trouble == "http-500":
            for method in ("publishStream", "playStream"):
                backend.answers[method] = (500, {"error": "boom"}, 0.0)
        elif trouble == "timeout":
            for method in ("publishStream", "playStream"):
                backend.answers[method] = (200, None, 5.0)  # far past the 1 s timeout
        else:
            await running.aclose()  # nothing listens at its URL any more
        published = await client.publish("cam2", [PatternVideoTrack(), AudioStreamTrack()])
        played = await client.play("cam")
        outcome = [await published.wait_status("PUBLISHING", "FAILED"),
                   await played.wait_status("PLAYING", "FAILED")]
    expected = [("FAILED", "Restricted access")] * 2 if declared else [("PUBLISHING", ""), ("PLAYING", "")]
    assert [(event["status"], event.get("info", "")) for event in outcome] == expected
    result = {"http-500": "http_5xx", "timeout": "timeout", "backend-down": "unreachable"}[trouble]
    assert rest_hooks(server).counts[("publishStream", result)] == 1


async def test_connects_entries_override_the_apps_field_by_field(
    home: Home, backend: Backend, start_server: Start, clients: Start, caplog: pytest.LogCaptureFixture
) -> None:
    """The app says publishStream restOnError FAIL. A connect reply that sets another
    field of publishStream keeps that FAIL; one that sets restOnError LOG wins (WCS's
    per-session semantics); a bad value in it is ignored (logged, escaped)."""
    caplog.set_level(logging.WARNING, logger="hookcast.rest_hooks")
    replies = {"excluder": {"restExclude": "sdp"}, "relaxed": {"restOnError": "LOG"},
               "garbled": {"restOnError": "NOPE\n"}}

    def answer(method: str, body: dict[str, Any]) -> tuple[int, Any, float] | None:
        if method == "connect":
            return 200, config(publishStream=replies[body["custom"]["who"]]), 0.0
        return (403, {}, 0.0) if method == "publishStream" else None

    backend.answer_for = answer
    use_backend(home, backend, rest_client_config={"publishStream": {"restOnError": "FAIL"}})
    server = await start_server(home)
    outcome = {}
    for who in replies:
        client = await clients(server, custom={"who": who})
        stream = await client.publish(f"cam-{who}", [PatternVideoTrack(), AudioStreamTrack()])
        outcome[who] = (await stream.wait_status("PUBLISHING", "FAILED"))["status"]
    assert outcome == {"excluder": "FAILED", "relaxed": "PUBLISHING", "garbled": "FAILED"}
    sent = {b["name"]: b for b in backend.bodies("publishStream")}
    assert "sdp" not in sent["cam-excluder"] and sent["cam-relaxed"]["sdp"].startswith("v=0")
    assert ("restClientConfig.publishStream.restOnError: expected LOG or FAIL, "
            "got 'NOPE\\n' (ignored)") in caplog.text


async def test_connect_carries_the_clients_address_and_nothing_the_client_forged(
    home: Home, backend: Backend, start_server: Start, clients: Start
) -> None:
    """``remoteAddress`` is the client's IP as the server sees it; a client cannot set
    it, nor ``sessionId``, nor slip its own restClientConfig through a backend that
    echoes (as WCS advises backends to): the app's FAIL still holds."""
    backend.answers["publishStream"] = (403, {}, 0.0)
    use_backend(home, backend, rest_client_config={"publishStream": {"restOnError": "FAIL"}})
    server = await start_server(home)
    client = await clients(server, remoteAddress="6.6.6.6", sessionId="forged",
                           restClientConfig={"publishStream": {"restPolicy": "DISABLE"}})
    stream = await client.publish("cam", [PatternVideoTrack(), AudioStreamTrack()])
    assert (await stream.wait_status("PUBLISHING", "FAILED"))["info"] == "Restricted access"
    assert len(backend.bodies("publishStream")) == 1
    connect = backend.bodies("connect")[0]
    assert (connect["remoteAddress"], connect["sessionId"]) == ("127.0.0.1", client.session_id)
    assert "restClientConfig" not in connect
    established = (await backend.wait_for("ConnectionStatusEvent"))[0]
    assert established["remoteAddress"] == "127.0.0.1"


async def test_no_wcs_signature_when_send_hash_is_off(hooked: Start, backend: Backend, clients: Start) -> None:
    """With a secret but rest_hook_send_hash off (its default): hookcast's signature
    only, never WCS's ``Authorization: WCS ...``; without a secret, neither."""
    server = await hooked(rest_hook_secret_key="k3y")
    await publish(await clients(server), "cam")
    assert {"connect", "publishStream"} <= set(backend.methods())
    for method, _, headers, raw in backend.received:
        assert "Authorization" not in headers, method
        assert verify_signature(raw, headers[SIGNATURE_HEADER], "k3y", time.time()), method
    unsigned = await hooked()  # the same backend, a server without a secret
    before = len(backend.received)
    await publish(await clients(unsigned), "cam2")
    assert len(backend.received) > before
    for method, _, headers, _ in backend.received[before:]:
        assert "Authorization" not in headers and SIGNATURE_HEADER not in headers, method


async def test_an_apps_own_config_holds_without_connect(
    home: Home, backend: Backend, start_server: Start, clients: Start
) -> None:
    """An application that does not enable ``connect``: its own restClientConfig is the
    session's, clientExclude included."""
    use_backend(home, backend, ("publishStream", "StreamStatusEvent"), rest_client_config={
        "publishStream": {"restExclude": "sdp"}, "StreamStatusEvent": {"clientExclude": "custom"}})
    server = await start_server(home)
    published = await publish(await clients(server), "cam", custom={"secret": 1})
    assert "custom" not in published.last and published.last["name"] == "cam"
    assert "sdp" not in backend.bodies("publishStream")[0]
    assert (await backend.wait_for("StreamStatusEvent"))[0]["custom"] == {"secret": 1}
