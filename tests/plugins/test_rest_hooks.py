"""REST hooks against a real aiohttp backend that records what it receives and answers
as each test tells it; clients are real WCS clients over real WebRTC."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiortc.mediastreams import AudioStreamTrack

from hookcast.config.apps import REST_METHODS
from hookcast.config.home import Home
from hookcast.plugins._rest_config import SIGNATURE_HEADER, verify_signature
from hookcast.server import Server
from hookcast.signalling.client import ClientStream, WcsClient
from tests.backend import Backend
from tests.core.rtc.relay_harness import DecodingSink, PatternVideoTrack

Start = Callable[..., Any]


def use_backend(home: Home, backend: Backend, methods: tuple[str, ...] = REST_METHODS) -> None:
    home.apps_file.write_text(json.dumps({"apps": [
        {"name": "defaultApp", "appKey": "defaultApp", "url": backend.url, "methods": list(methods)},
    ]}))


@pytest.fixture
async def hooked(home: Home, backend: Backend, start_server: Start) -> Callable[..., Any]:
    async def start(**properties: str) -> Server:
        use_backend(home, backend)
        return await start_server(home, **properties)  # type: ignore[no-any-return]

    return start


@pytest.fixture
def clients(connect_client: Callable[..., Any]) -> Callable[..., Any]:
    return connect_client


async def publish(client: WcsClient, name: str, **fields: Any) -> ClientStream:
    stream = await client.publish(name, [PatternVideoTrack(), AudioStreamTrack()], **fields)
    await stream.wait_status("PUBLISHING")
    return stream


def config(**methods: dict[str, str]) -> dict[str, Any]:
    """A connect reply carrying restClientConfig."""
    return {"restClientConfig": methods}


async def test_every_method_arrives_with_its_fields(hooked: Start, backend: Backend, clients: Start) -> None:
    server = await hooked(**{"keep_alive_streaming_sessions_enabled": "true",
                             "streaming_sessions_keep_alive_interval": "300"})
    publisher = await clients(server, custom={"room": "a"}, authToken="tok")
    published = await publish(publisher, "cam")
    viewer = await clients(server)
    played = await viewer.play("cam")
    await played.wait_status("PLAYING")
    await backend.wait_for("StreamKeepAliveEvent", 2)
    await viewer.stop(played)
    await publisher.stop(published)
    await publisher.close()
    await backend.wait_for("ConnectionStatusEvent", 3)

    connect = backend.bodies("connect")[0]
    assert connect["appKey"] == "defaultApp" and connect["sessionId"] == publisher.session_id
    assert connect["custom"] == {"room": "a"} and connect["authToken"] == "tok"
    assert connect["clientVersion"] == "2.0"
    statuses = [b["status"] for b in backend.bodies("ConnectionStatusEvent")]
    assert statuses.count("ESTABLISHED") == 2 and "DISCONNECTED" in statuses
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
    backend.answer_for = lambda method, body: (403, {}, 0.0) if (
        method == "StreamKeepAliveEvent" and body["name"] == "doomed" and body["published"]) else None
    server = await hooked(**{"keep_alive_streaming_sessions_enabled": "true",
                             "streaming_sessions_keep_alive_interval": "300"})
    doomed = await publish(await clients(server), "doomed")
    kept = await publish(await clients(server), "kept")
    doomed_player = await (await clients(server)).play("doomed")
    kept_player = await (await clients(server)).play("kept")
    await doomed_player.wait_status("PLAYING")
    await kept_player.wait_status("PLAYING")
    event = await doomed.wait_status("UNPUBLISHED")
    assert event["info"] == "Terminated by keep-alive"
    assert (await doomed_player.wait_status("STOPPED"))["info"] == "Stopped by publisher stop"
    await asyncio.sleep(1)
    assert (kept.status, kept_player.status) == ("PUBLISHING", "PLAYING")


async def test_keep_alive_403_for_a_player_stops_only_that_player(
    hooked: Start, backend: Backend, clients: Start
) -> None:
    backend.answer_for = lambda method, body: (403, {}, 0.0) if (
        method == "StreamKeepAliveEvent" and not body["published"] and body["custom"].get("who") == "bob") else None
    server = await hooked(**{"keep_alive_streaming_sessions_enabled": "true",
                             "streaming_sessions_keep_alive_interval": "300"})
    published = await publish(await clients(server), "cam")
    bob = await (await clients(server)).play("cam", custom={"who": "bob"})
    alice = await (await clients(server)).play("cam", custom={"who": "alice"})
    event = await bob.wait_status("STOPPED")
    assert event["info"] == "Terminated by keep-alive"
    await asyncio.sleep(1)
    assert (published.status, alice.status) == ("PUBLISHING", "PLAYING")


async def test_hanging_or_dead_backend_never_delays_media(
    hooked: Start, backend: Backend, clients: Start
) -> None:
    server = await hooked(**{"rest_request_timeout": "1", "keep_alive_streaming_sessions_enabled": "true",
                             "streaming_sessions_keep_alive_interval": "200"})
    await publish(await clients(server), "cam")
    played = await (await clients(server)).play("cam")
    await played.wait_status("PLAYING")
    sink = DecodingSink(next(t for t in played.tracks if t.kind == "video"), "video/vp8")
    backend.answers["StreamKeepAliveEvent"] = (200, None, 30.0)  # hangs far past the timeout
    backend.answers["StreamStatusEvent"] = (200, None, 30.0)
    await asyncio.sleep(1)
    before = sink.frames
    await asyncio.sleep(2)
    assert sink.frames - before >= 20, "frames kept arriving (30 fps sent) while the backend hung"
    backend.url = "http://127.0.0.1:9/hooks"  # nothing listens there
    use_backend(server.home, backend)
    await asyncio.sleep(1.5)  # the running server reloads apps.json
    before = sink.frames
    await asyncio.sleep(2)
    assert sink.frames - before >= 20, "frames kept arriving while the backend was down"
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
    use_backend(home, backend, methods=("publishStream",))
    server = await start_server(home)
    await publish(await clients(server), "cam")
    assert {m for m, *_ in backend.received} == {"publishStream"}


async def test_disable_rest_requests(hooked: Start, backend: Backend, clients: Start) -> None:
    server = await hooked(disable_rest_requests="true")
    await publish(await clients(server), "cam")
    assert backend.received == []


async def test_hook_requests_are_counted_by_result(hooked: Start, backend: Backend, clients: Start) -> None:
    import aiohttp

    backend.answers["connect"] = (200, config(publishStream={"restOnError": "LOG"}), 0.0)
    backend.answers["publishStream"] = (403, {}, 0.0)
    backend.answers["StreamStatusEvent"] = (200, None, 5.0)
    server = await hooked(rest_request_timeout="1")
    await publish(await clients(server), "cam")
    await asyncio.sleep(1.5)  # the StreamStatusEvent request times out
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{server.http_port}/metrics") as response:
            text = await response.text()
    assert 'hookcast_rest_hook_requests_total{method="connect",result="ok"} 1.0' in text
    assert 'hookcast_rest_hook_requests_total{method="publishStream",result="http_4xx"} 1.0' in text
    assert 'hookcast_rest_hook_requests_total{method="StreamStatusEvent",result="timeout"} 1.0' in text


async def test_local_applications_work_on_an_ipv6_bind(home: Home, start_server: Start, clients: Start) -> None:
    server = await start_server(home, bind_address="::1")  # defaultApp: /apps/EchoApp on this server
    client = WcsClient(f"ws://[::1]:{server.ws_port}/")
    assert (await client.connect())["sessionId"]
    await client.close()
    rest = next(r.plugin for r in server.bus.plugins() if r.name == "rest_hooks")
    assert rest.counts[("connect", "ok")] == 1


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
