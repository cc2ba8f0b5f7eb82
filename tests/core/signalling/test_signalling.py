"""The signalling protocol under bad input: every problem gets an answer naming it,
and neither the session nor any other session is harmed."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from hookcast.config.home import Home
from hookcast.engine.streams import Status
from hookcast.keys import ENGINE
from hookcast.server import Server
from hookcast.signalling.client import WcsClient
from hookcast.signalling.session import MAX_MESSAGE
from tests.conftest import write_plugin
from tests.core.rtc.relay_harness import PatternVideoTrack, assert_kept_up, counted_over, reading

Start = Callable[..., Any]


@pytest.fixture
async def server(home: Home, start_server: Start) -> Server:
    return await start_server(home)  # type: ignore[no-any-return]


@pytest.fixture
async def raw(server: Server) -> AsyncIterator[Callable[..., Any]]:
    """A raw WebSocket to the server: send text, read the next JSON frame."""
    http = aiohttp.ClientSession()
    sockets: list[aiohttp.ClientWebSocketResponse] = []

    async def open_socket(path: str = "/") -> aiohttp.ClientWebSocketResponse:
        ws = await http.ws_connect(f"ws://127.0.0.1:{server.ws_port}{path}", max_msg_size=0)
        sockets.append(ws)
        return ws

    yield open_socket
    for ws in sockets:
        await ws.close()
    await http.close()


async def next_frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    while True:
        frame = await asyncio.wait_for(ws.receive_json(), 10)
        if frame["message"] != "ping":
            return frame  # type: ignore[no-any-return]


async def connect(ws: aiohttp.ClientWebSocketResponse, **fields: Any) -> dict[str, Any]:
    await ws.send_json({"message": "connection", "data": [{"appKey": "defaultApp", **fields}]})
    return await next_frame(ws)


@pytest.mark.parametrize("path", ["/", "/websocket"])
async def test_connection_gets_user_data(raw: Callable[..., Any], path: str) -> None:
    ws = await raw(path)
    frame = await connect(ws, clientVersion="2.0", custom={"k": "v"}, authToken="t")
    assert frame["message"] == "getUserData"
    data = frame["data"][0]
    assert data["sessionId"] and data["appKey"] == "defaultApp"
    assert data["custom"] == {"k": "v"} and data["authToken"] == "t"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "invalid JSON"),
        ('"just a string"', 'expected {"message": name, "data": [...]}'),
        ('{"message": "fly", "data": [{}]}', "unknown message 'fly'"),
        ('{"message": "publishStream", "data": {}}', "data: expected a list"),
        ('{"message": "publishStream", "data": [{"name": "x", "sdp": "v=0"}]}', "MediaSessionId is null"),
        ('{"message": "publishStream", "data": ["text"]}', "data[0]: expected the stream object"),
        ('{"message": "unPublishStream", "data": [{"mediaSessionId": "nope"}]}', "Stream not found"),
        ("x" * (MAX_MESSAGE + 1), f"exceeds the limit of {MAX_MESSAGE} bytes"),
        ("y" * (1024 * 1024), f"message of {1024 * 1024} bytes exceeds the limit"),
    ],
)
async def test_bad_frames_get_a_fail_naming_the_problem(
    raw: Callable[..., Any], text: str, expected: str
) -> None:
    ws = await raw()
    await connect(ws)
    await ws.send_str(text)
    frame = await next_frame(ws)
    assert frame["message"] == "fail"
    assert expected in frame["data"][0]["info"]
    # the session goes on
    await ws.send_json({"message": "ping", "data": [None]})
    assert (await next_frame(ws))["message"] == "pong"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"name": "cam"}, "publishStream: sdp is missing"),
        ({"sdp": "v=0"}, "publishStream: name is missing"),
        ({"name": "", "sdp": "v=0"}, "publishStream: name: expected a non-empty string"),
        ({"name": "cam", "sdp": "v=0", "record": "yes"}, "publishStream: record: expected true or false"),
        ({"name": "cam", "sdp": "garbage"}, "invalid SDP offer"),
    ],
)
async def test_bad_stream_requests_fail_the_stream_naming_the_field(
    raw: Callable[..., Any], payload: dict[str, Any], expected: str
) -> None:
    ws = await raw()
    await connect(ws)
    await ws.send_json({"message": "publishStream", "data": [{"mediaSessionId": "m1", **payload}]})
    frame = await next_frame(ws)
    assert frame["message"] == "notifyStreamStatusEvent"
    event = frame["data"][0]
    assert (event["mediaSessionId"], event["status"]) == ("m1", "FAILED")
    assert expected in event["info"]


async def test_messages_before_connection_are_refused(raw: Callable[..., Any]) -> None:
    ws = await raw()
    await ws.send_json({"message": "playStream", "data": [{"mediaSessionId": "m", "name": "x", "sdp": "v"}]})
    frame = await next_frame(ws)
    assert frame["message"] == "fail"
    assert frame["data"][0]["info"].startswith("Session not ready")


async def test_garbage_never_harms_another_session(raw: Callable[..., Any], server: Server) -> None:
    engine = server.http_app[ENGINE]
    good = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    await good.connect()
    video = PatternVideoTrack()
    stream = await good.publish("cam", [video])
    await stream.wait_status("PUBLISHING")
    for text in ["{", "[]", '{"message": 1}', "z" * (1024 * 1024), json.dumps({"message": "publishStream", "data": [{}]})]:
        ws = await raw()
        await ws.send_str(text)
        await ws.send_bytes(b"\x00\x01")
    bad = await raw()
    await connect(bad)
    with contextlib.suppress(ConnectionError):  # over the frame limit: that socket closes
        await bad.send_str("q" * (5 * 1024 * 1024))
    closing = await asyncio.wait_for(bad.receive(), 10)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    # the server, not the client's cached status, says the stream is still live ...
    assert stream.status == "PUBLISHING"
    served = engine.registry.get(stream.media_session_id)
    assert served is not None and served.status is Status.PUBLISHING
    assert engine.registry.publisher("cam") is served and "cam" in engine.broadcasts
    assert good.session_id in engine.sessions
    # ... and its media still arrives: the server receives what the publisher sends
    def received_by_server() -> int:
        live = engine.registry.get(stream.media_session_id)
        assert live is not None, "the good session's publisher was stopped on the server"
        return int(engine.metrics(live)["VIDEO_FRAMES"])

    sent, received = await counted_over(2.0, reading(video, "count"), received_by_server)
    assert_kept_up(sent, [received], "video frames received by the server")
    assert served.status is Status.PUBLISHING and stream.status == "PUBLISHING"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{server.http_port}/rest-api/health") as response:
            assert response.status == 200
    await good.close()


async def test_refused_connection_gets_fail_and_close(home: Home, start_server: Start) -> None:
    write_plugin(home, "auth", """
    from hookcast import hookimpl, Refuse

    @hookimpl
    def before_connect(session):
        if session.client.get("authToken") != "letmein":
            return Refuse("Restricted access")
    """)
    server = await start_server(home)
    client = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    with pytest.raises(Exception, match="Restricted access"):
        await client.connect()
    await client.close()
    allowed = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    assert (await allowed.connect(authToken="letmein"))["sessionId"]
    await allowed.close()


async def test_server_pings_and_closes_a_silent_client(home: Home, start_server: Start) -> None:
    server = await start_server(home, **{"keep_alive.server_interval": "100", "keep_alive.probes": "3"})
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"ws://127.0.0.1:{server.ws_port}/")
        await ws.send_json({"message": "connection", "data": [{}]})
        pings = 0
        async for frame in ws:
            if frame.type is aiohttp.WSMsgType.TEXT and json.loads(frame.data)["message"] == "ping":
                pings += 1
        assert pings == 3
        assert ws.closed


async def test_availability_of_a_stream(raw: Callable[..., Any], server: Server) -> None:
    publisher = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    await publisher.connect()
    await (await publisher.publish("cam", [PatternVideoTrack()])).wait_status("PUBLISHING")
    ws = await raw()
    await connect(ws)
    for name, status in (("cam", "true"), ("other", "false")):
        await ws.send_json({"message": "availableStream", "data": [{"mediaSessionId": "p1", "name": name}]})
        frame = await next_frame(ws)
        assert frame["message"] == "availableStream"
        assert frame["data"][0]["id"] == "p1" and frame["data"][0]["status"] == status
    await publisher.close()


async def test_a_publisher_that_never_connects_fails_by_ice_timeout(
    home: Home, start_server: Start
) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection

    server = await start_server(home, ice_connect_timeout="1")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    await pc.close()  # the client goes away: nobody will answer the server's ICE checks
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"ws://127.0.0.1:{server.ws_port}/")
        await connect(ws)
        await ws.send_json({"message": "publishStream", "data": [
            {"mediaSessionId": "m1", "name": "cam", "sdp": offer}]})
        assert (await next_frame(ws))["message"] == "setRemoteSDP"
        event = (await next_frame(ws))["data"][0]
        assert (event["status"], event["info"]) == ("FAILED", "Failed by ICE timeout")
        await ws.close()


async def test_a_session_closing_while_its_publish_is_admitted_leaves_nothing(
    home: Home, start_server: Start
) -> None:
    write_plugin(home, "slow_admission", """
    import asyncio
    from hookcast import hookimpl

    @hookimpl
    async def before_publish():
        await asyncio.sleep(1)
    """)
    server = await start_server(home)
    leaving = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    await leaving.connect()
    publishing = asyncio.ensure_future(leaving.publish("cam", [PatternVideoTrack()]))
    await asyncio.sleep(0.3)
    await leaving.close()
    await asyncio.gather(publishing, return_exceptions=True)
    await asyncio.sleep(1.5)
    engine = server.http_app[ENGINE]
    assert engine.registry.publisher("cam") is None and "cam" not in engine.broadcasts
    again = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    await again.connect()
    stream = await again.publish("cam", [PatternVideoTrack()])
    await stream.wait_status("PUBLISHING")
    await again.close()


async def test_amend_with_nested_fields_at_connect(home: Home, start_server: Start) -> None:
    write_plugin(home, "profile", """
    from hookcast import hookimpl, Amend

    @hookimpl
    def before_connect():
        return Amend(custom={"plan": {"tier": "gold"}}, roles=["viewer"])
    """)
    server = await start_server(home)
    client = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    data = await client.connect()
    assert data["custom"] == {"plan": {"tier": "gold"}} and data["roles"] == ["viewer"]
    await client.close()


async def test_a_refused_session_is_reported_ended_to_plugins(home: Home, start_server: Start) -> None:
    write_plugin(home, "gate", """
    from hookcast import hookimpl, Refuse

    ENDED = []

    @hookimpl
    def before_connect():
        return Refuse("Restricted access")

    @hookimpl
    def after_session_disconnect(session):
        ENDED.append(session.status)
    """)
    server = await start_server(home)
    client = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    with pytest.raises(Exception, match="Restricted access"):
        await client.connect()
    await client.close()
    gate = next(r.plugin for r in server.bus.plugins() if r.name == "gate")
    for _ in range(50):
        if gate.ENDED:
            break
        await asyncio.sleep(0.05)
    assert gate.ENDED == ["FAILED"]


async def test_a_slow_stop_never_stalls_the_session(home: Home, start_server: Start) -> None:
    write_plugin(home, "slow_status", """
    import asyncio
    from hookcast import hookimpl

    @hookimpl
    async def after_stream_status(stream):
        if stream.status == "UNPUBLISHED":
            await asyncio.sleep(3)
    """)
    server = await start_server(home)
    client = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    await client.connect()
    stream = await client.publish("cam", [PatternVideoTrack()])
    await stream.wait_status("PUBLISHING")
    await client.send("unPublishStream", {"mediaSessionId": stream.media_session_id})
    await stream.wait_status("UNPUBLISHED")
    started = asyncio.get_running_loop().time()
    second = await client.publish("cam2", [PatternVideoTrack()])
    await second.wait_status("PUBLISHING")
    assert asyncio.get_running_loop().time() - started < 2.5, "the session kept reading"
    registry = server.http_app[ENGINE].registry
    assert registry.get(stream.media_session_id) is None
    served = registry.get(second.media_session_id)
    assert served is not None and served.status is Status.PUBLISHING
    await client.close()


async def test_streams_per_session_are_capped(home: Home, start_server: Start) -> None:
    server = await start_server(home, max_streams_per_session="2")
    client = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    await client.connect()
    for name in ("a", "b"):
        await (await client.publish(name, [PatternVideoTrack()])).wait_status("PUBLISHING")
    refused = await client.publish("c", [PatternVideoTrack()])
    event = await refused.wait_status("FAILED")
    assert event["info"] == "too many streams: this session has 2 (max_streams_per_session)"
    # the server never takes it up (a publish runs in the background: watch for a while)
    registry = server.http_app[ENGINE].registry
    for _ in range(20):
        assert {s.name for s in registry.find(session_id=client.session_id)} == {"a", "b"}
        assert registry.get(refused.media_session_id) is None
        await asyncio.sleep(0.05)
    await client.close()
