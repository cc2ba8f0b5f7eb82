"""Pull and push between two real hookcast servers on 127.0.0.1 (different ports):
a real WebRTC publisher on one, real players on the other decoding what they get."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web

from hookcast.config.home import Home
from hookcast.keys import ENGINE
from hookcast.server import Server
from hookcast.signalling.client import ClientStream, WcsClient
from tests.conftest import make_home
from tests.core.rtc.relay_harness import (
    CountingAudioTrack,
    DecodingSink,
    PatternVideoTrack,
    assert_kept_up,
    counted_over,
    reading,
    wait_for,
)
from tests.fastpath_shims import relay_paths
from tests.served import Served, configure

Start = Callable[..., Any]
Connect = Callable[..., Any]
pytestmark = pytest.mark.usefixtures("loopback")
MIMES = {"VP8": "video/VP8", "H264": "video/H264"}


def other_home(tmp_path: Path, name: str) -> Home:
    return make_home(tmp_path / name)


async def rest(server: Server, method: str, body: Any = None,
               port: int | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{port or server.http_port}/rest-api/{method}"
        async with http.post(url, json={} if body is None else body) as response:
            return response.status, await response.json(content_type=None)


def ws(server: Server) -> str:
    return f"ws://127.0.0.1:{server.ws_port}/"


async def publish(client: WcsClient, name: str, codec: str = "VP8",
                  ) -> tuple[ClientStream, PatternVideoTrack, CountingAudioTrack]:
    camera, microphone = PatternVideoTrack(), CountingAudioTrack()
    stream = await client.publish(name, [camera, microphone], video_codec=codec)
    await stream.wait_status("PUBLISHING")
    return stream, camera, microphone


async def play(client: WcsClient, name: str) -> tuple[ClientStream, dict[str, DecodingSink]]:
    player = await client.play(name)
    await player.wait_status("PLAYING")
    sinks = {t.kind: DecodingSink(t, player.codecs[t.kind]) for t in player.tracks}
    return player, sinks


async def entry(server: Server, local: str) -> dict[str, Any]:
    status, found = await rest(server, "pull/find_all")
    assert status == 200, found
    return next(e for e in found if e["localStreamName"] == local)


async def wait_entry(server: Server, local: str, *statuses: str,
                     within: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        found = await entry(server, local)
        if found["status"] in statuses:
            return found
        assert time.monotonic() < deadline, f"{local}: {found}, not {statuses}"
        await asyncio.sleep(0.1)


def publisher_plis(server: Server, name: str) -> int:
    return int(server.http_app[ENGINE].broadcasts[name].tracks["video"].stats()["plis_sent"])


@pytest.mark.parametrize("codec", ["VP8", "H264"])
@pytest.mark.parametrize("direction", ["pull", "push"])
async def test_a_player_on_b_gets_the_publishers_frames_on_a_as_they_are(
    tmp_path: Path, start_server: Start, connect_client: Connect, direction: str, codec: str,
) -> None:
    a = await start_server(other_home(tmp_path, "a"))
    b = await start_server(other_home(tmp_path, "b"))
    _, camera, microphone = await publish(await connect_client(a), "cam", codec)
    if direction == "pull":
        status, made = await rest(b, "pull/pull", {"uri": ws(a), "localStreamName": "copy",
                                                   "remoteStreamName": "cam"})
    else:
        status, made = await rest(a, "pull/push", {"uri": ws(a).replace(
            str(a.ws_port), str(b.ws_port)) + "websocket", "localStreamName": "cam",
            "remoteStreamName": "copy"})
    assert status == 200, made
    assert made["status"] == "ACTIVE" and made["direction"] == direction
    assert made["localMediaSessionId"] and made["remoteMediaSessionId"]

    player, sinks = await play(await connect_client(b), "copy")
    assert set(sinks) == {"audio", "video"}
    assert player.last["videoCodec"] == codec, "the codec is the publisher's, end to end"
    assert player.codecs["video"].lower() == MIMES[codec].lower()
    assert await wait_for(lambda: sinks["video"].frames > 0, 10), "no picture on B"
    sent_video, got_video, sent_audio, got_audio = await counted_over(
        4, reading(camera, "count"), reading(sinks["video"], "frames"),
        reading(microphone, "count"), reading(sinks["audio"], "frames"))
    assert_kept_up(sent_video, [got_video])
    assert_kept_up(sent_audio, [got_audio], "audio frames")
    assert sinks["video"].errors == 0 and sinks["video"].codecs == {MIMES[codec].lower()}
    if direction == "push":  # a push is sent on the forwarding path, as a player is
        paths = await relay_paths(a)
        assert (paths["video/fast"], paths["audio/fast"]) == (1, 1), paths

    # both ends list it as an ordinary stream: B a publisher, A a player of "cam"
    _, on_b = await rest(b, "stream/find", {"name": "copy", "published": True})
    assert on_b[0]["status"] == "PUBLISHING" and on_b[0]["videoCodec"] == codec
    _, on_a = await rest(a, "stream/find", {"name": "cam", "published": False})
    assert [s["status"] for s in on_a] == ["PLAYING"]
    for side, name in ((a, "cam"), (b, "copy")):  # their metrics, like any stream's
        status, found = await rest(side, "stream/find", {"name": name, "display": ["metrics"]})
        assert status == 200 and all(s["metrics"]["VIDEO_FRAMES"] > 0 for s in found), found
    # a player joining on B makes the original publisher on A send a keyframe
    before = publisher_plis(a, "cam")
    _, late_sinks = await play(await connect_client(b), "copy")
    assert await wait_for(lambda: late_sinks["video"].frames > 0, 5), "a late player waits"
    assert publisher_plis(a, "cam") > before, "the keyframe request reached A's publisher"
    async with aiohttp.ClientSession() as http:
        side = b if direction == "pull" else a
        async with http.get(f"http://127.0.0.1:{side.http_port}/metrics") as response:
            text = await response.text()
    assert f'hookcast_pulls{{direction="{direction}",status="ACTIVE"}} 1.0' in text
    for sink in (*sinks.values(), *late_sinks.values()):
        await sink.close()


async def test_the_remote_publisher_stopping_stops_the_local_players_the_wcs_way(
    tmp_path: Path, start_server: Start, connect_client: Connect,
) -> None:
    a = await start_server(other_home(tmp_path, "a"))
    b = await start_server(other_home(tmp_path, "b"))
    publishing = await connect_client(a)
    publisher, _, _ = await publish(publishing, "cam")
    status, _ = await rest(b, "pull/pull", {"uri": ws(a), "localStreamName": "cam"})
    assert status == 200
    player, sinks = await play(await connect_client(b), "cam")
    await publishing.stop(publisher)
    stopped = await player.wait_status("STOPPED", timeout=10)
    assert stopped["info"] == "Stopped by publisher stop"
    ended = await wait_entry(b, "cam", "FINISHED")
    assert ended["error"] == "remote stream ended: Stopped by publisher stop"
    assert (await rest(b, "stream/find", {"name": "cam"}))[0] == 404
    for sink in sinks.values():
        await sink.close()


async def test_a_dead_remote_is_retried_then_given_up_and_its_players_told(
    tmp_path: Path, start_server: Start, connect_client: Connect,
) -> None:
    a_home = other_home(tmp_path, "a")
    configure(a_home, ip="127.0.0.1")
    a = Served.start(a_home)
    try:
        a.wait_ready()
        b = await start_server(other_home(tmp_path, "b"), pull_retry_attempts="2",
                               pull_retry_initial_delay="0.3", pull_connect_timeout="3")
        publishing = WcsClient(f"ws://127.0.0.1:{a.ws_port}/")
        try:
            await publishing.connect()
            await publish(publishing, "cam")
            status, made = await rest(b, "pull/pull", {"uri": f"ws://127.0.0.1:{a.ws_port}",
                                                       "localStreamName": "cam"})
            assert status == 200 and made["status"] == "ACTIVE", made
            player, sinks = await play(await connect_client(b), "cam")
            a.stop(signum=signal.SIGKILL)
            retrying = await wait_entry(b, "cam", "RETRYING")
            assert retrying["error"], "why it retries is shown"
            # while it retries, the local stream stays (its players wait)
            assert (await rest(b, "stream/find", {"name": "cam", "published": True}))[0] == 200
            failed = await wait_entry(b, "cam", "FAILED", within=30)
            assert failed["retries"] == 2 and "gave up after 3 failed attempts" in failed["error"]
            stopped = await player.wait_status("STOPPED", timeout=10)
            assert stopped["info"] == "Stopped by publisher stop"
            assert (await rest(b, "stream/find", {"name": "cam"}))[0] == 404
            for sink in sinks.values():
                await sink.close()
        finally:
            await publishing.close()
    finally:
        a.stop(signum=signal.SIGKILL)
    # a failed pull stays listed until terminated; terminate forgets it
    status, gone = await rest(b, "pull/terminate", {"localStreamName": "cam"})
    assert status == 200 and gone["terminated"][0]["status"] == "FAILED"
    assert (await rest(b, "pull/find_all"))[0] == 404


async def test_terminate_stops_a_pull_and_its_local_stream(
    tmp_path: Path, start_server: Start, connect_client: Connect,
) -> None:
    a = await start_server(other_home(tmp_path, "a"))
    b = await start_server(other_home(tmp_path, "b"))
    await publish(await connect_client(a), "cam")
    assert (await rest(b, "pull/pull", {"uri": ws(a), "localStreamName": "copy",
                                        "remoteStreamName": "cam"}))[0] == 200
    player, sinks = await play(await connect_client(b), "copy")
    assert (await rest(b, "pull/terminate", {"localStreamName": "copy",
                                             "remoteStreamName": "other"}))[0] == 404
    status, body = await rest(b, "pull/terminate", {"localStreamName": "copy"})
    assert status == 200 and body["terminated"][0]["localStreamName"] == "copy"
    assert (await player.wait_status("STOPPED", timeout=10))["info"] == "Stopped by publisher stop"
    assert (await rest(b, "pull/find_all"))[0] == 404
    # A's player of cam (the pull's) is gone too
    assert await wait_for_status(a, {"name": "cam", "published": False}, 404)
    for sink in sinks.values():
        await sink.close()


async def wait_for_status(server: Server, body: dict[str, Any], status: int,
                          within: float = 10) -> bool:
    deadline = time.monotonic() + within
    while (await rest(server, "stream/find", body))[0] != status:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def test_a_push_stops_when_its_local_stream_stops(
    tmp_path: Path, start_server: Start, connect_client: Connect,
) -> None:
    a = await start_server(other_home(tmp_path, "a"))
    b = await start_server(other_home(tmp_path, "b"))
    publishing = await connect_client(a)
    publisher, _, _ = await publish(publishing, "cam")
    assert (await rest(a, "pull/push", {"uri": ws(b), "localStreamName": "cam"}))[0] == 200
    player, sinks = await play(await connect_client(b), "cam")
    await publishing.stop(publisher)
    assert (await player.wait_status("STOPPED", timeout=10))["info"] == "Stopped by publisher stop"
    ended = await wait_entry(a, "cam", "FINISHED")
    assert ended["error"] == "local stream stopped"
    assert await wait_for_status(b, {"name": "cam"}, 404)
    for sink in sinks.values():
        await sink.close()


async def test_refusals_name_what_is_wrong(
    tmp_path: Path, start_server: Start, connect_client: Connect,
) -> None:
    a = await start_server(other_home(tmp_path, "a"))
    await publish(await connect_client(a), "cam")
    cases = [
        ("pull/pull", {"localStreamName": "x"}, 400, "uri"),
        ("pull/pull", {"uri": "http://127.0.0.1:1/", "localStreamName": "x"}, 400, "uri"),
        ("pull/pull", {"uri": ws(a)}, 400, "localStreamName"),
        ("pull/pull", {"uri": ws(a), "localStreamName": "x", "custom": "no"}, 400, "custom"),
        ("pull/pull", {"uri": ws(a), "localStreamName": "x", "tlsVerify": "no"}, 400,
         "tlsVerify"),
        ("pull/pull", {"uri": ws(a), "localStreamName": "a://b"}, 400, "localStreamName"),
        ("pull/pull", {"uri": ws(a), "localStreamName": "cam"}, 409, "localStreamName"),
        ("pull/push", {"uri": ws(a), "localStreamName": "nothing"}, 404, "localStreamName"),
        ("pull/terminate", {}, 400, "localStreamName"),
    ]
    for method, body, expected, field in cases:
        status, answer = await rest(a, method, body)
        assert (status, answer.get("field")) == (expected, field), (method, body, answer)
        assert field in answer["message"]
    assert (await rest(a, "pull/find_all"))[0] == 404


async def test_loops_are_refused(
    tmp_path: Path, start_server: Start, connect_client: Connect,
) -> None:
    a = await start_server(other_home(tmp_path, "a"))
    b = await start_server(other_home(tmp_path, "b"))
    # a server pulling a stream from itself into that same stream
    status, refused = await rest(a, "pull/pull", {"uri": ws(a), "localStreamName": "x"})
    assert status == 409 and "Loop detected" in refused["message"], refused
    # A pulls B's y as x, B pulls A's x as y: neither has any media; the second is refused
    status, first = await rest(a, "pull/pull", {"uri": ws(b), "localStreamName": "x",
                                                "remoteStreamName": "y"})
    assert status == 200 and first["status"] == "RETRYING", first
    status, second = await rest(b, "pull/pull", {"uri": ws(a), "localStreamName": "y",
                                                 "remoteStreamName": "x"})
    assert status == 409 and "Loop detected" in second["message"], second
    # a copy of a stream back to where it came from, under another name, is no loop
    await publish(await connect_client(a), "cam")
    assert (await rest(b, "pull/pull", {"uri": ws(a), "localStreamName": "cam"}))[0] == 200
    status, back = await rest(a, "pull/pull", {"uri": ws(b), "localStreamName": "cam2",
                                               "remoteStreamName": "cam"})
    assert status == 200 and back["status"] == "ACTIVE", back


async def test_wss_with_a_trusted_certificate_and_refusal_of_an_untrusted_one(
    tmp_path: Path, start_server: Start, connect_client: Connect,
) -> None:
    authority = trustme.CA()
    a_home = other_home(tmp_path, "a")
    authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(a_home.conf / "server.pem"))
    a = await start_server(a_home, tls_certificate="conf/server.pem",
                           tls_private_key="conf/server.pem", **{"wss.port": "0",
                                                                 "https.port": "0"})
    await publish(await connect_client(a), "cam")
    uri = f"wss://127.0.0.1:{a.wss_port}/websocket"
    untrusting = await start_server(other_home(tmp_path, "b"), pull_retry_attempts="0")
    status, refused = await rest(untrusting, "pull/pull", {"uri": uri, "localStreamName": "cam"})
    assert status == 200 and refused["status"] == "FAILED", refused
    assert "certificate" in refused["error"].lower(), refused
    unverified = await rest(untrusting, "pull/pull", {"uri": uri, "localStreamName": "other",
                                                      "remoteStreamName": "cam",
                                                      "tlsVerify": False})
    assert unverified[0] == 200 and unverified[1]["status"] == "ACTIVE", unverified
    c_home = other_home(tmp_path, "c")
    authority.cert_pem.write_to_path(str(c_home.conf / "authority.pem"))
    trusting = await start_server(c_home, pull_tls_ca_file="conf/authority.pem")
    status, pulled = await rest(trusting, "pull/pull", {"uri": uri, "localStreamName": "cam"})
    assert status == 200 and pulled["status"] == "ACTIVE", pulled
    _, sinks = await play(await connect_client(trusting), "cam")
    assert await wait_for(lambda: sinks["video"].frames > 10, 10)
    for sink in sinks.values():
        await sink.close()


class Dropping:
    """A WebSocket proxy to a server that drops each connection a moment after its
    stream is PLAYING (a remote that accepts, then goes away)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.dropped = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self.relay)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def relay(self, request: web.Request) -> web.WebSocketResponse:
        near = web.WebSocketResponse()
        await near.prepare(request)
        async with aiohttp.ClientSession() as http, http.ws_connect(self.upstream) as far:
            async def down() -> None:
                async for message in far:
                    await near.send_str(message.data)
                    if '"PLAYING"' in message.data:
                        await asyncio.sleep(0.3)
                        self.dropped += 1
                        return

            async def up() -> None:
                async for message in near:
                    await far.send_str(message.data)

            tasks = [asyncio.create_task(down()), asyncio.create_task(up())]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
        await near.close()
        return near


