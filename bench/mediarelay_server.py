"""Baseline for bench/fanout.py: the same fan-out served by aiortc's stock MediaRelay.

Just enough WCS signalling for hookcast.signalling.client.WcsClient: ``connection`` -> ``getUserData``;
``publishStream`` / ``playStream`` -> ``setRemoteSDP`` then ``notifyStreamStatusEvent``
(PUBLISHING / PLAYING once the peer connection is connected); ``ping`` -> ``pong``.

Media: aiortc as it comes, without hookcast.rtc.aiortc.install(). The publisher's VP8 is
decoded once (aiortc's receiver), ``aiortc.contrib.media.MediaRelay`` shares the
decoded frames, and every player's RTCRtpSender re-encodes them with its own VP8
encoder. That is aiortc's documented way to serve one source to many viewers.

The encoders are pinned to --bitrate (aiortc's VP8 encoder otherwise starts at
500 kb/s and follows REMB within 250 kb/s-1.5 Mb/s), so the players receive about the
bitrate the publisher sends, as they do from the relay. ICE: host candidates on
127.0.0.1 only, no STUN (RTCConfiguration(iceServers=[])).

    python bench/mediarelay_server.py --port 0 --bitrate 1200000
        prints "READY <port>" on stdout once listening on 127.0.0.1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import uuid
from typing import Any

import aioice.ice
from aiohttp import WSMsgType, web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.codecs import vpx
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger("mediarelay_server")
HOST = "127.0.0.1"


def loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return [HOST]


def force_vp8(transceiver: Any) -> None:
    codecs = RTCRtpSender.getCapabilities("video").codecs
    transceiver.setCodecPreferences(
        [c for c in codecs if c.mimeType.lower() in ("video/vp8", "video/rtx")]
    )


class Drain:
    """Reads the relay continuously, so decoded frames never pile up while no player
    is watching (aiortc's track queue is unbounded). The MediaRelay reads its source
    only while a proxy is being read; this unbuffered proxy is that reader. It costs a
    wake-up per frame and no encoding."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.task = asyncio.create_task(self._run(track))

    @staticmethod
    async def _run(track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
        except MediaStreamError:
            pass


class Baseline:
    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.sources: dict[str, MediaStreamTrack] = {}
        self.drains: list[Drain] = []

    async def answer(self, pc: RTCPeerConnection, offer: str) -> str:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        session_id = str(uuid.uuid4())
        mine: list[RTCPeerConnection] = []

        async def send(message: str, *data: Any) -> None:
            if not ws.closed:
                await ws.send_str(json.dumps({"message": message, "data": list(data)}))

        def status_on_connect(pc: RTCPeerConnection, stream: dict[str, Any], status: str) -> None:
            @pc.on("connectionstatechange")
            async def changed() -> None:
                if pc.connectionState == "connected":
                    await send("notifyStreamStatusEvent", {**stream, "status": status})
                elif pc.connectionState == "failed":
                    await send("notifyStreamStatusEvent", {**stream, "status": "FAILED"})

        async def publish(stream: dict[str, Any], sdp: str) -> None:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            mine.append(pc)
            force_vp8(pc.addTransceiver("video", direction="recvonly"))
            status_on_connect(pc, stream, "PUBLISHING")
            answer = await self.answer(pc, sdp)
            source = pc.getTransceivers()[0].receiver.track
            self.sources[stream["name"]] = source
            self.drains.append(Drain(self.relay.subscribe(source, buffered=False)))
            await send("setRemoteSDP", stream["mediaSessionId"], answer)

        async def play(stream: dict[str, Any], sdp: str) -> None:
            source = self.sources.get(stream["name"])
            if source is None:
                await send("notifyStreamStatusEvent",
                           {**stream, "status": "FAILED", "info": "Stream not found"})
                return
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            mine.append(pc)
            force_vp8(pc.addTransceiver(self.relay.subscribe(source), direction="sendonly"))
            status_on_connect(pc, stream, "PLAYING")
            await send("setRemoteSDP", stream["mediaSessionId"], await self.answer(pc, sdp))

        async def guarded(work: Any, stream: dict[str, Any], sdp: str) -> None:
            try:
                await work(stream, sdp)
            except Exception as error:
                log.exception("%s %s failed", stream["name"], stream["mediaSessionId"])
                await send("notifyStreamStatusEvent",
                           {**stream, "status": "FAILED", "info": repr(error)})

        tasks: set[asyncio.Task[None]] = set()
        try:
            async for frame in ws:
                if frame.type is not WSMsgType.TEXT:
                    continue
                message = json.loads(frame.data)
                name, payload = message.get("message"), (message.get("data") or [None])[0]
                if name == "connection":
                    await send("getUserData", {**payload, "sessionId": session_id})
                elif name in ("publishStream", "playStream"):
                    stream = {k: payload[k] for k in ("mediaSessionId", "name", "published")}
                    work = publish if name == "publishStream" else play
                    task = asyncio.create_task(guarded(work, stream, payload["sdp"]))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                elif name == "ping":
                    await send("pong", None)
                elif name in ("unPublishStream", "stopStream"):
                    stream = {k: payload.get(k) for k in ("mediaSessionId", "name", "published")}
                    status = "UNPUBLISHED" if name == "unPublishStream" else "STOPPED"
                    await send("notifyStreamStatusEvent", {**stream, "status": status})
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*(pc.close() for pc in mine), return_exceptions=True)
        return ws


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bitrate", type=int, default=1_200_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    aioice.ice.get_host_addresses = loopback_only
    vpx.DEFAULT_BITRATE = vpx.MIN_BITRATE = vpx.MAX_BITRATE = args.bitrate
    baseline = Baseline()
    await serve([web.get("/", baseline.handle), web.get("/websocket", baseline.handle)],
                args.port)


async def serve(routes: list[web.RouteDef], port: int = 0) -> None:
    """Serve ``routes`` on 127.0.0.1, say "READY <port>" on stdout, and run until
    SIGINT or SIGTERM (the benchmark's way to stop a baseline server)."""
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, HOST, port).start()
    print(f"READY {runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
