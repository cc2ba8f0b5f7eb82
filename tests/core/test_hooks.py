"""One test per hook: each is called at its moment with its arguments and its answer
is honoured. Plugins are real drop-in files loaded by a real server from its home.

Session, stream and recording hooks are driven through the server's bus here; the
signalling, recording and VOD tests drive the same hooks through real clients.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hookcast import RecordingInfo, SessionInfo, StreamInfo, Terminate
from hookcast.config.home import Home
from hookcast.config.settings import ConfigError
from hookcast.keys import ENGINE
from hookcast.server import Server, StartupError
from hookcast.signalling.client import WcsClient, WcsError
from tests.conftest import make_settings, write_plugin
from tests.core.rtc.relay_harness import PatternVideoTrack
from tests.served import hookcast

SESSION = SessionInfo(session_id="s1", app_key="defaultApp", status="PENDING", remote="127.0.0.1")
STREAM = StreamInfo(
    media_session_id="m1", name="cam", published=True, status="PUBLISHING",
    session_id="s1", app_key="defaultApp",
)
RECORDING = RecordingInfo(stream=STREAM, path=Path("/records/cam.mp4"), part=1, started_at=1.0)

Start = Callable[..., Any]


def calls(home: Home) -> list[dict[str, Any]]:
    log = home.root / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


RECORDER = """
    import json
    from pathlib import Path
    from hookcast import hookimpl

    LOG = Path(__file__).parents[1] / "calls.jsonl"

    def record(hook, **fields):
        with LOG.open("a") as handle:
            handle.write(json.dumps({"hook": hook, **fields}) + "\\n")