async def test_a_remote_that_accepts_then_drops_is_not_retried_forever(
    tmp_path: Path, start_server: Start, connect_client: Connect,
) -> None:
    a = await start_server(other_home(tmp_path, "a"))
    b = await start_server(other_home(tmp_path, "b"), pull_retry_attempts="2",
                           pull_retry_initial_delay="0.2")
    await publish(await connect_client(a), "cam")
    proxy = Dropping(ws(a))
    await proxy.start()
    status, made = await rest(b, "pull/pull", {"uri": f"ws://127.0.0.1:{proxy.port}/",
                                               "localStreamName": "cam"})
    assert status == 200 and made["status"] == "ACTIVE"
    failed = await wait_entry(b, "cam", "FAILED", within=30)
    assert "gave up after 3 failed attempts" in failed["error"], failed
    assert proxy.dropped == 3 and failed["retries"] == 2
    assert proxy.runner is not None
    await proxy.runner.cleanup()


async def test_app_key_and_custom_reach_the_remote(
    tmp_path: Path, start_server: Start, connect_client: Connect,
) -> None:
    a_home = other_home(tmp_path, "a")
    a_home.apps_file.write_text(json.dumps({"apps": [  # the application the pull connects to
        {"name": "defaultApp", "appKey": "defaultApp", "url": "/apps/EchoApp", "methods": []},
        {"name": "studio", "appKey": "studio", "url": "/apps/EchoApp", "methods": []}]}))
    a = await start_server(a_home)
    b = await start_server(other_home(tmp_path, "b"))
    await publish(await connect_client(a), "cam")
    status, refused = await rest(b, "pull/pull", {"uri": ws(a), "localStreamName": "x",
                                                  "remoteStreamName": "cam", "appKey": "nope"})
    assert status == 200 and refused["error"] == "refused by the remote: Restricted access"
    status, made = await rest(b, "pull/pull", {
        "uri": ws(a), "localStreamName": "cam", "appKey": "studio",
        "custom": {"room": "r1", "token": "t"}})
    assert status == 200 and made["status"] == "ACTIVE", str(made)
    _, sessions = await rest(a, "connection/find_all")
    pulling = [s for s in sessions if s["appKey"] == "studio"]
    assert len(pulling) == 1 and pulling[0]["custom"]["room"] == "r1"
    assert pulling[0]["custom"]["token"] == "t" and pulling[0]["streams"] == 1
    _, players = await rest(a, "stream/find", {"name": "cam", "published": False})
    assert players[0]["custom"]["room"] == "r1", "the stream's custom carries them too"
    assert players[0]["appKey"] == "studio"


async def test_a_pulled_stream_is_received_on_the_event_loop(
    tmp_path: Path, start_server: Start, connect_client: Connect,
) -> None:
    """B receives the remote stream as it receives a publisher: no decoder thread."""
    import threading

    def decoder_threads() -> int:
        return sum(t.name.endswith("-decoder") for t in threading.enumerate())

    a = await start_server(other_home(tmp_path, "a"))
    b = await start_server(other_home(tmp_path, "b"))
    await publish(await connect_client(a), "cam")
    before = decoder_threads()
    status, made = await rest(b, "pull/pull", {"uri": ws(a), "localStreamName": "copy",
                                               "remoteStreamName": "cam"})
    assert status == 200 and made["status"] == "ACTIVE", made
    assert await wait_for(lambda: b.http_app[ENGINE].metrics(
        b.http_app[ENGINE].registry.publisher("copy"))["VIDEO_FRAMES"] > 10, 10)
    assert decoder_threads() == before
