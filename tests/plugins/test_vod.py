"""VOD through the real server: files made with PyAV in media/, real WebRTC players on
127.0.0.1 that decode what they receive and read each picture's number from it."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from hookcast.config.home import Home
from hookcast.server import Server
from hookcast.signalling.client import ClientStream, WcsClient
from tests.core.recording.test_recording import publish, settled
from tests.plugins.vod_files import (
    FPS,
    Received,
    make_media,
    numbers,
    picture_number,
    receive,
)
from tests.served import Served, configure

Start = Callable[..., Any]
Connect = Callable[..., Any]
pytestmark = pytest.mark.usefixtures("loopback")


async def play(client: WcsClient, name: str) -> tuple[ClientStream, Received, asyncio.Task[None]]:
    player = await client.play(name)
    await player.wait_status("PLAYING")
    got = Received()
    return player, got, asyncio.create_task(receive(list(player.tracks), got))


async def rest(server: Server, method: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{server.http_port}/rest-api/{method}",
                             json={} if body is None else body) as response:
            return response.status, await response.json(content_type=None)


async def test_personal_vod_plays_the_whole_file_from_its_first_frame(
    home: Home, start_server: Start, connect_client: Connect
) -> None:
    make_media(home.media / "sample.mp4", seconds=10)
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    first, got_first, reading_first = await play(client, "vod://sample.mp4")
    await asyncio.sleep(3)
    second, got_second, reading_second = await play(client, "vod://sample.mp4")
    for player in (first, second):
        ended = await player.wait_status("STOPPED", timeout=20)
        assert ended["info"] == "End of file"
    await asyncio.wait_for(asyncio.gather(reading_first, reading_second), 10)
    for got in (got_first, got_second):
        assert got.video_codec == "video/h264" and got.errors == 0
        sequence = numbers(got)
        assert sequence[0] == 0, "a personal player starts at the file's first frame"
        assert len(sequence) >= 0.9 * 10 * FPS
        assert sequence == list(range(len(sequence))), "in order, none lost or repeated"
        assert got.audio_frames >= 0.9 * 10 * 50, "Opus (from AAC) arrives"
        # paced at real time, with no drift: picture n arrives n/30 s after picture 0
        start, _ = got.pictures[0]
        late = [(at - start) - index / FPS for index, (at, _) in enumerate(got.pictures)]
        assert max(abs(d) for d in late[-30:]) < 0.15, f"drift {late[-1]:.3f} s"
    assert first.last["videoCodec"] == "H264"


async def test_vod_live_is_one_reading_that_players_join_where_it_is(
    home: Home, start_server: Start, connect_client: Connect
) -> None:
    make_media(home.media / "live.mp4", seconds=30)
    server = await start_server(home, vod_live_idle_timeout="2")
    client: WcsClient = await connect_client(server)
    started = [await play(client, "vod-live://live.mp4") for _ in range(2)]
    status, streams = await rest(server, "stream/find_all")
    (source,) = [s for s in streams if s["published"]]
    assert source["name"] == "vod-live://live.mp4" and source["status"] == "PUBLISHING"
    await asyncio.sleep(4)
    late = await play(client, "vod-live://live.mp4")
    await asyncio.sleep(3)
    players = [*started, late]
    for player, _, _ in players:
        await client.stop(player)
    for _, _, reading in players:
        await asyncio.wait_for(reading, 10)
    late_numbers = numbers(late[1])
    assert late_numbers[0] >= 3 * FPS, "the late player starts near the position, not at 0"
    assert late_numbers[:60] == list(range(late_numbers[0], late_numbers[0] + 60))
    # all three show the same picture at the same time
    for _, got, _ in started:
        at = dict((number, arrival) for arrival, number in got.pictures
                  if number not in (0,) and arrival > late[1].pictures[0][0])
        common = [(arrival, at[number]) for arrival, number in late[1].pictures[30:]
                  if number in at]
        assert common and max(abs(a - b) for a, b in common) < 0.25
    deadline = time.monotonic() + 10
    while True:  # no player: the source stops after vod_live_idle_timeout
        status, streams = await rest(server, "stream/find_all")
        if status == 404:
            break
        assert time.monotonic() < deadline, streams
        await asyncio.sleep(0.3)


async def test_vod_live_loops(home: Home, start_server: Start, connect_client: Connect) -> None:
    make_media(home.media / "short.webm", video="vp8", audio="opus", seconds=2)
    server = await start_server(home, vod_live_loop="true")
    client: WcsClient = await connect_client(server)
    player, got, reading = await play(client, "vod-live://short.webm")
    await asyncio.sleep(5)
    await client.stop(player)
    await asyncio.wait_for(reading, 10)
    sequence = numbers(got)
    assert len(sequence) >= 4 * FPS and sequence.count(0) >= 2, "the file came round again"
    assert got.video_codec == "video/vp8" and got.errors == 0


async def test_our_own_webm_recording_plays_back(
    home: Home, start_server: Start, connect_client: Connect
) -> None:
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    stream, _ = await publish(client, "cam", "VP8", record=True)
    await asyncio.sleep(3)
    await client.stop(stream)
    await settled(server)
    recorded = home.records / stream.last["recordName"]
    shutil.copy(recorded, home.media / "again.webm")
    player, got, reading = await play(client, "vod://again.webm")
    assert (await player.wait_status("STOPPED", timeout=15))["info"] == "End of file"
    await asyncio.wait_for(reading, 10)
    assert got.video_codec == "video/vp8" and got.errors == 0
    assert len(got.pictures) >= 2.5 * FPS and got.audio_frames >= 2.5 * 50


@pytest.mark.parametrize(("name", "info"), [
    ("vod://missing.mp4", "File not found"),
    ("vod://../conf/server.properties", "File not found"),
    ("vod:///etc/passwd", "File not found"),
    ("vod://outside.mp4", "File not found"),  # a symlink out of media/
    ("vod://a\x00b.mp4", "File not found"),
    ("vod://truncated.mp4", "File has wrong format"),
    ("vod://text.mp4", "File has wrong format"),
    ("vod://hevc.mp4", "File has wrong format"),
    ("vod://bframes.mp4", "File has wrong format"),
    ("vod-live://text.mp4", "File has wrong format"),
    ("nothing://here", "Stream not found"),
])
async def test_bad_names_and_files_fail_the_wcs_way(
    home: Home, start_server: Start, connect_client: Connect, tmp_path: Path,
    name: str, info: str
) -> None:
    good = make_media(home.media / "good.mp4", seconds=1)
    whole = good.read_bytes()
    (home.media / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (home.media / "text.mp4").write_text("not a video at all\n")
    secret = tmp_path / "secret.mp4"
    shutil.copy(good, secret)
    (home.media / "outside.mp4").symlink_to(secret)
    make_media(home.media / "hevc.mp4", video="hevc", seconds=1)
    make_media(home.media / "bframes.mp4", seconds=1, bframes=True)
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    player = await client.play(name)
    failed = await player.wait_status("FAILED")
    assert failed["info"] == info
    # the server goes on
    again, got, reading = await play(client, "vod://good.mp4")
    await again.wait_status("STOPPED")
    await asyncio.wait_for(reading, 10)
    assert len(got.pictures) >= 20


async def test_a_player_that_cannot_take_the_files_codec_fails(
    home: Home, start_server: Start, connect_client: Connect
) -> None:
    make_media(home.media / "sample.mp4", seconds=2)
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    pc = RTCPeerConnection()
    video = pc.addTransceiver("video", direction="recvonly")
    video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                               if c.mimeType == "video/VP8"])
    player = await client._start("playStream", "vod://sample.mp4", pc, published=False)
    failed = await player.wait_status("FAILED")
    assert failed["info"] == "No common codecs"


async def test_rest_vod_startup_find_terminate_and_media_catalogue(
    home: Home, start_server: Start, connect_client: Connect
) -> None:
    make_media(home.media / "show.mp4", seconds=20)
    make_media(home.media / "clip.webm", video="vp8", audio="opus", seconds=1)
    server = await start_server(home)
    status, started = await rest(server, "vod/startup", {
        "uri": "vod-live://show.mp4", "localStreamName": "channel1", "loop": True})
    assert status == 200, started
    assert started["localStreamName"] == "channel1" and started["loop"] is True
    assert started["status"] == "PROCESSED_LOCAL" and started["uri"] == "vod-live://show.mp4"
    status, taken = await rest(server, "vod/startup", {
        "uri": "vod-live://show.mp4", "localStreamName": "channel1"})
    assert status == 409, taken
    status, bad = await rest(server, "vod/startup", {"uri": "vod-live://nope.mp4",
                                                     "localStreamName": "x"})
    assert status == 404 and "File not found" in bad["message"]
    client: WcsClient = await connect_client(server)
    player, got, reading = await play(client, "channel1")
    await asyncio.sleep(2)
    status, found = await rest(server, "vod/find", {"localStreamName": "channel1"})
    assert status == 200 and [f["localStreamName"] for f in found] == ["channel1"]
    assert found[0]["hasVideo"] and found[0]["hasAudio"]
    status, listed = await rest(server, "vod/find_all")
    assert status == 200 and [f["localMediaSessionId"] for f in listed] == [
        started["localMediaSessionId"]]
    status, _ = await rest(server, "vod/terminate", {"localStreamName": "channel1"})
    assert status == 200
    stopped = await player.wait_status("STOPPED")
    assert stopped["info"] == "Stopped by publisher stop"
    await asyncio.wait_for(reading, 10)
    assert len(got.pictures) > FPS
    assert (await rest(server, "vod/find_all"))[0] == 404
    status, media = await rest(server, "media/find_all")
    assert status == 200
    files = {m["fileName"]: m for m in media}
    assert set(files) == {"show.mp4", "clip.webm"}
    assert files["show.mp4"]["videoCodec"] == "H264" and files["show.mp4"]["audioCodec"] == "AAC"
    assert abs(files["show.mp4"]["duration"] - 20) < 0.2
    assert files["clip.webm"]["videoCodec"] == "VP8"
    make_media(home.media / "new.mp4", seconds=1)  # the folder is watched
    deadline = time.monotonic() + 10
    while "new.mp4" not in {m["fileName"] for m in (await rest(server, "media/find_all"))[1]}:
        assert time.monotonic() < deadline, "a new file is listed"
        await asyncio.sleep(0.3)


async def count_frames(player: ClientStream) -> list[int]:
    """The video times (1/90000) a player receives, without decoding (many players
    share this process: they count, the server under test is another process)."""
    times: list[int] = []
    video = next(t for t in player.tracks if t.kind == "video")
    try:
        while True:
            packet = await video.recv()
            times.append(int(packet.pts))
    except MediaStreamError:
        return times


async def test_twenty_shared_and_five_personal_players_at_once(home: Home) -> None:
    """``hookcast serve`` in its own process; 20 players of one vod-live:// stream and 5
    of their own vod:// file, all at once: every one gets every frame, in order."""
    make_media(home.media / "crowd.mp4", seconds=60)
    make_media(home.media / "own.mp4", seconds=6)
    configure(home, ip="127.0.0.1")
    served = Served.start(home)
    await asyncio.to_thread(served.wait_ready)
    clients = [WcsClient(f"ws://127.0.0.1:{served.ws_port}/") for _ in range(5)]
    try:
        for client in clients:
            await client.connect()
        names = ["vod-live://crowd.mp4"] * 20 + ["vod://own.mp4"] * 5
        players = [await clients[n % 5].play(name) for n, name in enumerate(names)]
        await asyncio.gather(*(p.wait_status("PLAYING") for p in players))
        counting = [asyncio.create_task(count_frames(p)) for p in players]
        await asyncio.sleep(7)
        for n, player in enumerate(players[:20]):
            await clients[n % 5].stop(player)
        for player in players[20:]:
            assert (await player.wait_status("STOPPED", timeout=15))["info"] == "End of file"
        counted = await asyncio.wait_for(asyncio.gather(*counting), 15)
    finally:
        for client in clients:
            await client.close()
        served.stop()
    for times in counted:
        steps = {b - a for a, b in itertools.pairwise(times)}
        assert steps == {90000 // FPS}, f"frames lost or repeated: steps {sorted(steps)[:5]}"
    for times in counted[:20]:
        assert len(times) >= 6 * FPS, len(times)
    for times in counted[20:]:
        assert len(times) == 6 * FPS and times[0] == 0


async def test_a_vod_live_stream_is_recorded_and_terminated_like_any_other(
    home: Home, start_server: Start, connect_client: Connect
) -> None:
    make_media(home.media / "show.mp4", seconds=30)
    server = await start_server(home, stream_record_policy_template="{streamName}")
    status, started = await rest(server, "vod/startup", {"uri": "vod-live://show.mp4",
                                                         "localStreamName": "show"})
    assert status == 200, started
    status, recording = await rest(server, "stream/startRecording",
                                   {"mediaSessionId": started["localMediaSessionId"]})
    assert status == 200, recording
    await asyncio.sleep(4)
    status, _ = await rest(server, "stream/terminate", {"name": "show"})
    assert status == 200
    await settled(server)
    status, streams = await rest(server, "stream/find_all")
    assert status == 404, streams
    with av.open(str(home.records / "show.mp4")) as container:
        assert {s.type: s.codec_context.name for s in container.streams} == {
            "video": "h264", "audio": "aac"}
        sequence = [picture_number(f) for f in container.decode(video=0)]
    assert len(sequence) >= 3.5 * FPS
    assert sequence == list(range(sequence[0], sequence[0] + len(sequence))), "none lost"


async def test_what_a_hostile_trial_found(
    home: Home, start_server: Start, connect_client: Connect, tmp_path: Path
) -> None:
    """Lone surrogates, symlink loops, names too long, a stop sent before the answer,
    bad localStreamNames, too many readings: each a clear answer, nothing left PENDING."""
    make_media(home.media / "long.mp4", seconds=20)
    (home.media / "loop1.mp4").symlink_to(home.media / "loop2.mp4")
    (home.media / "loop2.mp4").symlink_to(home.media / "loop1.mp4")
    server = await start_server(home, vod_max_readings="2")
    client: WcsClient = await connect_client(server)
    for name, info in (("vod://\ud800.mp4", "lone surrogate"),
                       ("vod://loop1.mp4", "File not found"),
                       ("vod://" + "y" * 5000 + ".mp4", "File not found")):
        player = await client.play(name) if len(name) < 256 else None
        if player is None:  # longer than max_stream_name_length: refused at the door
            continue
        failed = await player.wait_status("FAILED")
        assert info in failed["info"], failed
    refused = await client.publish("\udc00cam", [], record=True)
    assert "lone surrogate" in (await refused.wait_status("FAILED"))["info"]
    # a stop sent right after the play, before the server has answered it
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    early = await asyncio.wait_for(_play_and_stop_at_once(client, pc), 10)
    assert early["status"] == "STOPPED" and early["info"] == "Stopped by user"
    for body, field in (({"uri": "vod-live://long.mp4", "localStreamName": "a\x00b"},
                         "localStreamName"),
                        ({"uri": "vod-live://long.mp4", "localStreamName": "vod://x.mp4"},
                         "localStreamName"),
                        ({"uri": "vod-live://\ud800.mp4"}, "uri")):
        status, answer = await rest(server, "vod/startup", body)
        assert status == 400 and answer["field"] == field, answer
    first, _, reading_first = await play(client, "vod://long.mp4")
    second, _, reading_second = await play(client, "vod://long.mp4")
    third = await client.play("vod://long.mp4")  # vod_max_readings=2
    assert (await third.wait_status("FAILED"))["info"] == "Too many VOD readings"
    status, busy = await rest(server, "vod/startup", {"uri": "vod-live://long.mp4"})
    assert status == 503, busy
    for player in (first, second):
        await client.stop(player)
    await asyncio.wait_for(asyncio.gather(reading_first, reading_second), 10)
    status, _ = await rest(server, "vod/startup", {"uri": "vod-live://long.mp4"})
    assert status == 200, "readings are counted until they close, no longer"


async def _play_and_stop_at_once(client: WcsClient, pc: RTCPeerConnection) -> dict[str, Any]:
    import json
    import uuid

    from aiortc import RTCSessionDescription  # noqa: F401  (the offer is made by aiortc)

    await pc.setLocalDescription(await pc.createOffer())
    media_session_id = str(uuid.uuid1())
    payload = {"mediaSessionId": media_session_id, "name": "vod://long.mp4",
               "published": False, "sdp": pc.localDescription.sdp, "record": False}
    stream = ClientStream(media_session_id, "vod://long.mp4", False, pc)
    client.streams[media_session_id] = stream
    await client.send_raw(json.dumps({"message": "playStream", "data": [payload]}))
    await client.send_raw(json.dumps({"message": "stopStream", "data": [payload]}))
    try:
        return await stream.wait_status("STOPPED")
    finally:
        await pc.close()


async def test_a_looped_file_that_changes_ends_the_stream_with_why(
    home: Home, start_server: Start, connect_client: Connect
) -> None:
    make_media(home.media / "short.mp4", seconds=1)
    make_media(home.media / "other.webm", video="vp8", audio="opus", seconds=1)
    server = await start_server(home, vod_live_loop="true")
    client: WcsClient = await connect_client(server)
    player, _, reading = await play(client, "vod-live://short.mp4")
    (home.media / "other.webm").replace(home.media / "short.mp4")
    stopped = await player.wait_status("STOPPED", timeout=10)
    assert stopped["info"] == "Stopped by publisher stop"
    await asyncio.wait_for(reading, 10)
    status, streams = await rest(server, "stream/find_all")
    assert status == 404, streams
    make_media(home.media / "hevc.mp4", video="hevc", seconds=1)
    outside = home.root / "outside.mp4"
    make_media(outside, seconds=1)
    (home.media / "link.mp4").symlink_to(outside)
    deadline = time.monotonic() + 10
    while True:
        status, media = await rest(server, "media/find_all")
        files = {m["fileName"]: m for m in media}
        if "hevc.mp4" in files:
            break
        assert time.monotonic() < deadline, files
        await asyncio.sleep(0.3)
    assert "only H.264 and VP8" in files["hevc.mp4"]["problem"]
    assert "link.mp4" not in files, "a symlink out of media/ is neither listed nor opened"
    assert files["short.mp4"]["videoCodec"] == "VP8" and files["short.mp4"]["audioCodec"] == "opus"


async def test_a_personal_reading_starts_at_frame_0_for_a_player_that_connects_late(
    home: Home, start_server: Start, connect_client: Connect
) -> None:
    """A short group of pictures (a keyframe every 5 frames) and a player whose ICE and
    DTLS begin 1.5 s after the server answered (a slow browser): its reading starts
    when it connects, not when it was registered, so it still sees frame 0 first, and
    every frame after it."""
    make_media(home.media / "short-gop.mp4", seconds=4, gop=5)
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    pc = RTCPeerConnection()
    for kind in ("audio", "video"):
        pc.addTransceiver(kind, direction="recvonly")
    apply_answer = pc.setRemoteDescription

    async def late(description: Any) -> None:
        await asyncio.sleep(1.5)
        await apply_answer(description)

    pc.setRemoteDescription = late  # type: ignore[method-assign]
    asked = time.monotonic()
    player = await client._start("playStream", "vod://short-gop.mp4", pc, published=False)
    await player.wait_status("PLAYING")
    assert time.monotonic() - asked >= 1.5, "the player was not late"
    got = Received()
    reading = asyncio.create_task(receive(list(player.tracks), got))
    assert (await player.wait_status("STOPPED", timeout=20))["info"] == "End of file"
    await asyncio.wait_for(reading, 10)
    sequence = numbers(got)
    assert sequence[:1] == [0], f"the late player's first picture is {sequence[:1]}, not frame 0"
    assert sequence == list(range(len(sequence))), "in order, none lost or repeated"
    assert len(sequence) >= 0.9 * 4 * FPS


async def test_links_and_hidden_files_of_media_are_never_played_or_listed(
    home: Home, start_server: Start, connect_client: Connect, tmp_path: Path
) -> None:
    """A link is followed only to a file shown in media/ itself: never out of it, never
    to a hidden file or into a hidden folder; hidden names are not played either."""
    make_media(home.media / "good.mp4", seconds=1)
    shutil.copy(home.media / "good.mp4", home.media / ".private.mp4")
    (home.media / ".drafts").mkdir()
    shutil.copy(home.media / "good.mp4", home.media / ".drafts" / "cut.mp4")
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(home.media / "good.mp4", outside / "good.mp4")
    (home.media / "peek.mp4").symlink_to(".private.mp4")
    (home.media / "drafts").symlink_to(".drafts")
    (home.media / "elsewhere").symlink_to(outside)
    (home.media / "alias.mp4").symlink_to("good.mp4")  # inside, shown: played
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    for name in ("vod://peek.mp4", "vod://.private.mp4", "vod://drafts/cut.mp4",
                 "vod://.drafts/cut.mp4", "vod://elsewhere/good.mp4", "vod-live://peek.mp4"):
        player = await client.play(name)
        failed = await player.wait_status("FAILED")
        assert failed["info"] == "File not found", name
    status, answer = await rest(server, "vod/startup", {"uri": "vod-live://peek.mp4"})
    assert status == 404, answer
    player, got, reading = await play(client, "vod://alias.mp4")
    await player.wait_status("STOPPED")
    await asyncio.wait_for(reading, 10)
    assert len(got.pictures) >= 20
    status, media = await rest(server, "media/find_all")
    assert sorted(m["fileName"] for m in media) == ["alias.mp4", "good.mp4"]
