"""Live publish and play through the real server: real WebSocket signalling, real
WebRTC on 127.0.0.1, frames decoded by PyAV on the player side."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from hookcast.config.home import Home
from hookcast.engine.streams import Status
from hookcast.keys import ENGINE
from hookcast.server import Server
from hookcast.signalling.client import ClientStream, WcsClient
from tests.conftest import write_plugin
from tests.core.rtc.relay_harness import (
    CountingAudioTrack,
    DecodingSink,
    PatternVideoTrack,
    assert_kept_up,
    counted_over,
    reading,
)
from tests.fastpath_shims import relay_paths

Start = Callable[..., Any]


@pytest.fixture
async def server(home: Home, start_server: Start, request: pytest.FixtureRequest) -> Server:
    """The server; ``@pytest.mark.parametrize("server", ["fast", "aiortc"], indirect=True)``
    chooses the players' sending path (relay_fast_path; fast by default)."""
    path = getattr(request, "param", "fast")
    return await start_server(  # type: ignore[no-any-return]
        home, relay_fast_path=str(path == "fast").lower())


@pytest.fixture
def clients(server: Server, connect_client: Callable[..., Any]) -> Callable[..., Any]:
    """``await clients(**fields)``: a client connected to this test's server."""
    return lambda **fields: connect_client(server, **fields)


def sinks_for(stream: ClientStream) -> dict[str, DecodingSink]:
    mimes = {"video": stream.last.get("videoCodec"), "audio": "opus"}
    names = {"VP8": "video/vp8", "H264": "video/h264", "opus": "audio/opus"}
    return {t.kind: DecodingSink(t, names[mimes[t.kind]]) for t in stream.tracks}


async def publish(
    client: WcsClient, name: str, codec: str = "VP8",
    tracks: tuple[PatternVideoTrack, CountingAudioTrack] | None = None,
) -> ClientStream:
    """Publish ``tracks`` (new ones by default; their ``count`` is what was sent)."""
    video, audio = tracks or (PatternVideoTrack(), CountingAudioTrack())
    stream = await client.publish(name, [video, audio], video_codec=codec)
    await stream.wait_status("PUBLISHING")
    return stream


async def play(client: WcsClient, name: str) -> tuple[ClientStream, dict[str, DecodingSink]]:
    stream = await client.play(name)
    await stream.wait_status("PLAYING")
    return stream, sinks_for(stream)


def answered_video_codec(stream: ClientStream) -> str:
    """The video codec the server's answer negotiated (first rtpmap of the video section)."""
    sdp = stream.pc.remoteDescription.sdp
    video = sdp[sdp.index("m=video"):]
    rtpmap = video[video.index("a=rtpmap:"):].split("\r\n")[0]
    return rtpmap.split(" ")[1].split("/")[0]


@pytest.mark.parametrize("server", ["fast", "aiortc"], indirect=True)
@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_one_publisher_three_players_decode_the_same_frames(
    clients: Callable[..., Any], server: Server, codec: str, request: pytest.FixtureRequest
) -> None:
    video, audio = PatternVideoTrack(), CountingAudioTrack()
    await publish(await clients(), "cam", codec, (video, audio))
    players = [await play(await clients(), "cam") for _ in range(3)]
    while any(sinks["video"].first_frame_at is None for _, sinks in players):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    # over the same 4 s window: what the publisher sent, what each player decoded
    sent, sent_audio, *decoded = await counted_over(
        4.0, reading(video, "count"), reading(audio, "count"),
        *(reading(sinks[kind], "frames") for kind in ("video", "audio") for _, sinks in players),
    )
    counts, audio_counts = decoded[:3], decoded[3:]
    path = request.node.callspec.params["server"]
    other = "aiortc" if path == "fast" else "fast"
    assert await relay_paths(server) == {"audio/" + path: 3, "video/" + path: 3,
                                         "audio/" + other: 0, "video/" + other: 0}
    for stream, sinks in players:
        assert stream.last["videoCodec"] == codec
        assert answered_video_codec(stream) == codec
        assert sinks["video"].codecs == {f"video/{codec.lower()}"}
        assert sinks["video"].errors == 0, "a player decoded a corrupt frame"
        assert sinks["audio"].errors == 0
        assert sinks["video"].sizes == {(320, 240)}
    for _, sinks in players:
        for sink in sinks.values():
            await sink.close()
    # every player decodes (nearly) every frame the publisher sent in the window, and
    # the players agree within a few frames; a starved VM slows the publisher too, so
    # the ratio holds where an absolute floor would not
    assert_kept_up(sent, counts, "video frames")
    assert_kept_up(sent_audio, audio_counts, "audio frames (20 ms Opus)")
    assert max(counts) - min(counts) <= 6, f"players disagree: {counts}"


