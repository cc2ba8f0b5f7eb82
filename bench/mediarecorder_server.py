"""Baseline for bench/recording.py: publishes recorded by aiortc's stock MediaRecorder.

Just enough WCS signalling for WcsClient (``connection``, ``publishStream`` ->
``setRemoteSDP`` + PUBLISHING, ``ping``). Media: aiortc as it comes (no
hookcast.rtc.aiortc): the receiver decodes video and audio, and
``aiortc.contrib.media.MediaRecorder`` re-encodes both into the file (libvpx + Opus
for WebM, libx264 + AAC for MP4). With ``--blackhole`` the decoded frames go to a
``MediaBlackhole`` instead: the same receive and decode, no recording, so the
difference between the two is what MediaRecorder costs.

    python bench/mediarecorder_server.py --format webm --folder /tmp/x [--blackhole]
        prints "READY <port>" once listening on 127.0.0.1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import uuid
from pathlib import Path
from typing import Any

import aioice.ice
from aiohttp import WSMsgType, web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaBlackhole, MediaRecorder

HOST = "127.0.0.1"


class Recorders:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sinks: list[Any] = []
        self.pcs: list[RTCPeerConnection] = []

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)

        async def send(message: str, *data: Any) -> None:
            if not ws.closed:
                await ws.send_str(json.dumps({"message": message, "data": list(data)}))

        async for frame in ws:
            if frame.type is not WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            name, payload = message.get("message"), (message.get("data") or [None])[0]
            if name == "connection":
                await send("getUserData", {**payload, "sessionId": str(uuid.uuid4())})
            elif name == "ping":
                await send("pong", None)
            elif name == "publishStream":
                await self.publish(payload, send)
        return ws

    async def publish(self, payload: dict[str, Any], send: Any) -> None:
        stream = {k: payload[k] for k in ("mediaSessionId", "name", "published")}
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)
        if self.args.blackhole:
            sink: Any = MediaBlackhole()
        else:
            path = Path(self.args.folder) / f"{stream['name']}.{self.args.format}"
            sink = MediaRecorder(str(path))
        self.sinks.append(sink)

        @pc.on("track")
        def on_track(track: Any) -> None:
            sink.addTrack(track)

        @pc.on("connectionstatechange")
        async def changed() -> None:
            if pc.connectionState == "connected":
                await sink.start()
                await send("notifyStreamStatusEvent", {**stream, "status": "PUBLISHING"})

        await pc.setRemoteDescription(RTCSessionDescription(sdp=payload["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await send("setRemoteSDP", stream["mediaSessionId"], pc.localDescription.sdp)

    async def close(self) -> None:
        for sink in self.sinks:
            await sink.stop()
        for pc in self.pcs:
            await pc.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--format", choices=("webm", "mp4"), default="webm")
    parser.add_argument("--folder", default=".")
    parser.add_argument("--blackhole", action="store_true")
    args = parser.parse_args()
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [HOST]
    recorders = Recorders(args)
    app = web.Application()
    app.add_routes([web.get("/", recorders.handle)])
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, HOST, args.port).start()
    print(f"READY {runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await recorders.close()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
