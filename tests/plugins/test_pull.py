"""Pull and push between two real hookcast servers on 127.0.0.1 (different ports):
a real WebRTC publisher on one, real players on the other decoding what they get."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiortc.mediastreams import AudioStreamTrack

from hookcast.config.home import Home
from hookcast.keys import ENGINE
from hookcast.server import Server
from hookcast.signalling.client import ClientStream, WcsClient
from tests.core.rtc.relay_harness import (
    CountingAudioTrack,
    DecodingSink,
    PatternVideoTrack,
    assert_kept_up,
    counted_over,
    reading,
    wait_for,
)

Start = Callable[..., Any]
Connect = Callable[..., Any]
pytestmark = pytest.mark.usefixtures("loopback")
MIMES = {"VP8": "video/VP8", "H264": "video/H264"}


def other_home(tmp_path: Path, name: str) -> Home:
    root = tmp_path / name
    for folder in ("conf", "plugins", "media", "records", "hooks"):
        (root / folder).mkdir(parents=True)
    return Home(root)


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
    return int(server.http_app[ENGINE].broadcasts[name].leg.tracks["video"].stats()["plis_sent"])


@pytest.mark.parametrize("codec", ["VP8", "H264"])
@pytest.mark.parametrize("direction", ["pull", "push"])
async def test_a_player_on_b_gets_the_publishers_frames_on_a_as_they_are(
    tmp_path: Path, start_server: Start, connect_client: Connect, direction: str, codec: str,
) -> None:
    a = await start_server(other_home(tmp_path, "a"))
    b = await start_server(other_home(tmp_path, "b"))
    publisher, camera, microphone = await publish(await connect_client(a), "cam", codec)
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

    # both ends list it as an ordinary stream: B a publisher, A a player of "cam"
    _, on_b = await rest(b, "stream/find", {"name": "copy", "published": True})
    assert on_b[0]["status"] == "PUBLISHING" and on_b[0]["videoCodec"] == codec
    _, on_a = await rest(a, "stream/find", {"name": "cam", "published": False})
    assert [s["status"] for s in on_a] == ["PLAYING"]
    # a player joining on B makes the original publisher on A send a keyframe
    before = publisher_plis(a, "cam")
    late, late_sinks = await play(await connect_client(b), "copy")
    assert await wait_for(lambda: late_sinks["video"].frames > 0, 5), "a late player waits"
    assert publisher_plis(a, "cam") > before, "the keyframe request reached A's publisher"
    async with aiohttp.ClientSession() as http:
        side = b if direction == "pull" else a
        async with http.get(f"http://127.0.0.1:{side.http_port}/metrics") as response:
            text = await response.text()
    assert f'hookcast_pulls{{direction="{direction}",status="ACTIVE"}} 1.0' in text
    for sink in (*sinks.values(), *late_sinks.values()):
        await sink.close()
