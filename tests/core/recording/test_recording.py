"""Recording through the real server: real WebRTC publishers with ``record: true``, real
files in records/, decoded with PyAV; the REST surface and downloads over real HTTP."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aiortc.mediastreams import AudioStreamTrack

from hookcast.config.home import Home
from hookcast.keys import ENGINE
from hookcast.server import Server
from hookcast.signalling.client import ClientStream, WcsClient
from tests.conftest import write_plugin
from tests.core.recording.sources import (
    BeepAudioTrack,
    FlashVideoTrack,
    captured_h264,
    flashes_and_beeps,
    recorded_h264,
    slices,
)
from tests.core.rtc.relay_harness import PatternVideoTrack

Start = Callable[..., Any]
SYNC_LIMIT = 0.060  # seconds between a flash and its beep in the file

EVENTS = """
    import json
    from pathlib import Path
    from hookcast import hookimpl

    LOG = Path(__file__).parents[1] / "recordings.jsonl"

    def record(kind, recording):
        with LOG.open("a") as handle:
            handle.write(json.dumps({
                "event": kind, "file": recording.file_name, "path": str(recording.path),
                "part": recording.part, "stream": recording.stream.name,
                "recordName": recording.stream.record_name, "duration": recording.duration,
                "size": recording.size, "video": recording.video_codec,
                "audio": recording.audio_codec, "recovered": recording.recovered,
                "error": recording.error, "started": recording.started_at,
                "finished": recording.finished_at}) + "\\n")

    @hookimpl
    def on_record_started(recording):
        record("started", recording)

    @hookimpl
    async def on_record_finished(recording):
        record("finished", recording)
