"""WHIP and WHEP against a real server on 127.0.0.1: aiortc as a WHIP publisher and a
WHEP player (its own offers, with and without candidates), FFmpeg's WHIP muxer (PyAV's
bundled FFmpeg: an independent client), WCS players and publishers on the other side,
and every error status."""

from __future__ import annotations

import asyncio
import fractions
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from hookcast.server import Server
from hookcast.signalling.client import WcsError
from tests.backend import Backend
from tests.conftest import make_home
from tests.core.rtc.relay_harness import (
    CountingAudioTrack,
    DecodingSink,
    PatternVideoTrack,
    wait_for,
)
from tests.plugins.test_pull import play, publish, rest
from tests.plugins.test_rest_hooks import use_backend

Start = Callable[..., Any]
pytestmark = pytest.mark.usefixtures("loopback", "relay_installed")
SDP = {"Content-Type": "application/sdp"}


def url(server: Server, path: str) -> str:
    return f"http://127.0.0.1:{server.http_port}{path}"


def without_candidates(sdp: str) -> str:
    return "".join(line + "\r\n" for line in sdp.splitlines()
                   if not line.startswith(("a=candidate:", "a=end-of-candidates")))


async def offer_of(pc: RTCPeerConnection) -> str:
    await pc.setLocalDescription(await pc.createOffer())
    return str(pc.localDescription.sdp)


async def post(server: Server, path: str, body: str, **headers: str) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.post(url(server, path), data=body.encode(),
                             headers={**SDP, **headers}) as response:
            return response.status, await response.text(), response.headers


class WhipPublisher:
    """aiortc publishing over WHIP: a moving pattern and silence."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.video, self.audio = PatternVideoTrack(), CountingAudioTrack()
        self.pc.addTransceiver(self.video, "sendonly")
        self.pc.addTransceiver(self.audio, "sendonly")
        self.location = ""
        self.etag = ""

    async def start(self, server: Server, name: str, candidates: bool = True,
                    **headers: str) -> tuple[int, str, Any]:
        sdp = await offer_of(self.pc)
        status, body, answer_headers = await post(
            server, f"/whip/{name}", sdp if candidates else without_candidates(sdp), **headers)
        if status == 201:
            self.location, self.etag = answer_headers["Location"], answer_headers["ETag"]
            await self.pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
        return status, body, answer_headers

    async def delete(self) -> int:
        async with aiohttp.ClientSession() as http:
            async with http.delete(self.location) as response:
                return response.status

    async def close(self) -> None:
        await self.pc.close()


class WhepPlayer:
    """aiortc playing over WHEP; its tracks decoded."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("video", "recvonly")
        self.pc.addTransceiver("audio", "recvonly")
        self.sinks: dict[str, DecodingSink] = {}
        self.location = ""

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            self.kinds.append(track.kind)
            self.tracks[track.kind] = track

        self.kinds: list[str] = []
        self.tracks: dict[str, Any] = {}

    async def start(self, server: Server, name: str, candidates: bool = True,
                    **headers: str) -> tuple[int, str]:
        sdp = await offer_of(self.pc)
        status, body, answer_headers = await post(
            server, f"/whep/{name}", sdp if candidates else without_candidates(sdp), **headers)
        if status == 201:
            self.location = answer_headers["Location"]
            await self.pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
            mimes = {m.group(1): m.group(2) for m in re.finditer(
                r"m=(audio|video) .*?a=rtpmap:\d+ ([A-Za-z0-9]+)/", body, re.S)}
            for kind, track in self.tracks.items():
                self.sinks[kind] = DecodingSink(track, f"{kind}/{mimes[kind]}")
        return status, body

    async def close(self) -> None:
        await self.pc.close()


async def start(start_server: Start, tmp_path: Path, name: str = "s",
                backend: Backend | None = None, **properties: str) -> Server:
    home = make_home(tmp_path / name)
    if backend is not None:  # a backend that refuses fails the stream (restOnError FAIL)
        use_backend(home, backend, rest_client_config={
            "publishStream": {"restOnError": "FAIL"}, "playStream": {"restOnError": "FAIL"}})
    server: Server = await start_server(home, **properties)
    return server