async def test_late_player_decodes_its_first_frame_within_a_second(
    clients: Callable[..., Any],
) -> None:
    await publish(await clients(), "cam")
    await asyncio.sleep(5)
    viewer = await clients()
    asked = time.monotonic()
    stream = await viewer.play("cam")
    await stream.wait_status("PLAYING")
    sinks = sinks_for(stream)
    while sinks["video"].first_frame_at is None and time.monotonic() - asked < 5:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    assert sinks["video"].first_frame_at is not None
    assert sinks["video"].first_frame_at - asked < 1.0
    for sink in sinks.values():
        await sink.close()


async def test_publisher_stop_stops_players(clients: Callable[..., Any]) -> None:
    publisher = await clients()
    published = await publish(publisher, "cam")
    played, sinks = await play(await clients(), "cam")
    await publisher.stop(published)
    assert published.status == "UNPUBLISHED"
    event = await played.wait_status("STOPPED")
    assert event["info"] == "Stopped by publisher stop"
    for sink in sinks.values():
        await sink.close()


async def test_dropped_websocket_stops_its_streams(
    clients: Callable[..., Any], server: Server
) -> None:
    publisher = await clients()
    await publish(publisher, "cam")
    viewer = await clients()
    played, sinks = await play(viewer, "cam")
    await publisher.close()
    event = await played.wait_status("STOPPED")
    assert event["info"] == "Stopped by publisher stop"
    # a player's own session dropping ends only that player
    await publish(await clients(), "cam2")
    second = await clients()
    await play(second, "cam2")
    await second.close()
    for _ in range(100):
        if not server.http_app[ENGINE].registry.players_of("cam2"):
            break
        await asyncio.sleep(0.05)
    engine = server.http_app[ENGINE]
    assert engine.registry.players_of("cam2") == []
    publisher = engine.registry.publisher("cam2")
    assert publisher is not None and publisher.status is Status.PUBLISHING
    for sink in sinks.values():
        await sink.close()


async def test_session_disconnect_info(clients: Callable[..., Any], server: Server) -> None:
    """The streams of a dropped session end with `Stopped by session disconnect`."""
    seen: list[dict[str, Any]] = []

    async def after_stream_status(stream: Any) -> None:
        seen.append({"name": stream.name, "status": stream.status, "info": stream.info})

    from types import SimpleNamespace

    from hookcast import hookimpl

    server.bus.register(SimpleNamespace(after_stream_status=hookimpl(after_stream_status)), "spy", "test")
    publisher = await clients()
    await publish(publisher, "cam")
    await publisher.close()
    for _ in range(100):
        if any(e["status"] == "UNPUBLISHED" for e in seen):
            break
        await asyncio.sleep(0.05)
    assert {"name": "cam", "status": "UNPUBLISHED", "info": "Stopped by session disconnect"} in seen


async def test_duplicate_name_fails(clients: Callable[..., Any]) -> None:
    await publish(await clients(), "cam")
    second = await (await clients()).publish("cam", [PatternVideoTrack()])
    event = await second.wait_status("FAILED")
    assert event["info"] == "Stream name is already in use"


async def test_playing_an_unpublished_name_fails_stream_not_found(
    clients: Callable[..., Any],
) -> None:
    stream = await (await clients()).play("nobody")
    event = await stream.wait_status("FAILED")
    assert event["info"] == "Stream not found"


async def test_player_without_the_publishers_codec_fails_no_common_codecs(
    clients: Callable[..., Any],
) -> None:
    from hookcast.rtc.aiortc import force_codec

    await publish(await clients(), "cam", "H264")
    viewer = await clients()

    async def play_vp8_only(name: str) -> ClientStream:
        from aiortc import RTCPeerConnection

        pc = RTCPeerConnection(viewer.rtc)
        force_codec(pc.addTransceiver("video", direction="recvonly"), "video/VP8")
        return await viewer._start("playStream", name, pc, published=False)

    stream = await play_vp8_only("cam")
    event = await stream.wait_status("FAILED")
    assert event["info"] == "No common codecs"


async def test_admit_publish_refusal_fails_the_publisher(
    home: Home, start_server: Start
) -> None:
    write_plugin(home, "reserve", """
    from hookcast import hookimpl, Refuse

    @hookimpl
    def before_publish(stream):
        if stream.name.startswith("private"):
            return Refuse("Restricted access")
    """)
    server = await start_server(home)
    client = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    try:
        await client.connect()
        refused = await client.publish("private-1", [PatternVideoTrack()])
        event = await refused.wait_status("FAILED")
        assert event["info"] == "Restricted access"
        allowed = await client.publish("public-1", [PatternVideoTrack()])
        await allowed.wait_status("PUBLISHING")
    finally:
        await client.close()