"""


def events(home: Home) -> list[dict[str, Any]]:
    log = home.root / "recordings.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


async def wait_events(home: Home, kind: str, count: int = 1, limit: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + limit
    while True:
        found = [e for e in events(home) if e["event"] == kind]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{count} {kind} events expected, got {events(home)}"
        await asyncio.sleep(0.1)


def decode(path: Path) -> dict[str, Any]:
    """Streams, frames decoded per kind, decode errors and duration of a media file."""
    counts = {"video": 0, "audio": 0}
    with av.open(str(path)) as container:
        codecs = {s.type: s.codec_context.name for s in container.streams}
        for frame in container.decode(*container.streams):
            counts["video" if isinstance(frame, av.VideoFrame) else "audio"] += 1
        duration = container.duration / av.time_base if container.duration else 0.0
    return {"codecs": codecs, **counts, "duration": duration}


async def publish(client: WcsClient, name: str, codec: str = "H264", **fields: Any) -> tuple[ClientStream, PatternVideoTrack]:
    camera = PatternVideoTrack()
    stream = await client.publish(name, [camera, AudioStreamTrack()], video_codec=codec, **fields)
    await stream.wait_status("PUBLISHING")
    return stream, camera


async def settled(server: Server) -> None:
    """Every recording file closed, made final and announced."""
    await asyncio.wait_for(server.http_app[ENGINE].recordings._tasks.wait(), 30)


@pytest.mark.usefixtures("loopback")
async def test_h264_is_recorded_to_mp4_byte_for_byte(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    write_plugin(home, "events", EVENTS)
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    with captured_h264() as published:
        stream, _ = await publish(client, "cam", record=True)
        record_name = stream.last["recordName"]
        assert stream.last["record"] is True and record_name.endswith(".mp4")
        await asyncio.sleep(6)
        await client.stop(stream)
    assert stream.last["status"] == "UNPUBLISHED" and stream.last["recordName"] == record_name
    await settled(server)
    path = home.records / record_name
    media = decode(path)
    assert media["codecs"] == {"video": "h264", "audio": "aac"}
    recorded = recorded_h264(str(path))
    pictures = [slices(nals) for nals in published]
    start = pictures.index(recorded[0])
    window = pictures[start:]
    assert recorded == window[:len(recorded)], "the recorded H.264 differs from what was sent"
    assert len(recorded) >= 0.9 * len(window), f"{len(recorded)} of {len(window)} frames"
    assert media["video"] >= 0.9 * len(window)
    assert media["audio"] > 0.8 * media["duration"] * 48000 / 1024
    assert abs(media["duration"] - len(window) / 30) <= 0.1 * len(window) / 30
    (started,) = await wait_events(home, "started")
    (finished,) = await wait_events(home, "finished")
    assert started["file"] == finished["file"] == record_name and started["part"] == 1
    assert finished["size"] == path.stat().st_size and finished["error"] == ""
    assert (finished["video"], finished["audio"]) == ("H264", "AAC")
    assert abs(finished["duration"] - media["duration"]) < 0.1 and not finished["recovered"]
    assert not list(home.records.glob(".*.recording")), "no marker is left once a file is final"
    assert json.loads((home.records / f".{record_name}.json").read_text())["streamName"] == "cam"
    with av.open(str(path)) as container:  # final: the index (moov) before the media
        assert container.format.name.startswith("mov")
    assert path.read_bytes()[4:8] == b"ftyp" and b"moov" in path.read_bytes()[:4096]


@pytest.mark.usefixtures("loopback")
async def test_mp4_keeps_opus_as_it_is_when_asked(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    """record_mp4_audio=opus: the MP4 holds the publisher's Opus packets (ISO BMFF Opus
    mapping), nothing transcoded; the file is final and decodes."""
    write_plugin(home, "events", EVENTS)
    server = await start_server(home, record_mp4_audio="opus")
    client: WcsClient = await connect_client(server)
    stream, _ = await publish(client, "cam", record=True)
    await asyncio.sleep(4)
    await client.stop(stream)
    await settled(server)
    record_name = stream.last["recordName"]
    assert record_name.endswith(".mp4")
    media = decode(home.records / record_name)
    assert media["codecs"] == {"video": "h264", "audio": "opus"}
    assert media["audio"] > 0.8 * media["duration"] * 50  # 20 ms Opus packets, all kept
    (finished,) = await wait_events(home, "finished")
    assert (finished["video"], finished["audio"]) == ("H264", "opus")
    recorder = server.http_app[ENGINE].recordings
    assert not recorder.active


@pytest.mark.usefixtures("loopback")
async def test_vp8_is_recorded_to_webm_with_opus_as_it_is(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    stream, camera = await publish(client, "cam", "VP8", record=True)
    sent_before = camera.count
    await asyncio.sleep(4)
    sent = camera.count - sent_before
    await client.stop(stream)
    await settled(server)
    media = decode(home.records / stream.last["recordName"])
    assert stream.last["recordName"].endswith(".webm")
    assert media["codecs"] == {"video": "vp8", "audio": "opus"}
    assert media["video"] >= 0.9 * sent
    assert 3.6 <= media["duration"] <= 4.8


@pytest.mark.usefixtures("loopback")
@pytest.mark.parametrize("codec", ["H264", "VP8"])
async def test_audio_and_video_stay_in_sync(
    home: Home, start_server: Start, connect_client: Callable[..., Any], codec: str
) -> None:
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    epoch = time.time() + 0.5
    stream = await client.publish("sync", [FlashVideoTrack(epoch), BeepAudioTrack(epoch)],
                                  video_codec=codec, record=True)
    await stream.wait_status("PUBLISHING")
    await asyncio.sleep(6.5)
    await client.stop(stream)
    await settled(server)
    flashes, beeps = flashes_and_beeps(str(home.records / stream.last["recordName"]))
    assert len(flashes) >= 4 and len(beeps) >= 4, (flashes, beeps)
    offsets = [min((b - f for b in beeps), key=abs) for f in flashes]
    assert max(abs(o) for o in offsets) <= SYNC_LIMIT, f"flash - beep offsets: {offsets}"


@pytest.mark.usefixtures("loopback")
async def test_audio_only_goes_to_mp4_and_video_only_works(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    server = await start_server(home)
    voice = await (await connect_client(server)).publish("voice", [AudioStreamTrack()], record=True)
    picture = await (await connect_client(server)).publish("picture", [PatternVideoTrack()],
                                                           video_codec="H264", record=True)
    for stream in (voice, picture):
        await stream.wait_status("PUBLISHING")
    await asyncio.sleep(3)
    engine = server.http_app[ENGINE]
    await engine.terminate(list(engine.registry))
    await settled(server)
    voice_file = decode(home.records / voice.last["recordName"])
    assert voice.last["recordName"].endswith(".mp4") and voice_file["codecs"] == {"audio": "aac"}
    assert voice_file["audio"] > 2 * 48000 / 1024
    picture_file = decode(home.records / picture.last["recordName"])
    assert picture_file["codecs"] == {"video": "h264"} and picture_file["video"] > 60


@pytest.mark.usefixtures("loopback")
@pytest.mark.parametrize(("properties", "fields"), [
    ({"record_streams": "false"}, {"record": True}), ({}, {"record": False}), ({}, {}),
])
async def test_no_file_unless_asked_and_allowed(
    home: Home, start_server: Start, connect_client: Callable[..., Any],
    properties: dict[str, str], fields: dict[str, Any]
) -> None:
    server = await start_server(home, **properties)
    stream, _ = await publish(await connect_client(server), "cam", **fields)
    await asyncio.sleep(1.5)
    await server.http_app[ENGINE].terminate([server.http_app[ENGINE].registry.publisher("cam")])
    await settled(server)
    assert list(home.records.iterdir()) == []
    assert "recordName" not in stream.last


async def http(server: Server, method: str, path: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.request(
        method, f"http://127.0.0.1:{server.http_port}{path}",
        json=body if body is not None else None, headers=headers or {},
    ) as response:
        raw = await response.read()
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = raw
        return response.status, parsed, dict(response.headers)


@pytest.mark.usefixtures("loopback")
async def test_download_with_ranges_and_nothing_outside_records(
    home: Home, start_server: Start, connect_client: Callable[..., Any], tmp_path: Path
) -> None:
    server = await start_server(home)
    stream, _ = await publish(await connect_client(server), "cam", record=True)
    await asyncio.sleep(3)
    await server.http_app[ENGINE].terminate([server.http_app[ENGINE].registry.publisher("cam")])
    await settled(server)
    name = stream.last["recordName"]
    content = (home.records / name).read_bytes()
    status, body, headers = await http(server, "GET", f"/client/records/{name}")
    assert status == 200 and body == content and headers["Content-Type"] == "video/mp4"
    assert headers["Accept-Ranges"] == "bytes"
    status, body, headers = await http(server, "GET", f"/client/records/{name}",
                                       headers={"Range": "bytes=100-1099"})
    assert status == 206 and body == content[100:1100]
    assert headers["Content-Range"] == f"bytes 100-1099/{len(content)}"
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"not yours")
    os.symlink(secret, home.records / "link.mp4")
    (home.records / ".hidden.mp4").write_bytes(b"marker-like")
    for attempt in ("../conf/server.properties", "..%2Fconf%2Fserver.properties",
                    "%2e%2e/conf/apps.json", "%2Fetc%2Fpasswd", "link.mp4", ".hidden.mp4",
                    f"{name}%00.txt", "nothing.mp4"):
        status, _, _ = await http(server, "GET", f"/client/records/{attempt}")
        assert status == 404, attempt


@pytest.mark.usefixtures("loopback")
async def test_rest_start_stop_and_find_all(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    write_plugin(home, "events", EVENTS)
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    stream, _ = await publish(client, "cam")
    player = await client.play("cam")
    await player.wait_status("PLAYING")
    assert (await http(server, "POST", "/rest-api/recorder/find_all", {}))[0] == 404
    status, started, _ = await http(server, "POST", "/rest-api/stream/startRecording", {
        "mediaSessionId": stream.media_session_id, "config": {"fileTemplate": "first-{streamName}"}})
    assert status == 200 and started["fileName"] == "first-cam.mp4"
    assert started["mediaSessionId"] == stream.media_session_id and started["streamName"] == "cam"
    await asyncio.sleep(2)
    status, found, _ = await http(server, "GET", "/rest-api/recorder/find_all")
    assert status == 200 and [r["fileName"] for r in found] == ["first-cam.mp4"]
    assert found[0]["bytes"] > 0 and found[0]["startTime"] >= started["startTime"]
    # a start on a stream already recording stops that file and starts a new one
    status, second, _ = await http(server, "POST", "/rest-api/recorder/startup", {
        "mediaSessionId": stream.media_session_id, "config": {"fileTemplate": "second-{streamName}"}})
    assert status == 200 and second["fileName"] == "second-cam.mp4"
    await asyncio.sleep(2)
    status, stopped, _ = await http(server, "POST", "/rest-api/stream/stopRecording",
                                    {"mediaSessionId": stream.media_session_id})
    assert status == 200 and stopped["fileName"] == "second-cam.mp4"
    await settled(server)
    finished = await wait_events(home, "finished", 2)
    assert [e["file"] for e in finished] == ["first-cam.mp4", "second-cam.mp4"]
    for event in finished:
        media = decode(home.records / event["file"])
        assert media["codecs"] == {"video": "h264", "audio": "aac"} and media["video"] > 40
    assert (await http(server, "POST", "/rest-api/recorder/find_all", {}))[0] == 404
    assert stream.status == "PUBLISHING" and player.status == "PLAYING"
    assert (await http(server, "POST", "/rest-api/recorder/terminate",
                       {"mediaSessionId": stream.media_session_id}))[:2] == (404, {
                           "status": 404, "message": "Recording not found"})


@pytest.mark.usefixtures("loopback")
async def test_rest_refusals_name_what_is_wrong(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    stream, _ = await publish(client, "cam")
    player = await client.play("cam")
    await player.wait_status("PLAYING")
    start = "/rest-api/stream/startRecording"
    cases = [
        ({"mediaSessionId": "nobody"}, 404, "Stream not found", None),
        ({"mediaSessionId": player.media_session_id}, 400,
         f"mediaSessionId: {player.media_session_id} is a player", "mediaSessionId"),
        ({"mediaSessionId": stream.media_session_id, "config": {"rotation": "soon"}}, 400,
         "config.rotation: expected seconds (20) or megabytes (20M), got 'soon'", "config.rotation"),
        ({"mediaSessionId": stream.media_session_id, "config": {"fileTemplate": ""}}, 400,
         "config.fileTemplate: expected a non-empty string", "config.fileTemplate"),
        ({"mediaSessionId": stream.media_session_id, "config": {"name": "x"}}, 400,
         "unknown field 'config.name'", "config.name"),
        ({"mediaSessionId": stream.media_session_id, "config": []}, 400,
         "config: expected an object, got array", "config"),
        ({}, 400, "mediaSessionId is required", "mediaSessionId"),
    ]
    for body, status, message, field in cases:
        got, answer, _ = await http(server, "POST", start, body)
        assert got == status and answer["message"].startswith(message), (body, answer)
        if field is not None:
            assert answer["field"] == field
    assert server.http_app[ENGINE].recordings.active == {}
    assert (await http(server, "POST", "/rest-api/stream/stopRecording",
                       {"mediaSessionId": "nobody"}))[:2] == (404, {"status": 404,
                                                                     "message": "Stream not found"})


@pytest.mark.usefixtures("loopback")
async def test_records_find_all_and_delete(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    server = await start_server(home)
    assert (await http(server, "GET", "/rest-api/records/find_all"))[:2] == (200, [])
    client: WcsClient = await connect_client(server)
    first, _ = await publish(client, "one", record=True)
    await asyncio.sleep(2)
    await client.stop(first)
    second, _ = await publish(client, "two", "VP8", record=True)
    await asyncio.sleep(2)
    status, files, _ = await http(server, "GET", "/rest-api/records/find_all")
    assert [f["fileName"] for f in files] == [first.last["recordName"]], "only finished files"
    await client.stop(second)
    await settled(server)
    status, files, _ = await http(server, "POST", "/rest-api/records/find_all", {})
    assert [f["fileName"] for f in files] == [second.last["recordName"], first.last["recordName"]]
    webm, mp4 = files
    assert (mp4["videoCodec"], mp4["audioCodec"], webm["videoCodec"], webm["audioCodec"]) == (
        "H264", "AAC", "VP8", "opus")
    assert 1.5 < mp4["duration"] < 2.8 and mp4["size"] == (home.records / mp4["fileName"]).stat().st_size
    assert (mp4["width"], mp4["height"]) == (320, 240) and mp4["url"] == f"/client/records/{mp4['fileName']}"
    sentinel = home.root / "conf" / "keep.txt"
    sentinel.write_text("outside records/")
    for bad in ("../conf/keep.txt", ".hidden", "nothing.mp4", str(sentinel)):
        assert (await http(server, "POST", "/rest-api/records/delete", {"fileName": bad}))[0] == 404
    status, answer, _ = await http(server, "POST", "/rest-api/records/delete",
                                   {"fileName": mp4["fileName"]})
    assert (status, answer) == (200, {"deleted": mp4["fileName"]})
    assert not (home.records / mp4["fileName"]).exists()
    assert sentinel.exists()


@pytest.mark.usefixtures("loopback")
async def test_a_file_being_recorded_cannot_be_deleted(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    server = await start_server(home)
    stream, _ = await publish(await connect_client(server), "cam", record=True)
    await asyncio.sleep(1.5)
    status, answer, _ = await http(server, "POST", "/rest-api/records/delete",
                                   {"fileName": stream.last["recordName"]})
    assert status == 409 and "is being recorded" in answer["message"]
    assert (home.records / stream.last["recordName"]).exists()


@pytest.mark.usefixtures("loopback")
async def test_downloads_honour_rest_auth_and_recordings_show_in_prometheus(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    server = await start_server(home, rest_api_token="s3cret")
    bearer = {"Authorization": "Bearer s3cret"}
    stream, _ = await publish(await connect_client(server), "cam", record=True)
    await asyncio.sleep(2)
    _, metrics, _ = await http(server, "GET", "/metrics", headers=bearer)
    text = metrics.decode()
    assert "hookcast_recordings_active 1.0" in text
    (written,) = [float(line.split()[1]) for line in text.splitlines()
                  if line.startswith("hookcast_recording_bytes_total ")]
    assert written > 10_000
    await server.http_app[ENGINE].terminate([server.http_app[ENGINE].registry.publisher("cam")])
    await settled(server)
    path = f"/client/records/{stream.last['recordName']}"
    status, _, headers = await http(server, "GET", path)
    assert status == 401 and "Bearer" in headers["WWW-Authenticate"]
    status, body, _ = await http(server, "GET", path, headers=bearer)
    assert status == 200 and body == (home.records / stream.last["recordName"]).read_bytes()


class Blackout:
    """The publisher's leg loses every video packet for a while (and every video
    retransmission all along, so NACK cannot repair the hole): frames are lost upstream."""

    def __init__(self, stream: ClientStream) -> None:
        sdp = stream.pc.localDescription.sdp
        video = sdp[sdp.index("m=video"):]
        line = video.split("\r\n")[0]
        self.video_types = {int(t) for t in line.split()[3:]}
        self.rtx_types = {int(x.split()[0].split(":")[1]) for x in video.split("\r\n")
                          if x.startswith("a=rtpmap:") and " rtx/" in x}
        sender = next(s for s in stream.pc.getSenders() if s.kind == "video")
        self.connection = sender.transport.transport._connection
        self.original = self.connection.sendto
        self.dark = False
        self.dropped = 0
        self.connection.sendto = self.sendto

    async def sendto(self, data: bytes, component: int) -> None:
        if len(data) > 12 and 127 < data[0] < 192 and not 191 < data[1] < 209:
            payload_type = data[1] & 0x7F
            if payload_type in self.rtx_types or (self.dark and payload_type in self.video_types):
                self.dropped += 1
                return
        await self.original(data, component)


@pytest.mark.usefixtures("loopback")
async def test_a_recording_goes_on_at_a_keyframe_after_frames_are_lost_upstream(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    """The recorder keeps the same keyframe gate as every player: after frames the
    server could not get (a hole NACK cannot fill), the file goes on at the next
    keyframe, never at a picture whose references were lost."""
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    with captured_h264() as published:
        stream, _ = await publish(client, "cam", record=True)
        record_name = stream.last["recordName"]
        blackout = Blackout(stream)
        await asyncio.sleep(2)
        blackout.dark = True
        await asyncio.sleep(0.6)
        blackout.dark = False
        await asyncio.sleep(3)
        await client.stop(stream)
    await settled(server)
    assert blackout.dropped > 10
    path = home.records / record_name
    pictures = [slices(nals) for nals in published]
    keyframes = {i for i, nals in enumerate(published) if any(n and n[0] & 0x1F == 5 for n in nals)}
    numbers = [pictures.index(picture) for picture in recorded_h264(str(path))]
    resumed = [b for a, b in itertools.pairwise(numbers) if b != a + 1]
    assert resumed, f"no hole in the recording: {numbers}"
    assert all(number in keyframes for number in resumed), (
        f"after a hole the file goes on at pictures {resumed}, keyframes are {sorted(keyframes)}")
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            assert frame.width == 320
