"""Publishers for bench/recording.py: N streams replaying a pre-encoded clip (bench/clips.py).

JSON lines, like bench/loadgen.py: it replies {"event": "ready", "ids": [...]} once every
stream is PUBLISHING, then answers "snap" -> {"t", "video", "audio"} (packets sent so far,
all streams); EOF on stdin ends it.

    python bench/recording_load.py --url ws://127.0.0.1:PORT/ --codec VP8 --count 10 \\
        --clip /tmp/clip-VP8.pickle [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import time
from pathlib import Path

from clips import ClipTrack
from loadgen import die_with_parent, reply, stdin_lines

from hookcast.signalling.client import WcsClient


async def run(args: argparse.Namespace, clip: dict[str, list[tuple[bytes, int, bool]]]) -> None:
    commands = await stdin_lines()
    clients, tracks, ids = [], [], []
    start = time.time() + 0.5
    for index in range(args.count):
        video = ClipTrack("video", clip["video"], start)
        audio = ClipTrack("audio", clip["audio"], start)
        client = WcsClient(args.url)
        await client.connect()
        stream = await client.publish(f"{args.name}-{index}", [video, audio],
                                      video_codec=args.codec, record=args.record)
        await stream.wait_status("PUBLISHING")
        clients.append(client)
        tracks += [video, audio]
        ids.append(stream.media_session_id)
    reply({"event": "ready", "ids": ids})
    try:
        while line := await commands.readline():
            if line.decode().strip() == "snap":
                reply({"t": time.monotonic(),
                       "video": sum(t.sent for t in tracks if t.kind == "video"),
                       "audio": sum(t.sent for t in tracks if t.kind == "audio")})
    finally:
        for client in clients:
            await client.close()


def main() -> None:
    die_with_parent()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--codec", default="VP8")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--clip", required=True)
    parser.add_argument("--name", default="rec")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    from hookcast.rtc import aiortc as compat

    compat.use_host_addresses("127.0.0.1")
    asyncio.run(run(args, pickle.loads(Path(args.clip).read_bytes())))


if __name__ == "__main__":
    main()
