"""Baseline for bench/vod.py: files served by aiortc's MediaPlayer and MediaRelay.

The same signalling subset as bench/mediarelay_server.py (``connection``, ``playStream``,
``stopStream``, ``ping``). ``vod-live://<file>``: one MediaPlayer per file, shared by
every viewer through ``MediaRelay`` (decoded once, re-encoded by each viewer's sender);
``vod://<file>``: a MediaPlayer of its own per viewer (decoded and re-encoded per
viewer). That is aiortc's documented way to serve a file. Video is re-encoded as VP8
at --bitrate; audio, when played, as Opus.

    python bench/mediaplayer_server.py --media DIR --bitrate 1500000
        prints "READY <port>" on stdout once listening on 127.0.0.1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import aioice.ice
from aiohttp import WSMsgType, web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs import vpx
from aiortc.contrib.media import MediaPlayer, MediaRelay
from mediarelay_server import Drain, force_vp8, loopback_only, serve

log = logging.getLogger("mediaplayer_server")


class Files:
    def __init__(self, media: Path) -> None:
        self.media = media
        self.relay = MediaRelay()
        self.shared: dict[str, MediaPlayer] = {}
        self.players: list[MediaPlayer] = []
        self.drains: list[Drain] = []

    def video(self, name: str) -> Any:
        scheme, _, file = name.partition("://")
        path = str(self.media / file)
        if scheme == "vod-live":
            player = self.shared.get(file)
            if player is None:
                player = self.shared[file] = MediaPlayer(path)
                self.drains.append(Drain(self.relay.subscribe(player.video, buffered=False)))
                if player.audio is not None:
                    self.drains.append(Drain(player.audio))
            return self.relay.subscribe(player.video)
        player = MediaPlayer(path)
        self.players.append(player)
        if player.audio is not None:
            self.drains.append(Drain(player.audio))  # decoded as it would be for a viewer
        return player.video

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        session_id = str(uuid.uuid4())
        mine: list[RTCPeerConnection] = []

        async def send(message: str, *data: Any) -> None:
            if not ws.closed:
                await ws.send_str(json.dumps({"message": message, "data": list(data)}))

        async def play(stream: dict[str, Any], sdp: str) -> None:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            mine.append(pc)
            force_vp8(pc.addTransceiver(self.video(stream["name"]), direction="sendonly"))

            @pc.on("connectionstatechange")
            async def changed() -> None:
                if pc.connectionState == "connected":
                    await send("notifyStreamStatusEvent", {**stream, "status": "PLAYING"})

            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            await send("setRemoteSDP", stream["mediaSessionId"], pc.localDescription.sdp)

        try:
            async for frame in ws:
                if frame.type is not WSMsgType.TEXT:
                    continue
                message = json.loads(frame.data)
                name, payload = message.get("message"), (message.get("data") or [None])[0]
                if name == "connection":
                    await send("getUserData", {**payload, "sessionId": session_id})
                elif name == "playStream":
                    stream = {k: payload[k] for k in ("mediaSessionId", "name", "published")}
                    await play(stream, payload["sdp"])
                elif name == "ping":
                    await send("pong", None)
                elif name == "stopStream":
                    await send("notifyStreamStatusEvent", {**payload, "status": "STOPPED"})
        finally:
            await asyncio.gather(*(pc.close() for pc in mine), return_exceptions=True)
        return ws


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--media", type=Path, required=True)
    parser.add_argument("--bitrate", type=int, default=1_500_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    aioice.ice.get_host_addresses = loopback_only
    vpx.DEFAULT_BITRATE = vpx.MIN_BITRATE = vpx.MAX_BITRATE = args.bitrate
    files = Files(args.media)
    await serve([web.get("/", files.handle)])


if __name__ == "__main__":
    asyncio.run(main())
