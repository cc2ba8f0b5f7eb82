"""The REST API through a real server: filters with WCS semantics on a server with
real publishers and players, errors naming the field, CORS, auth."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from hookcast.config.home import Home
from hookcast.engine.streams import Status
from hookcast.keys import ENGINE
from hookcast.rtc import aiortc as compat
from hookcast.server import Server
from hookcast.signalling.client import ClientStream, WcsClient
from tests.core.rtc.relay_harness import (
    CountingAudioTrack,
    PatternVideoTrack,
    assert_kept_up,
)

Start = Callable[..., Any]


@dataclass
class Mix:
    """Publishers s and t; two players of s, one of t; each on its own session."""

    server: Server
    http: aiohttp.ClientSession
    streams: dict[str, ClientStream]
    clients: list[WcsClient]
    #: each publisher's tracks by name: their ``count`` is what it has sent
    sources: dict[str, tuple[PatternVideoTrack, CountingAudioTrack]]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.http_port}/rest-api/{path}"

    async def call(self, path: str, body: Any = None, method: str = "POST") -> tuple[int, Any]:
        async with self.http.request(method, self.url(path), json=body) as response:
            return response.status, await response.json()

    def ids(self, *labels: str) -> set[str]:
        return {self.streams[label].media_session_id for label in labels}


@pytest.fixture
async def mix(home: Home, start_server: Start) -> AsyncIterator[Mix]:
    server = await start_server(home)
    url = f"ws://127.0.0.1:{server.ws_port}/"
    clients: list[WcsClient] = []
    streams: dict[str, ClientStream] = {}
    sources: dict[str, tuple[PatternVideoTrack, CountingAudioTrack]] = {}

    async def client() -> WcsClient:
        c = WcsClient(url)
        clients.append(c)
        await c.connect()
        return c

    for name in ("s", "t"):
        sources[name] = (PatternVideoTrack(), CountingAudioTrack())
        streams[f"pub-{name}"] = await (await client()).publish(name, list(sources[name]))
        await streams[f"pub-{name}"].wait_status("PUBLISHING")
    for label, name in (("play-s1", "s"), ("play-s2", "s"), ("play-t", "t")):
        streams[label] = await (await client()).play(name)
        await streams[label].wait_status("PLAYING")
    async with aiohttp.ClientSession() as http:
        yield Mix(server, http, streams, clients, sources)
    for c in clients:
        await c.close()


async def stopped(mix: Mix, *labels: str) -> dict[str, tuple[str, str]]:
    """The final (status, info) each client saw; the server no longer has any of them."""
    for label in labels:
        await mix.streams[label].wait_status("UNPUBLISHED", "STOPPED")
    registry = mix.server.http_app[ENGINE].registry
    assert [label for label in labels if registry.get(mix.streams[label].media_session_id)] == []
    return {label: (mix.streams[label].status, mix.streams[label].info) for label in labels}


def assert_untouched(mix: Mix, *labels: str) -> None:
    """Each stream is still live on the server (its registry, not only the client's
    cached status, is the proof) and for its client."""
    registry = mix.server.http_app[ENGINE].registry
    live = {True: Status.PUBLISHING, False: Status.PLAYING}
    seen = {}
    for label in labels:
        client = mix.streams[label]
        served = registry.get(client.media_session_id)
        seen[label] = (client.status, served.status if served is not None else None)
    assert seen == {label: (live[mix.streams[label].published],) * 2 for label in labels}


async def test_find_all_lists_publishers_and_players(mix: Mix) -> None:
    for method in ("POST", "GET"):
        status, streams = await mix.call("stream/find_all", method=method)
        assert status == 200
        assert {s["mediaSessionId"] for s in streams} == mix.ids(*mix.streams)
    by_id = {s["mediaSessionId"]: s for s in streams}
    publisher = by_id[mix.streams["pub-s"].media_session_id]
    assert (publisher["name"], publisher["published"], publisher["status"]) == ("s", True, "PUBLISHING")
    assert publisher["videoCodec"] == "VP8" and publisher["audioCodec"] == "opus"
    assert (publisher["width"], publisher["height"]) == (320, 240)
    assert publisher["createDate"] > 0 and publisher["mediaType"] == "publish"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"name": "s"}, {"pub-s", "play-s1", "play-s2"}),
        ({"name": "s", "published": False}, {"play-s1", "play-s2"}),
        ({"published": True}, {"pub-s", "pub-t"}),
        ({"status": "PLAYING"}, {"play-s1", "play-s2", "play-t"}),
        ({"name": "t", "status": "PUBLISHING"}, {"pub-t"}),
        ({"hasVideo": True, "hasAudio": True, "name": "t"}, {"pub-t", "play-t"}),
    ],
)
async def test_find_filters_are_anded(mix: Mix, body: dict[str, Any], expected: set[str]) -> None:
    status, streams = await mix.call("stream/find", body)
    assert status == 200
    assert {s["mediaSessionId"] for s in streams} == mix.ids(*expected)


async def test_find_by_media_session_ids_and_with_metrics(mix: Mix) -> None:
    wanted = mix.ids("pub-s", "play-t")
    status, streams = await mix.call("stream/find", {"mediaSessionIds": sorted(wanted), "display": ["metrics"]})
    assert status == 200 and {s["mediaSessionId"] for s in streams} == wanted
    publisher = next(s for s in streams if s["published"])
    assert publisher["metrics"]["VIDEO_FRAMES"] > 0 and publisher["metrics"]["VIDEO_WIDTH"] == 320


async def test_find_nothing_is_404(mix: Mix) -> None:
    status, body = await mix.call("stream/find", {"name": "nope"})
    assert (status, body["message"]) == (404, "Stream not found")


async def test_terminate_published_false_stops_every_player(mix: Mix) -> None:
    status, body = await mix.call("stream/terminate", {"published": False})
    assert status == 200 and sorted(body["terminated"]) == sorted(mix.ids("play-s1", "play-s2", "play-t"))
    assert await stopped(mix, "play-s1", "play-s2", "play-t") == {
        label: ("STOPPED", "Stopped by rest /terminate") for label in ("play-s1", "play-s2", "play-t")
    }
    assert_untouched(mix, "pub-s", "pub-t")


async def test_terminate_players_of_one_name(mix: Mix) -> None:
    status, body = await mix.call("stream/terminate", {"name": "s", "published": False})
    assert status == 200 and sorted(body["terminated"]) == sorted(mix.ids("play-s1", "play-s2"))
    await stopped(mix, "play-s1", "play-s2")
    assert_untouched(mix, "pub-s", "pub-t", "play-t")


async def test_terminate_publisher_by_name_and_status_stops_its_players(mix: Mix) -> None:
    status, body = await mix.call("stream/terminate", {"name": "s", "status": "PUBLISHING"})
    assert (status, body["terminated"]) == (200, [mix.streams["pub-s"].media_session_id])
    assert await stopped(mix, "pub-s", "play-s1", "play-s2") == {
        "pub-s": ("UNPUBLISHED", "Stopped by rest /terminate"),
        "play-s1": ("STOPPED", "Stopped by publisher stop"),
        "play-s2": ("STOPPED", "Stopped by publisher stop"),
    }
    assert_untouched(mix, "pub-t", "play-t")


async def test_terminate_by_media_session_ids(mix: Mix) -> None:
    ids = sorted(mix.ids("play-s1", "play-t"))
    status, body = await mix.call("stream/terminate", {"mediaSessionIds": ids})
    assert status == 200 and sorted(body["terminated"]) == ids
    await stopped(mix, "play-s1", "play-t")
    assert_untouched(mix, "pub-s", "pub-t", "play-s2")


async def test_terminate_by_media_session_id(mix: Mix) -> None:
    status, body = await mix.call("stream/terminate", {"mediaSessionId": mix.streams["play-s2"].media_session_id})
    assert (status, body["terminated"]) == (200, [mix.streams["play-s2"].media_session_id])
    await stopped(mix, "play-s2")
    assert_untouched(mix, "pub-s", "pub-t", "play-s1", "play-t")


async def test_terminate_everything_then_404(mix: Mix) -> None:
    status, body = await mix.call("stream/terminate", {})
    assert status == 200 and sorted(body["terminated"]) == sorted(mix.ids(*mix.streams))
    await stopped(mix, *mix.streams)
    assert await mix.call("stream/terminate", {}) == (404, {"status": 404, "message": "Stream not found"})
    assert (await mix.call("stream/find_all"))[0] == 404


async def metrics_of(mix: Mix, *labels: str) -> list[dict[str, Any]]:
    """``/stream/metrics`` of each stream, asked at once."""
    answers = await asyncio.gather(*(
        mix.call("stream/metrics", {"mediaSessionId": mix.streams[label].media_session_id})
        for label in labels
    ))
    assert [status for status, _ in answers] == [200] * len(labels), answers
    return [body for _, body in answers]


def moved(before: dict[str, Any], after: dict[str, Any], key: str) -> int:
    return int(after[key]) - int(before[key])


async def test_metrics_of_a_publisher_and_a_player(mix: Mix) -> None:
    await asyncio.sleep(2.2)  # two samples of the once-a-second rate sampler
    video, audio = mix.sources["s"]
    seconds = 3.0
    sent_before = (video.count, audio.count)
    publisher, player = await metrics_of(mix, "pub-s", "play-s1")
    await asyncio.sleep(seconds)
    sent = (video.count - sent_before[0], audio.count - sent_before[1])
    publisher_after, player_after = await metrics_of(mix, "pub-s", "play-s1")

    assert publisher_after["VIDEO_CODEC_NAME"] == "VP8" and isinstance(publisher_after["VIDEO_CODEC"], int)
    assert (publisher_after["VIDEO_WIDTH"], publisher_after["VIDEO_HEIGHT"]) == (320, 240)
    for key in ("VIDEO_NACK", "VIDEO_PLI", "VIDEO_LOST", "VIDEO_BYTES", "VIDEO_GOP_SIZE"):
        assert key in publisher_after
    # the counters moved by what the publisher sent over the same window: the server
    # received it and the player was sent it, video and audio
    for counters, before in ((publisher_after, publisher), (player_after, player)):
        assert_kept_up(sent[0], [moved(before, counters, "VIDEO_FRAMES")], "VIDEO_FRAMES")
        assert_kept_up(sent[1], [moved(before, counters, "AUDIO_FRAMES")], "AUDIO_FRAMES")
    # a player that keeps up drops nothing
    assert moved(player, player_after, "VIDEO_DROPPED") == 0
    # the rates are those of what was sent (fps) and counted (bytes) in the window
    for counters, before in ((publisher_after, publisher), (player_after, player)):
        assert 0.5 * sent[0] / seconds <= counters["VIDEO_FPS"] <= 1.5 * sent[0] / seconds, counters
        for kind in ("VIDEO", "AUDIO"):
            bits = moved(before, counters, f"{kind}_BYTES") * 8 / seconds
            assert 0.5 * bits <= counters[f"{kind}_RATE"] <= 2 * bits, (kind, bits, counters)
    frames, keyframes = publisher_after["VIDEO_FRAMES"], publisher_after["VIDEO_K_FRAMES"]
    assert keyframes >= 1 and publisher_after["VIDEO_P_FRAMES"] == frames - keyframes
    assert publisher_after["VIDEO_B_FRAMES"] == 0
    assert publisher_after["VIDEO_GOP_SIZE"] == round(frames / keyframes, 1)

    # a PLI from the player counts once on the player and reaches the publisher
    receiver = next(t.receiver for t in mix.streams["play-s1"].pc.getTransceivers() if t.kind == "video")
    plis = await compat.request_keyframe(receiver)
    assert plis == 1  # one media SSRC heard, no retransmissions on loopback
    for _ in range(50):
        publisher_pli, player_pli = await metrics_of(mix, "pub-s", "play-s1")
        if player_pli["VIDEO_PLI"] != player_after["VIDEO_PLI"] and publisher_pli["VIDEO_K_FRAMES"] > keyframes:
            break
        await asyncio.sleep(0.1)
    assert moved(player_after, player_pli, "VIDEO_PLI") == 1
    assert moved(publisher_after, publisher_pli, "VIDEO_PLI") >= 1  # asked upstream
    assert moved(publisher_after, publisher_pli, "VIDEO_K_FRAMES") >= 1  # and a keyframe came
    assert (await mix.call("stream/metrics", {"mediaSessionId": "nope"}))[0] == 404


async def test_connections_find_all_and_terminate(mix: Mix) -> None:
    for method in ("POST", "GET"):
        status, connections = await mix.call("connection/find_all", method=method)
        assert status == 200 and len(connections) == 5
    publisher_session = next(c for c in connections if c["sessionId"] == mix.clients[0].session_id)
    assert publisher_session["streams"] == 1 and publisher_session["status"] == "ESTABLISHED"
    status, body = await mix.call("connection/terminate", {"sessionId": mix.clients[0].session_id})
    assert (status, body) == (200, {"terminated": [mix.clients[0].session_id]})
    assert await stopped(mix, "pub-s", "play-s1", "play-s2") == {
        "pub-s": ("UNPUBLISHED", "Stopped by rest /terminate"),
        "play-s1": ("STOPPED", "Stopped by publisher stop"),
        "play-s2": ("STOPPED", "Stopped by publisher stop"),
    }
    assert_untouched(mix, "pub-t", "play-t")
    assert len((await mix.call("connection/find_all"))[1]) == 4
    assert (await mix.call("connection/terminate", {"sessionId": "nope"}))[0] == 404


async def scrape(mix: Mix) -> dict[str, float]:
    async with mix.http.get(f"http://127.0.0.1:{mix.server.http_port}/metrics") as response:
        text = await response.text()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines() if line and not line.startswith("#")
    }


FORWARDED = 'hookcast_relay_packets_total{kind="video",result="forwarded"}'


async def test_prometheus_metrics_follow_the_streams(mix: Mix) -> None:
    await asyncio.sleep(1)
    players = ("play-s1", "play-s2", "play-t")
    before = sum(m["VIDEO_FRAMES"] for m in await metrics_of(mix, *players))
    samples = await scrape(mix)
    after = sum(m["VIDEO_FRAMES"] for m in await metrics_of(mix, *players))
    assert samples["hookcast_sessions"] == 5
    assert samples['hookcast_streams{role="publisher",status="PUBLISHING"}'] == 2
    assert samples['hookcast_streams{role="player",status="PLAYING"}'] == 3
    assert samples['hookcast_stream_players{stream="s"}'] == 2
    # the relay total is the players' own VIDEO_FRAMES, summed at scrape time
    forwarded = samples[FORWARDED]
    assert before > 0 and before <= forwarded <= after, (before, forwarded, after)
    await mix.call("stream/terminate", {"published": False})
    await stopped(mix, *players)
    ended = await scrape(mix)
    assert ended['hookcast_streams{role="player",status="PLAYING"}'] == 0
    assert ended[FORWARDED] >= forwarded, "a counter never goes down"
    # with no player left nothing more is forwarded, while the publishers go on sending
    await asyncio.sleep(0.5)
    assert (await scrape(mix))[FORWARDED] == ended[FORWARDED]


async def hookcast_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hookcast", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_cli_streams_and_terminate(mix: Mix) -> None:
    url = f"http://127.0.0.1:{mix.server.http_port}"
    code, out, _ = await hookcast_cli("streams", "--url", url)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("MEDIA SESSION")
    assert sum(" publisher " in line for line in lines) == 2
    assert sum(" player " in line and " PLAYING " in line for line in lines) == 3
    assert "VP8/opus" in out and "320x240" in out

    code, _, err = await hookcast_cli("terminate", "--url", url)
    assert code == 2 and "add --all" in err
    code, _, err = await hookcast_cli("terminate", "--url", url, "--published", "maybe")
    assert code == 2 and "expected true or false" in err
    code, out, _ = await hookcast_cli("terminate", "--url", url, "--name", "s", "--published", "false")
    assert (code, out.strip()) == (0, "terminated 2 stream(s)")
    await stopped(mix, "play-s1", "play-s2")
    assert_untouched(mix, "pub-s", "pub-t", "play-t")
    code, _, err = await hookcast_cli("terminate", "--url", url, "--name", "gone")
    assert code == 1 and "Stream not found" in err


async def test_cli_reports_an_unreachable_server() -> None:
    code, _, err = await hookcast_cli("streams", "--url", "http://127.0.0.1:9")
    assert code == 1 and "cannot reach hookcast at http://127.0.0.1:9" in err