async def test_whip_publish_plays_in_wcs_players_and_delete_ends_it(
        start_server: Start, connect_client: Callable[..., Any], tmp_path: Path) -> None:
    server = await start(start_server, tmp_path)
    publisher = WhipPublisher()
    try:
        status, answer, headers = await publisher.start(server, "obs-cam")
        assert status == 201, answer
        assert headers["Content-Type"].startswith("application/sdp")
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/whip-sessions/[\w-]{32,}",
                            headers["Location"])
        assert headers["ETag"].startswith('"')
        assert "a=candidate:" in answer  # the server does not trickle
        viewer = await connect_client(server)
        player, sinks = await play(viewer, "obs-cam")
        assert await wait_for(lambda: sinks["video"].frames >= 10, 15), "a WCS player decodes"
        assert sinks["video"].errors == 0
        status_code, found = await rest(server, "stream/find", {"name": "obs-cam",
                                                                "published": True})
        assert status_code == 200 and found[0]["status"] == "PUBLISHING"
        assert await publisher.delete() == 200
        await player.wait_status("STOPPED", timeout=10)
        assert player.info == "Stopped by publisher stop"
        status_code, _ = await rest(server, "stream/find", {"name": "obs-cam",
                                                            "published": True})
        assert status_code == 404
        assert await publisher.delete() == 404  # gone
    finally:
        await publisher.close()


async def test_candidate_less_offers_connect_by_peer_reflexive_candidates(
        start_server: Start, connect_client: Callable[..., Any], tmp_path: Path) -> None:
    """OBS since 30.2 and FFmpeg send no candidate: the server learns their address
    from their connectivity checks (a WHIP publisher and a WHEP player)."""
    server = await start(start_server, tmp_path)
    publisher, player = WhipPublisher(), WhepPlayer()
    try:
        status, answer, _ = await publisher.start(server, "bare", candidates=False)
        assert status == 201, answer
        status, answer = await player.start(server, "bare", candidates=False)
        assert status == 201, answer
        assert await wait_for(lambda: "video" in player.sinks
                              and player.sinks["video"].frames >= 10, 15), "WHEP decodes"
        assert player.sinks["video"].errors == 0
    finally:
        await player.close()
        await publisher.close()


async def test_whep_plays_a_wcs_published_stream(
        start_server: Start, connect_client: Callable[..., Any], tmp_path: Path) -> None:
    server = await start(start_server, tmp_path)
    await publish(await connect_client(server), "sdk-cam")
    player = WhepPlayer()
    try:
        status, answer = await player.start(server, "sdk-cam")
        assert status == 201, answer
        assert await wait_for(lambda: "video" in player.sinks
                              and player.sinks["video"].frames >= 10, 15), "WHEP decodes"
        assert await wait_for(lambda: "audio" in player.sinks
                              and player.sinks["audio"].frames >= 10, 15), "WHEP audio"
        status_code, found = await rest(server, "stream/find", {"name": "sdk-cam",
                                                                "published": False})
        assert status_code == 200 and len(found) == 1
        async with aiohttp.ClientSession() as http:
            async with http.delete(player.location) as response:
                assert response.status == 200
        status_code, _ = await rest(server, "stream/find", {"name": "sdk-cam",
                                                            "published": False})
        assert status_code == 404
    finally:
        await player.close()


