"""Load generator for bench/fanout.py: one publisher, or a process full of players.

Started by bench/fanout.py, never by hand (but it works by hand too). It talks JSON
lines: commands on stdin, one reply line per command on stdout; EOF on stdin ends it.

    python bench/loadgen.py publisher --url ws://127.0.0.1:PORT/ --name bench --bitrate 1200000
        replies {"event": "ready"} once PUBLISHING, then answers
        "snap" -> {"t", "frames", "rtp_packets", "rtp_bytes"}     (frames = encoded frames sent)

    python bench/loadgen.py players --url ws://127.0.0.1:PORT/ --name bench
        {"cmd": "add", "count": K} -> {"event": "added", "players", "failed", "errors"}
            once every new player is PLAYING and has received its first frame
        "snap" -> {"t", "players": [[frames, bytes], ...]}

Both sides use hookcast's WcsClient (core.client) and gather ICE candidates on
127.0.0.1 only. Players call core.rtc.compat.install(): their receivers hand over the
encoded frames (av.Packet) without decoding, so a player costs SRTP + RTP parsing +
frame assembly, not a VP8 decoder. One av.Packet is one video frame; players count them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from fractions import Fraction
from typing import Any

import av
from aiortc import VideoStreamTrack
from aiortc.codecs import vpx
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from core.client import ClientStream, WcsClient
from core.rtc import compat

WIDTH, HEIGHT = 640, 480
SETUP_CONCURRENCY = 4  # players connecting at once, per process
FIRST_FRAME_TIMEOUT = 20.0


def reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def die_with_parent() -> None:
    """Linux: get SIGTERM when the parent dies (fanout.py also sets this before exec)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# --- publisher ------------------------------------------------------------------------


class TextureVideoTrack(VideoStreamTrack):
    """640x480 at 30 fps: a random-noise texture scrolling 3 px right and 2 px down per
    frame, with a bright block sliding across and slowly cycling chroma.

    Detailed enough that aiortc's VP8 encoder, in CBR, reaches its target bitrate
    (measured: target 1.2 Mb/s gives 1.3 Mb/s), yet motion-compensable, so the encoder
    does not overshoot the way it does on fresh noise. Frames are built by slicing a
    precomputed texture (about 1 ms per frame).
    """

    def __init__(self, seed: int = 1) -> None:
        super().__init__()
        self.count = 0
        rnd = random.Random(seed)
        self._tw, th = WIDTH + 256, HEIGHT + 256
        self._texture = rnd.randbytes(self._tw * th)

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        luma, cb, cr = frame.planes
        stride = luma.line_size
        dx, dy = (self.count * 3) % 256, (self.count * 2) % 256
        block = (self.count * 6) % (WIDTH - 64)
        tex, tw = self._texture, self._tw
        pad = b"\x00" * (stride - WIDTH)
        rows = []
        for row in range(HEIGHT):
            start = (row + dy) * tw + dx
            line = tex[start : start + WIDTH]
            if 200 <= row < 264:
                line = line[:block] + b"\xeb" * 64 + line[block + 64 :]
            rows.append(line + pad)
        luma.update(b"".join(rows))
        cb.update(bytes([96 + self.count % 64]) * (cb.line_size * cb.height))
        cr.update(bytes([160 - self.count % 64]) * (cr.line_size * cr.height))
        frame.pts, frame.time_base = pts, time_base
        self.count += 1
        return frame


async def run_publisher(args: argparse.Namespace) -> None:
    # CBR at the requested bitrate: aiortc's encoder otherwise starts at 500 kb/s and
    # follows the server's REMB, clamped to [MIN_BITRATE, MAX_BITRATE].
    vpx.DEFAULT_BITRATE = vpx.MIN_BITRATE = vpx.MAX_BITRATE = args.bitrate
    commands = await stdin_lines()
    track = TextureVideoTrack()
    client = WcsClient(args.url)
    await client.connect()
    stream = await client.publish(args.name, [track], video_codec="VP8")
    await stream.wait_status("PUBLISHING")
    sender = stream.pc.getSenders()[0]
    reply({"event": "ready"})
    try:
        while line := await commands.readline():
            command = line.decode().strip()
            if command == "snap":
                t = time.monotonic()
                stats = await sender.getStats()
                outbound = next(s for s in stats.values() if s.type == "outbound-rtp")
                reply({"t": t, "frames": track.count, "rtp_packets": outbound.packetsSent,
                       "rtp_bytes": outbound.bytesSent, "status": stream.status})
            elif command == "quit":
                break
    finally:
        await client.close()


# --- players --------------------------------------------------------------------------


class Player:
    """One WcsClient playing the stream; counts the encoded frames it receives."""

    def __init__(self, url: str, name: str) -> None:
        self.client = WcsClient(url)
        self.name = name
        self.stream: ClientStream | None = None
        self.frames = 0
        self.bytes = 0
        self.first_frame = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.client.connect()
        self.stream = await self.client.play(self.name, kinds=("video",))
        await self.stream.wait_status("PLAYING")
        video = next(t for t in self.stream.tracks if t.kind == "video")
        self._task = asyncio.create_task(self._count(video))
        await asyncio.wait_for(asyncio.shield(self.first_frame), FIRST_FRAME_TIMEOUT)

    async def _count(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                packet = await track.recv()
                self.frames += 1
                self.bytes += packet.size
                if not self.first_frame.done():
                    self.first_frame.set_result(None)
        except MediaStreamError:
            pass

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.close()


async def run_players(args: argparse.Namespace) -> None:
    compat.install()  # receive av.Packet, never decode: players must be cheap
    commands = await stdin_lines()
    players: list[Player] = []
    limit = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def add_one() -> Player | str:
        async with limit:
            player = Player(args.url, args.name)
            try:
                await player.start()
            except Exception as error:  # reported, and the player is not counted
                await player.close()
                return f"{type(error).__name__}: {error}"
            return player

    try:
        while line := await commands.readline():
            text = line.decode().strip()
            command = json.loads(text) if text.startswith("{") else {"cmd": text}
            if command["cmd"] == "add":
                results = await asyncio.gather(*(add_one() for _ in range(command["count"])))
                errors = [r for r in results if isinstance(r, str)]
                players += [r for r in results if isinstance(r, Player)]
                reply({"event": "added", "players": len(players), "failed": len(errors),
                       "errors": errors[:3]})
            elif command["cmd"] == "snap":
                reply({"t": time.monotonic(), "players": [[p.frames, p.bytes] for p in players]})
            elif command["cmd"] == "quit":
                break
    finally:
        await asyncio.gather(*(p.close() for p in players), return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("role", choices=("publisher", "players"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--name", default="bench")
    parser.add_argument("--bitrate", type=int, default=1_200_000)
    args = parser.parse_args()
    die_with_parent()
    compat.use_host_addresses("127.0.0.1")
    runner = run_publisher if args.role == "publisher" else run_players
    try:
        asyncio.run(runner(args))
    except KeyboardInterrupt:
        pass
    # aiortc's threads (decoder workers) may linger; the benchmark waits for no one
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