"""


async def test_hook_after_server_start(home: Home, start_server: Start) -> None:
    write_plugin(home, "recorder", RECORDER + """
    @hookimpl
    async def after_server_start(server):
        record("after_server_start", version=server.version, http_port=server.http_port)
    """)
    server = await start_server(home)
    assert calls(home) == [
        {"hook": "after_server_start", "version": "0.1.0", "http_port": server.http_port}
    ]


async def test_hook_before_server_stop(home: Home) -> None:
    write_plugin(home, "recorder", RECORDER + """
    @hookimpl
    def before_server_stop(server):
        record("before_server_stop", ws_port=server.ws_port)
    """)
    server = Server(home, make_settings())
    await server.start()
    assert calls(home) == []
    await server.stop()
    assert calls(home) == [{"hook": "before_server_stop", "ws_port": server.ws_port}]


async def test_hook_after_server_stop(home: Home) -> None:
    write_plugin(home, "recorder", RECORDER + """
    @hookimpl
    async def after_stream_status(stream):
        record("status", status=stream.status)

    @hookimpl
    async def after_server_stop(server):
        record("after_server_stop")
    """)
    server = Server(home, make_settings())
    await server.start()
    client = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    await client.connect()
    await (await client.publish("cam", [PatternVideoTrack()])).wait_status("PUBLISHING")
    await server.stop()
    await client.close()
    hooks = [c["hook"] for c in calls(home)]
    # the stream stopped at shutdown before the plugin was told to release its resources
    assert hooks[-2:] == ["status", "after_server_stop"]
    assert calls(home)[-2]["status"] == "UNPUBLISHED"


async def test_hook_prometheus_metrics(home: Home, start_server: Start) -> None:
    write_plugin(home, "gauges", """
    from prometheus_client.core import GaugeMetricFamily
    from hookcast import hookimpl

    @hookimpl
    def prometheus_metrics():
        family = GaugeMetricFamily("my_plugin_queue_depth", "Items waiting in my plugin")
        family.add_metric([], 7)
        return [family]
    """)
    write_plugin(home, "broken_gauges", """
    from hookcast import hookimpl

    @hookimpl
    def prometheus_metrics():
        raise RuntimeError("no metrics today")
    """)
    server = await start_server(home)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{server.http_port}/metrics") as response:
            text = await response.text()
    assert "my_plugin_queue_depth 7.0" in text
    assert "hookcast_sessions 0.0" in text, "a failing plugin does not spoil the scrape"
    assert server.bus.outcomes[("prometheus_metrics", "broken_gauges", "error")] == 1


async def test_hook_plugin_properties(home: Home, start_server: Start) -> None:
    """A plugin's own properties: validated with the core's, read with settings.value,
    listed by ``config --list``; a name taken by the core refuses the start."""
    write_plugin(home, "greeter", """
    from pathlib import Path
    from hookcast import hookimpl
    from hookcast.properties import Integer, Property, Text

    @hookimpl
    def plugin_properties():
        return [Property("greeting", "hello", Text(), "What the greeter says"),
                Property("greeting_repeat", 1, Integer(minimum=0), "How often it says it")]

    @hookimpl
    def after_server_start(server):
        said = " ".join([server.settings.value("greeting")] * server.settings.value("greeting_repeat"))
        (Path(__file__).parents[1] / "said.txt").write_text(said)
    """)
    await start_server(home, greeting="hi", greeting_repeat="2")
    assert (home.root / "said.txt").read_text() == "hi hi"
    with pytest.raises(ConfigError) as caught:
        Server(home, make_settings(greeting_repeat="-1"))
    assert caught.value.problems == [
        "test: greeting_repeat=-1: expected a whole number of at least 0"]
    listed = hookcast("config", "--list", home=home).stdout
    assert "greeting=hello\n    text: What the greeter says (plugin greeter)" in listed
    write_plugin(home, "thief", """
    from hookcast import hookimpl
    from hookcast.properties import Integer, Property

    @hookimpl
    def plugin_properties():
        return [Property("ws.port", 1, Integer(), "mine")]
    """)
    with pytest.raises(StartupError, match=r"plugin thief: property ws\.port is declared by "
                                           r"the core already"):
        Server(home, make_settings())


async def test_hook_register_rest_routes(home: Home, start_server: Start) -> None:
    write_plugin(home, "hello", """
    from aiohttp import web
    from hookcast import hookimpl

    async def hello(request):
        return web.json_response({"hello": request.match_info["who"]})

    @hookimpl
    def register_rest_routes(settings):
        return [web.get("/hello/{who}", hello)]
    """)
    server = await start_server(home)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{server.http_port}/hello/world") as response:
            assert response.status == 200
            assert await response.json() == {"hello": "world"}


def test_register_rest_routes_conflict_names_the_plugin(home: Home) -> None:
    write_plugin(home, "squatter", """
    from aiohttp import web
    from hookcast import hookimpl

    async def mine(request):
        return web.Response(text="mine")

    @hookimpl
    def register_rest_routes():
        return [web.get("/rest-api/health", mine)]
    """)
    with pytest.raises(StartupError, match="plugin squatter: cannot add its REST routes"):
        Server(home, make_settings())


@pytest.fixture
async def bus_of(home: Home, start_server: Start) -> Callable[..., Any]:
    async def load(source: str) -> Any:
        write_plugin(home, "under_test", source)
        server = await start_server(home)
        return server.bus

    return load


async def test_hook_before_connect(bus_of: Callable[..., Any]) -> None:
    bus = await bus_of("""
    from hookcast import hookimpl, Refuse

    @hookimpl
    async def before_connect(session):
        if session.client.get("authToken") != "secret":
            return Refuse("Restricted access")
    """)
    assert (await bus.before_connect(SESSION)).reason == "Restricted access"
    good = SessionInfo("s2", "defaultApp", "PENDING", "127.0.0.1", client={"authToken": "secret"})
    assert (await bus.before_connect(good)).admitted


async def test_hook_after_session_connect(home: Home, bus_of: Callable[..., Any]) -> None:
    bus = await bus_of(RECORDER + """
    @hookimpl
    def after_session_connect(session):
        record("connect", session_id=session.session_id)
    """)
    await bus.after_session_connect(SESSION)
    assert calls(home) == [{"hook": "connect", "session_id": "s1"}]


async def test_hook_after_session_disconnect(home: Home, bus_of: Callable[..., Any]) -> None:
    bus = await bus_of(RECORDER + """
    @hookimpl
    async def after_session_disconnect(session, reason):
        record("disconnect", session_id=session.session_id, reason=reason)
    """)
    await bus.after_session_disconnect(SESSION, "Normal disconnect")
    assert calls(home) == [{"hook": "disconnect", "session_id": "s1", "reason": "Normal disconnect"}]


async def test_hook_before_publish(bus_of: Callable[..., Any]) -> None:
    bus = await bus_of("""
    from hookcast import hookimpl, Amend, Refuse

    @hookimpl
    def before_publish(session, stream):
        if stream.name.startswith("private-"):
            return Refuse("Restricted access")
        return Amend(name=stream.name.lower())
    """)
    refused = await bus.before_publish(SESSION, STREAM.__class__(**{**STREAM.__dict__, "name": "private-x"}))
    assert (refused.admitted, refused.reason) == (False, "Restricted access")
    admitted = await bus.before_publish(SESSION, STREAM.__class__(**{**STREAM.__dict__, "name": "CAM"}))
    assert admitted.admitted and admitted.fields["name"] == "cam"


async def test_hook_before_play(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    """A refusal reaches a real player as FAILED with the plugin's reason; the publisher
    and other players are untouched."""
    write_plugin(home, "gate", """
    from hookcast import hookimpl, Refuse

    @hookimpl
    async def before_play(session, stream):
        if session.client.get("custom", {}).get("ticket") != "valid":
            return Refuse("No ticket for " + stream.name)
    """)
    server = await start_server(home)
    publisher: WcsClient = await connect_client(server)
    published = await publisher.publish("show", [PatternVideoTrack()])
    await published.wait_status("PUBLISHING")
    gatecrasher: WcsClient = await connect_client(server)
    refused = await gatecrasher.play("show")
    with pytest.raises(WcsError, match="FAILED 'No ticket for show'"):
        await refused.wait_status("PLAYING")
    guest: WcsClient = await connect_client(server, custom={"ticket": "valid"})
    admitted = await guest.play("show")
    await admitted.wait_status("PLAYING")
    engine = server.http_app[ENGINE]
    assert sorted(s.status for s in engine.registry) == ["PLAYING", "PUBLISHING"]


async def test_hook_after_stream_status(home: Home, bus_of: Callable[..., Any]) -> None:
    bus = await bus_of(RECORDER + """
    @hookimpl
    async def after_stream_status(stream, previous_status):
        record("status", name=stream.name, status=stream.status, previous=previous_status)
    """)
    await bus.after_stream_status(STREAM, "PENDING")
    assert calls(home) == [{"hook": "status", "name": "cam", "status": "PUBLISHING", "previous": "PENDING"}]


async def test_hook_on_stream_keep_alive(bus_of: Callable[..., Any]) -> None:
    bus = await bus_of("""
    from hookcast import hookimpl, Terminate

    @hookimpl
    async def on_stream_keep_alive(stream):
        if not stream.published:
            return Terminate()
    """)
    assert await bus.on_stream_keep_alive(STREAM) is None
    player = STREAM.__class__(**{**STREAM.__dict__, "published": False})
    assert await bus.on_stream_keep_alive(player) == Terminate("Terminated by keep-alive")


async def _record(server: Server, connect_client: Callable[..., Any], name: str,
                  seconds: float) -> dict[str, Any]:
    """Publish ``name`` with record: true for ``seconds``; its last status event."""
    client: WcsClient = await connect_client(server)
    stream = await client.publish(name, [PatternVideoTrack()], video_codec="H264", record=True)
    await stream.wait_status("PUBLISHING")
    await asyncio.sleep(seconds)
    await client.stop(stream)
    await asyncio.wait_for(server.http_app[ENGINE].recordings._tasks.wait(), 20)
    return stream.last


async def test_hook_record_file_name(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    write_plugin(home, "namer", """
    from hookcast import hookimpl

    @hookimpl
    def record_file_name(stream, template, variables):
        return "show-" + variables["streamName"] + "-by-plugin"
    """)
    server = await start_server(home)
    last = await _record(server, connect_client, "cam", 1.5)
    assert last["recordName"] == "show-cam-by-plugin.mp4"
    assert (home.records / "show-cam-by-plugin.mp4").stat().st_size > 0


async def test_hook_record_rotation_policy(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    write_plugin(home, "rotator", """
    from hookcast import hookimpl, Rotation

    @hookimpl
    def record_rotation_policy(stream, configured):
        if stream.name == "long":
            return Rotation(seconds=1)
    """)
    server = await start_server(home, record_rotation="", stream_record_policy_template="{streamName}")
    await _record(server, connect_client, "long", 3.5)
    await _record(server, connect_client, "short", 2.0)
    parts = sorted(p.name for p in home.records.iterdir() if p.name.startswith("long"))
    assert len(parts) >= 3 and all(p.endswith(".mp4") for p in parts), parts
    assert len([p for p in home.records.iterdir() if p.name.startswith("short")]) == 1


async def test_hook_on_record_started(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    write_plugin(home, "recorder", RECORDER + """
    @hookimpl
    def on_record_started(recording):
        record("started", file=recording.file_name, part=recording.part,
               name=recording.stream.record_name, codec=recording.video_codec)
    """)
    server = await start_server(home)
    last = await _record(server, connect_client, "cam", 1.5)
    assert calls(home) == [{"hook": "started", "file": last["recordName"], "part": 1,
                            "name": last["recordName"], "codec": "H264"}]


async def test_hook_on_record_finished(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    write_plugin(home, "recorder", RECORDER + """
    @hookimpl
    async def on_record_finished(recording):
        record("finished", path=str(recording.path), stream=recording.stream.name,
               size=recording.size, duration=recording.duration, recovered=recording.recovered)
    """)
    server = await start_server(home)
    last = await _record(server, connect_client, "cam", 2.0)
    path = home.records / last["recordName"]
    (call,) = calls(home)
    assert call["path"] == str(path) and call["stream"] == "cam"
    assert call["size"] == path.stat().st_size and 1.4 < call["duration"] < 2.8
    assert call["recovered"] is False


async def test_hook_media_source_for_uri(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    """A drop-in source beside the built-in vod plugin: its own scheme, files of its
    own folder (read by hookcast.FileSource), and Unavailable for what it refuses."""
    from tests.plugins.vod_files import Received, make_media, receive

    (home.root / "clips").mkdir()
    make_media(home.root / "clips" / "clip.mp4", seconds=2)
    write_plugin(home, "clips", """
    from hookcast import FileSource, Unavailable, hookimpl

    @hookimpl
    def media_source_for_uri(uri, home, loop):
        if uri.startswith("clips://"):
            name = uri[len("clips://"):]
            if name.startswith("secret"):
                return Unavailable(uri, "Not for you")
            return FileSource(uri, home.root / "clips", name, shared=False)
    """)
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    player = await client.play("clips://clip.mp4")
    await player.wait_status("PLAYING")
    got = Received()
    await asyncio.wait_for(receive(list(player.tracks), got), 15)
    assert len(got.pictures) >= 50 and got.errors == 0
    assert (await player.wait_status("STOPPED"))["info"] == "End of file"
    for name, info in (("clips://secret.mp4", "Not for you"), ("rtsp://camera", "Stream not found"),
                       ("clips://../clips/clip.mp4", "File not found")):
        refused = await client.play(name)
        assert (await refused.wait_status("FAILED"))["info"] == info