async def test_error_statuses(start_server: Start, connect_client: Callable[..., Any],
                              tmp_path: Path) -> None:
    server = await start(start_server, tmp_path)
    offer = await offer_of(WhipPublisher().pc)
    # a wrong content type, a malformed offer, a bad name
    async with aiohttp.ClientSession() as http:
        async with http.post(url(server, "/whip/x"), data=offer.encode(),
                             headers={"Content-Type": "text/plain"}) as response:
            assert response.status == 415 and response.headers["Accept-Post"] == "application/sdp"
    assert (await post(server, "/whip/x", "hello"))[0] == 400
    assert (await post(server, "/whip/x", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"))[0] == 400
    # simulcast: 422 with a problem body
    status, body, headers = await post(server, "/whip/x", offer.replace(
        "a=sendonly", "a=sendonly\r\na=rid:h send\r\na=rid:l send\r\na=simulcast:send h;l", 1))
    assert status == 422 and headers["Content-Type"].startswith("application/problem+json")
    assert "simulcast" in body
    # no common codec: a video-only offer of a codec hookcast does not relay
    status, body, headers = await post(server, "/whip/x", _only_codec(offer, "AV1"))
    assert status == 422 and "No common codecs" in body, body
    # WHEP of a name nobody publishes
    whep_offer = await offer_of(WhepPlayer().pc)
    status, body, _ = await post(server, "/whep/nobody", whep_offer)
    assert status == 404 and "Stream not found" in body
    # a name published already (by a WCS client): 409
    await publish(await connect_client(server), "taken")
    status, body, _ = await post(server, "/whip/taken", offer)
    assert status == 409 and "already in use" in body
    # OPTIONS: Accept-Post, and CORS for a browser page
    async with aiohttp.ClientSession() as http:
        async with http.options(url(server, "/whip/x"),
                                headers={"Origin": "https://studio.example"}) as response:
            assert response.status == 204
            assert response.headers["Accept-Post"] == "application/sdp"
            assert response.headers["Access-Control-Allow-Origin"] == "https://studio.example"
            assert "Location" in response.headers["Access-Control-Expose-Headers"]


def _only_codec(sdp: str, codec: str) -> str:
    """The offer's video section only, its codecs renamed ``codec`` (none relayable)."""
    head, *sections = re.split(r"(?=^m=)", sdp, flags=re.M)
    video = next(s for s in sections if s.startswith("m=video"))
    video = re.sub(r"a=rtpmap:(\d+) (VP8|H264|rtx)/", rf"a=rtpmap:\1 {codec}/", video)
    head = re.sub(r"a=group:BUNDLE .*", "a=group:BUNDLE " + re.search(
        r"a=mid:(\S+)", video).group(1), head)  # type: ignore[union-attr]
    return head + video


async def test_token_and_backend_refusal(start_server: Start, tmp_path: Path,
                                         backend: Backend) -> None:
    """whip_token: a wrong or missing Bearer token is 401; the token reaches the
    publishStream REST hook as custom.bearerToken, and the backend's refusal is 401."""
    server = await start(start_server, tmp_path, backend=backend, whip_token="t0ken")
    offer = await offer_of(WhipPublisher().pc)
    status, _, headers = await post(server, "/whip/cam", offer)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    status, _, _ = await post(server, "/whip/cam", offer, Authorization="Bearer wrong")
    assert status == 401
    backend.answers["publishStream"] = (403, {"reason": "no"}, 0.0)
    status, body, headers = await post(server, "/whip/cam", offer, Authorization="Bearer t0ken")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), body
    hooked = backend.bodies("publishStream")
    assert hooked and hooked[-1]["custom"]["bearerToken"] == "t0ken"
    assert hooked[-1]["name"] == "cam"
    backend.answers.pop("publishStream")
    publisher = WhipPublisher()
    try:
        status, body, _ = await publisher.start(server, "cam", Authorization="Bearer t0ken")
        assert status == 201, body
    finally:
        await publisher.close()


async def test_patch_trickle_and_ice_restart(start_server: Start, tmp_path: Path) -> None:
    server = await start(start_server, tmp_path)
    publisher = WhipPublisher()
    try:
        status, body, _ = await publisher.start(server, "trickled", candidates=False)
        assert status == 201, body
        candidate = next(line for line in publisher.pc.localDescription.sdp.splitlines()
                         if line.startswith("a=candidate:"))
        mid = re.search(r"a=mid:(\S+)", publisher.pc.localDescription.sdp).group(1)  # type: ignore[union-attr]
        fragment = f"a=mid:{mid}\r\n{candidate}\r\n"
        frag = {"Content-Type": "application/trickle-ice-sdpfrag"}
        async with aiohttp.ClientSession() as http:
            async with http.patch(publisher.location, data=fragment, headers=frag) as r:
                assert r.status == 428
            async with http.patch(publisher.location, data=fragment,
                                  headers={**frag, "If-Match": '"stale"'}) as r:
                assert r.status == 412
            async with http.patch(publisher.location, data=fragment,
                                  headers={**frag, "If-Match": publisher.etag}) as r:
                assert r.status == 204
            # RFC 8840 fragments carry the session's credentials: still a trickle
            sdp = publisher.pc.localDescription.sdp
            own = "".join(f"{line}\r\n" for line in sdp.splitlines()
                          if line.startswith(("a=ice-ufrag:", "a=ice-pwd:")))
            async with http.patch(publisher.location, data=own + fragment,
                                  headers={**frag, "If-Match": publisher.etag}) as r:
                assert r.status == 204
            restart = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef0123456789\r\n" + fragment
            for match in ("*", publisher.etag):  # RFC 9725's If-Match: *, or new credentials
                async with http.patch(publisher.location, data=restart,
                                      headers={**frag, "If-Match": match}) as r:
                    assert r.status == 422
                    assert "ICE restarts are not supported" in (await r.json())["title"]
    finally:
        await publisher.close()


async def test_at_capacity_503_with_retry_after(start_server: Start, tmp_path: Path) -> None:
    """An offer whose client never connects stays pending: with room for one pending
    stream per address, the next one is told to come back later."""
    server = await start(start_server, tmp_path, max_pending_streams_per_address="1")
    offer = without_candidates(await offer_of(WhipPublisher().pc))
    status, _, _ = await post(server, "/whip/first", offer)
    assert status == 201
    status, body, headers = await post(server, "/whip/second", offer)
    assert status == 503 and int(headers["Retry-After"]) > 0, body


def _ffmpeg_whip(endpoint: str, seconds: float, done: threading.Event,
                 token: str = "") -> int:
    """FFmpeg's WHIP muxer (PyAV's bundled FFmpeg) publishing H.264 baseline + Opus;
    returns the video frames it sent."""
    options = {"authorization": token} if token else {}
    out = av.open(endpoint, "w", format="whip", options=options,
                  container_options={"strict": "experimental"})
    video = out.add_stream("libx264", rate=30)
    video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
    video.options = {"profile": "baseline", "bf": "0", "tune": "zerolatency",
                     "preset": "ultrafast", "g": "30"}
    audio = out.add_stream("libopus", rate=48000)
    audio.layout = "stereo"
    sent, started = 0, time.monotonic()
    try:
        samples = 0
        for index in range(int(seconds * 30)):
            if done.is_set():
                break
            frame = av.VideoFrame(320, 240, "yuv420p")
            luma = frame.planes[0]
            shift = (index * 4) % 256
            luma.update(bytes((x + shift) & 0xFF for x in range(luma.line_size)) * 240)
            for plane in frame.planes[1:]:
                plane.update(bytes([128]) * plane.buffer_size)
            frame.pts, frame.time_base = index, fractions.Fraction(1, 30)
            for packet in video.encode(frame):
                out.mux(packet)
                sent += 1
            while samples < (index + 1) * 1600:
                sound = av.AudioFrame(format="s16", layout="stereo", samples=960)
                sound.planes[0].update(bytes(sound.planes[0].buffer_size))
                sound.sample_rate, sound.pts = 48000, samples
                for packet in audio.encode(sound):
                    out.mux(packet)
                samples += 960
            delay = started + (index + 1) / 30 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    finally:
        out.close()  # sends DELETE
    return sent


async def test_ffmpeg_whip_muxer_publishes_records_and_deletes(
        start_server: Start, connect_client: Callable[..., Any], tmp_path: Path) -> None:
    """An independent client: FFmpeg's own WHIP muxer, candidate-less offer with
    a=setup:passive, H.264 with RTX, Opus stereo. A WCS player decodes what it sends,
    a recording of it decodes, and closing the muxer (DELETE) ends the stream."""
    server = await start(start_server, tmp_path, whip_token="ff")
    done = threading.Event()
    muxing = asyncio.ensure_future(asyncio.to_thread(
        _ffmpeg_whip, url(server, "/whip/ffmpeg"), 8.0, done, "ff"))
    try:
        async def published() -> bool:
            status, _ = await rest(server, "stream/find", {"name": "ffmpeg", "published": True})
            return status == 200
        deadline = time.monotonic() + 15
        while not await published():
            assert time.monotonic() < deadline and not muxing.done(), "FFmpeg published"
            await asyncio.sleep(0.1)
        _, found = await rest(server, "stream/find", {"name": "ffmpeg", "published": True})
        assert found[0]["videoCodec"] == "H264" and found[0]["audioCodec"] == "opus"
        await rest(server, "stream/startRecording",
                   {"mediaSessionId": found[0]["mediaSessionId"]})
        viewer = await connect_client(server)
        player, sinks = await play(viewer, "ffmpeg")
        assert await wait_for(lambda: sinks["video"].frames >= 30, 15), "a WCS player decodes"
        assert sinks["video"].errors == 0
        await asyncio.sleep(1.5)
        await rest(server, "stream/stopRecording", {"mediaSessionId": found[0]["mediaSessionId"]})
        sent = await asyncio.wait_for(muxing, 30)
        assert sent > 100
        await player.wait_status("STOPPED", timeout=10)  # the muxer's DELETE
    finally:
        done.set()
        await asyncio.gather(muxing, return_exceptions=True)
    files = sorted(server.home.records.glob("*.mp4")) + sorted(server.home.records.glob("*.webm"))
    assert files, "recorded"
    with av.open(str(files[0])) as recorded:
        frames = sum(1 for _ in recorded.decode(video=0))
    assert frames >= 30


async def test_whip_stream_is_ordinary_for_rest_and_wcs(
        start_server: Start, connect_client: Callable[..., Any], tmp_path: Path) -> None:
    """REST terminate ends a WHIP publisher; a WCS publish of its name meanwhile is
    refused (the name is in use)."""
    server = await start(start_server, tmp_path)
    publisher = WhipPublisher()
    try:
        assert (await publisher.start(server, "ordinary"))[0] == 201
        client = await connect_client(server)
        with pytest.raises(WcsError, match="already in use"):
            stream = await client.publish("ordinary", [PatternVideoTrack()])
            await stream.wait_status("PUBLISHING", timeout=10)
        status, found = await rest(server, "stream/find", {"name": "ordinary",
                                                           "published": True})
        assert status == 200
        status, _ = await rest(server, "stream/terminate",
                               {"mediaSessionId": found[0]["mediaSessionId"]})
        assert status == 200
        assert await publisher.delete() == 404  # the session ended with its stream
    finally:
        await publisher.close()


async def test_a_connectivity_check_without_priority_is_taken(
        start_server: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Older FFmpeg WHIP muxers send checks without PRIORITY from an address their offer
    never listed: the server answers it, learns the address (peer-reflexive) and checks
    it in turn, instead of raising in aioice."""
    import os
    import socket

    from aioice import stun

    server = await start(start_server, tmp_path)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(PatternVideoTrack(), "sendonly")
    offer = await offer_of(pc)
    await pc.close()
    status, answer, _ = await post(server, "/whip/old-ffmpeg", without_candidates(offer))
    assert status == 201
    ours = re.search(r"a=ice-ufrag:(\S+)", offer).group(1)  # type: ignore[union-attr]
    theirs = re.search(r"a=ice-ufrag:(\S+)", answer).group(1)  # type: ignore[union-attr]
    password = re.search(r"a=ice-pwd:(\S+)", answer).group(1)  # type: ignore[union-attr]
    host, port = re.search(r"a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ host",
                           answer).groups()  # type: ignore[union-attr]
    check = stun.Message(message_method=stun.Method.BINDING,
                         message_class=stun.Class.REQUEST)
    check.attributes["USERNAME"] = f"{theirs}:{ours}"
    check.attributes["ICE-CONTROLLING"] = int.from_bytes(os.urandom(8), "big")
    check.attributes["USE-CANDIDATE"] = None
    check.add_message_integrity(password.encode())
    check.add_fingerprint()
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.setblocking(False)
        await loop.sock_sendto(udp, bytes(check), (host, int(port)))
        seen = set()
        deadline = time.monotonic() + 5
        while seen != {stun.Class.RESPONSE, stun.Class.REQUEST}:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the server answered and checked back: saw {seen}"
            data = await asyncio.wait_for(loop.sock_recv(udp, 2048), remaining)
            seen.add(stun.parse_message(data).message_class)
    assert "KeyError" not in caplog.text and "PRIORITY" not in caplog.text


async def test_a_client_gone_without_delete_ends_its_stream(
        start_server: Start, connect_client: Callable[..., Any], tmp_path: Path) -> None:
    """A WHIP publisher that closes its connection (or vanishes) without DELETE: its
    stream ends (there is no socket whose end would end it), its players stop, its
    name is free again."""
    server = await start(start_server, tmp_path)
    publisher = WhipPublisher()
    assert (await publisher.start(server, "vanishing"))[0] == 201
    viewer = await connect_client(server)
    player, sinks = await play(viewer, "vanishing")
    assert await wait_for(lambda: sinks["video"].frames >= 5, 15)
    await publisher.close()  # DTLS close, no DELETE
    await player.wait_status("STOPPED", timeout=10)
    status, _ = await rest(server, "stream/find", {"name": "vanishing", "published": True})
    assert status == 404
    again = WhipPublisher()
    try:
        assert (await again.start(server, "vanishing"))[0] == 201
    finally:
        await again.close()