async def test_lifecycle_events_reach_plugins_in_order(home: Home, start_server: Start) -> None:
    write_plugin(home, "spy", """
    import json
    from pathlib import Path
    from hookcast import hookimpl

    LOG = Path(__file__).parents[1] / "events.jsonl"

    def record(*fields):
        with LOG.open("a") as handle:
            handle.write(json.dumps(fields) + "\\n")

    @hookimpl
    def after_session_connect(session):
        record("connect", session.app_key)

    @hookimpl
    def after_session_disconnect(session, reason):
        record("disconnect", reason)

    @hookimpl
    def before_publish(session, stream):
        record("before_publish", stream.name, session.session_id == stream.session_id)

    @hookimpl
    def before_play(session, stream):
        record("before_play", stream.name)

    @hookimpl
    async def after_stream_status(stream, previous_status):
        record("status", "pub" if stream.published else "play", previous_status, stream.status, stream.info)
    """)
    server = await start_server(home)
    url = f"ws://127.0.0.1:{server.ws_port}/"
    publisher, viewer = WcsClient(url), WcsClient(url)
    await publisher.connect()
    published = await publish(publisher, "cam")
    await asyncio.sleep(1)
    await viewer.connect()
    played, sinks = await play(viewer, "cam")
    assert (played.last["width"], played.last["height"]) == (320, 240)
    await publisher.stop(published)
    await played.wait_status("STOPPED")
    await viewer.close()
    await publisher.close()
    log = home.root / "events.jsonl"
    for _ in range(100):
        if log.read_text().count("[\"disconnect\"") == 2:
            break
        await asyncio.sleep(0.05)
    import json

    events = [tuple(json.loads(line)) for line in log.read_text().splitlines()]
    assert events == [
        ("connect", "defaultApp"),
        ("before_publish", "cam", True),
        ("status", "pub", None, "PENDING", ""),
        ("status", "pub", "PENDING", "PUBLISHING", ""),
        ("connect", "defaultApp"),
        ("before_play", "cam"),
        ("status", "play", None, "PENDING", ""),
        ("status", "play", "PENDING", "PLAYING", ""),
        ("status", "pub", "PUBLISHING", "UNPUBLISHED", "Stopped by user"),
        ("status", "play", "PLAYING", "STOPPED", "Stopped by publisher stop"),
        ("disconnect", "Normal disconnect"),
        ("disconnect", "Normal disconnect"),
    ]
    for sink in sinks.values():
        await sink.close()


async def test_a_pair_the_fast_path_cannot_serve_falls_back_to_aiortcs_sender(
    clients: Callable[..., Any], server: Server, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # what sender_path() answers for a TURN or TCP pair
    monkeypatch.setattr("hookcast.rtc.peer.sender_path", lambda sender: None)
    video, audio = PatternVideoTrack(), CountingAudioTrack()
    await publish(await clients(), "cam", "VP8", (video, audio))
    _, sinks = await play(await clients(), "cam")
    while sinks["video"].first_frame_at is None:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    sent, decoded = await counted_over(2.0, reading(video, "count"), reading(sinks["video"], "frames"))
    assert_kept_up(sent, [decoded], "video frames")
    assert sinks["video"].errors == 0
    assert await relay_paths(server) == {"audio/aiortc": 1, "video/aiortc": 1,
                                         "audio/fast": 0, "video/fast": 0}
    for sink in sinks.values():
        await sink.close()


async def test_a_lossy_players_nacks_are_answered_and_counted(
    clients: Callable[..., Any], server: Server
) -> None:
    """A player whose network loses 5 % of its packets NACKs them; the forwarding path
    answers from its history, and /metrics says how many were asked and answered."""
    from tests.fastpath_shims import Lossy

    video, audio = PatternVideoTrack(), CountingAudioTrack()
    await publish(await clients(), "cam", "VP8", (video, audio))
    _, sinks = await play(await clients(), "cam")
    while sinks["video"].first_frame_at is None:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    engine = server.http_app[ENGINE]
    for _ in range(100):  # the player moves to the fast path once connected
        fanout = engine.broadcasts["cam"].tracks["video"].fanout
        if fanout is not None and fanout.players:
            break
        await asyncio.sleep(0.05)
    (player,) = fanout.players
    lossy = player.sock = Lossy(player.sock, 0.05)
    sent, got = await counted_over(4.0, reading(video, "count"), reading(sinks["video"], "frames"))
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{server.http_port}/metrics") as response:
        text = await response.text()
    asked = float(text.split('hookcast_relay_nacks_total{kind="video",result="asked"} ')[1].split()[0])
    answered = float(text.split('hookcast_relay_nacks_total{kind="video",result="answered"} ')[1]
                     .split()[0])
    assert lossy.dropped > 5, "the player lost too little to tell"
    assert asked >= lossy.dropped // 2 and answered >= asked // 2, (lossy.dropped, asked, answered)
    assert sinks["video"].errors == 0 and got >= 0.9 * sent
    for sink in sinks.values():
        await sink.close()
