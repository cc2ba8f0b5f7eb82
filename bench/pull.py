"""Pull benchmark: what a pulled stream costs server B, and the latency the hop A -> B adds.

    python bench/pull.py                       # about 2 minutes
    python bench/pull.py --seconds 8 --rounds 1 --latency-seconds 5     # a quick look

Two `hookcast serve` processes, A and B, on 127.0.0.1.

CPU: one stream, a 640x480@30 VP8 clip at --bitrate (bench/clips.py) with Opus, replayed
by a publisher process that does not encode. B's CPU (utime+stime from /proc, % of one
core) is measured, in alternating windows of --seconds, while

  * local: the publisher publishes on B itself;
  * pulled: the publisher publishes on A and B pulls it (REST /pull/pull);

with nothing else on B, and with B idle before both (the idle figure is subtracted:
what is left is the stream's cost). Goal: pulled / local <= 1.3.

Push: A's CPU with one publisher on it, then with --pushes fast-path players of that
stream (bench/loadgen.py, count mode), then instead with as many pushes of it to B
(REST /pull/push): a push is sent on the forwarding path as a player is. Goal: one
push costs what one player costs, within 20 %.

Latency: a publisher in this process draws the wall clock (milliseconds, 24 bits as
black and white blocks) into every picture and publishes on A (aiortc encodes VP8);
one player plays it on A, another on B through a pull; both decode each picture and
read the time drawn in it. Added latency = median(B) - median(A), same pictures, same
clock. Goal: <= 60 ms. Benchmarks assert nothing: this prints what it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
from aiortc import VideoStreamTrack
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from clips import load
from fanout import HERE, HOST, ROOT, Children
from recording import cpu_over, publishers, rest, start_hookcast

from hookcast.rtc import aiortc as compat
from hookcast.signalling.client import WcsClient

GOAL_RATIO = 1.3
GOAL_LATENCY_MS = 60.0
GOAL_PUSH_SPREAD = 0.2  # a push costs what a fast-path player costs, +-20 %
BITS = 24
WIDTH, HEIGHT = 640, 480
BLOCK = WIDTH // 12  # 12 x 2 blocks of 53 x 53 pixels, one bit each


class ClockTrack(VideoStreamTrack):
    """Pictures that show the wall clock they were made at (ms, modulo 2**24)."""

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        stamp = int(time.time() * 1000) % (1 << BITS)
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        luma, cb, cr = frame.planes
        rows = []
        for bit_row in range(2):
            line = b"".join(
                (b"\xeb" if stamp >> (bit_row * 12 + n) & 1 else b"\x10") * BLOCK
                for n in range(12)).ljust(luma.line_size, b"\x10")
            rows += [line] * BLOCK
        rows += [b"\x80" * luma.line_size] * (HEIGHT - 2 * BLOCK)
        luma.update(b"".join(rows))
        for plane in (cb, cr):
            plane.update(b"\x80" * (plane.line_size * plane.height))
        frame.pts, frame.time_base = pts, time_base
        return frame


def read_stamp(frame: av.VideoFrame) -> int:
    luma = frame.planes[0]
    data = bytes(luma)
    stamp = 0
    for bit_row in range(2):
        row = (bit_row * BLOCK + BLOCK // 2) * luma.line_size
        for n in range(12):
            if data[row + n * BLOCK + BLOCK // 2] > 128:
                stamp |= 1 << (bit_row * 12 + n)
    return stamp


async def latencies(track: MediaStreamTrack, out: list[float], since: float,
                    until: float) -> None:
    """Decode relayed VP8 as it arrives; keep (now - drawn time) in ms of each picture
    decoded between ``since`` and ``until`` (monotonic)."""
    decoder = av.CodecContext.create("vp8", "r")
    try:
        while time.monotonic() < until:
            packet = await asyncio.wait_for(track.recv(), 10)
            for frame in decoder.decode(packet):
                now = int(time.time() * 1000) % (1 << BITS)
                if time.monotonic() >= since:
                    out.append(float((now - read_stamp(frame)) % (1 << BITS)))
    except (MediaStreamError, TimeoutError):
        pass


async def latency(a_ws: int, b_ws: int, b_http: int, seconds: float) -> tuple[float, float, int]:
    """(median ms on A, median ms on B, pictures compared)."""
    compat.install()  # players here receive encoded frames, decoded by PyAV below
    compat.use_host_addresses(HOST)
    publisher, on_a, on_b = (WcsClient(f"ws://{HOST}:{port}/") for port in (a_ws, a_ws, b_ws))
    try:
        for client in (publisher, on_a, on_b):
            await client.connect()
        stream = await publisher.publish("clock", [ClockTrack()], video_codec="VP8")
        await stream.wait_status("PUBLISHING")
        rest(b_http, "/pull/pull", {"uri": f"ws://{HOST}:{a_ws}/", "localStreamName": "clock"})
        players = [await client.play("clock", kinds=("video",)) for client in (on_a, on_b)]
        for player in players:
            await player.wait_status("PLAYING")
        got: list[list[float]] = [[], []]
        since = time.monotonic() + 2  # both players past their first keyframe
        await asyncio.gather(*(latencies(p.tracks[0], out, since, since + seconds)
                               for p, out in zip(players, got, strict=True)))
        rest(b_http, "/pull/terminate", {"localStreamName": "clock"})
    finally:
        for client in (publisher, on_a, on_b):
            await client.close()
    sane = [[v for v in values if v < 5000] for values in got]
    return statistics.median(sane[0]), statistics.median(sane[1]), min(map(len, sane))


async def cpu(children: Children, args: argparse.Namespace, clip: Path, a_ws: int,
              b: Any, b_ws: int, b_http: int) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"idle": [], "local": [], "pulled": []}
    for _ in range(args.rounds):
        for case in ("local", "pulled"):
            found["idle"].append(await cpu_over(b.proc.pid, args.seconds / 2))
            port = b_ws if case == "local" else a_ws
            load_child, _ = await publishers(children, port, "VP8", clip, 1, False, case)
            if case == "pulled":
                rest(b_http, "/pull/pull", {"uri": f"ws://{HOST}:{a_ws}/",
                                            "localStreamName": "pulled-0"})
            await asyncio.sleep(args.settle)
            found[case].append(await cpu_over(b.proc.pid, args.seconds))
            print(f"  {case}: B {found[case][-1]:.2f} % (idle {found['idle'][-1]:.2f} %)",
                  flush=True)
            if case == "pulled":
                rest(b_http, "/pull/terminate", {"localStreamName": "pulled-0"})
            await children.stop(load_child)
            await asyncio.sleep(1)
    return found


async def push_cost(children: Children, args: argparse.Namespace, clip: Path, a: Any,
                    a_ws: int, a_http: int, b_ws: int) -> dict[str, float]:
    """A's CPU (% of a core) with one publisher on A; then with --pushes players of it
    (fast-path players, bench/loadgen.py in count mode: they read and count the RTP and
    send what a lean player sends back); then, instead, with --pushes pushes of it to B.
    Per unit: (with - alone) / --pushes."""
    count = args.pushes
    load_child, _ = await publishers(children, a_ws, "VP8", clip, 1, False, "src")
    try:
        await asyncio.sleep(args.settle)
        alone = await cpu_over(a.proc.pid, args.seconds)
        players = await children.start("push-players", [
            sys.executable, str(HERE / "loadgen.py"), "players", "--url", f"ws://{HOST}:{a_ws}/",
            "--name", "src-0", "--mode", "count"], talk=True)
        added = await players.ask({"cmd": "add", "count": count}, timeout=120)
        await asyncio.sleep(args.settle)
        with_players = await cpu_over(a.proc.pid, args.seconds)
        await children.stop(players)
        await asyncio.sleep(args.settle)
        for index in range(count):
            rest(a_http, "/pull/push", {"uri": f"ws://{HOST}:{b_ws}/", "localStreamName": "src-0",
                                        "remoteStreamName": f"copy-{index}"})
        await asyncio.sleep(args.settle)
        with_pushes = await cpu_over(a.proc.pid, args.seconds)
        rest(a_http, "/pull/terminate", {"localStreamName": "src-0"})
    finally:
        await children.stop(load_child)
    return {"alone": alone, "players": added["players"],
            "per_player": (with_players - alone) / count,
            "per_push": (with_pushes - alone) / count}


async def run(args: argparse.Namespace) -> int:
    cache = ROOT / ".cache" / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    load("VP8", args.bitrate, cache)
    clip = cache / f"clip-VP8-{args.bitrate}.pickle"
    workdir = Path(tempfile.mkdtemp(prefix="hookcast-bench-pull-"))
    children = Children(workdir)
    try:
        a, a_ws, a_http = await start_hookcast(children, workdir, "a")
        b, b_ws, b_http = await start_hookcast(children, workdir, "b")
        print(f"A's CPU per push and per fast-path player ({args.pushes} of each):", flush=True)
        pushes = await push_cost(children, args, clip, a, a_ws, a_http, b_ws)
        print(f"CPU of B, {args.rounds} round(s) of {args.seconds:g} s windows:", flush=True)
        found = await cpu(children, args, clip, a_ws, b, b_ws, b_http)
        idle = statistics.mean(found["idle"])
        local, pulled = statistics.mean(found["local"]), statistics.mean(found["pulled"])
        ratio = (pulled - idle) / max(local - idle, 0.01)
        median_a, median_b, pictures = await latency(a_ws, b_ws, b_http, args.latency_seconds)
    finally:
        await children.stop_all()
    added = median_b - median_a
    cpu_met, latency_met = ratio <= GOAL_RATIO, added <= GOAL_LATENCY_MS
    push_ratio = pushes["per_push"] / max(pushes["per_player"], 0.001)
    push_met = abs(push_ratio - 1) <= GOAL_PUSH_SPREAD
    print("\n".join([
        "",
        f"stream: VP8 640x480@30 at {args.bitrate / 1e6:.1f} Mb/s + Opus",
        "| B's CPU (% of a core) | idle | one local publisher | one pulled stream | "
        "pulled / local (net of idle) | goal |",
        "|---|---|---|---|---|---|",
        f"| mean of {args.rounds} | {idle:.2f} | {local:.2f} (net {local - idle:.2f}) | "
        f"{pulled:.2f} (net {pulled - idle:.2f}) | **{ratio:.2f}** | <= {GOAL_RATIO}: "
        f"{'met' if cpu_met else 'NOT met'} |",
        "",
        f"glass-to-glass over {pictures} pictures: median {median_a:.1f} ms playing on A, "
        f"{median_b:.1f} ms playing on B through the pull: **{added:.1f} ms added** "
        f"(goal <= {GOAL_LATENCY_MS:.0f} ms: {'met' if latency_met else 'NOT met'})",
        "",
        f"A with one publisher: {pushes['alone']:.2f} % of a core; per fast-path player "
        f"{pushes['per_player']:.3f} % ({pushes['players']:.0f} players), per push "
        f"{pushes['per_push']:.3f} %: a push costs **{push_ratio:.2f}x** a player "
        f"(goal within {GOAL_PUSH_SPREAD:.0%}: {'met' if push_met else 'NOT met'})",
        f"\nlogs: {workdir}",
    ]))
    return 0 if cpu_met and latency_met and push_met else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="CPU window")
    parser.add_argument("--rounds", type=int, default=2, help="local/pulled window pairs")
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--bitrate", type=int, default=1_500_000, help="clip's video bitrate")
    parser.add_argument("--latency-seconds", type=float, default=15.0)
    parser.add_argument("--pushes", type=int, default=10,
                        help="pushes (and, before them, players) of one stream on A")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
