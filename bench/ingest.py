"""Ingest benchmark: what receiving one publisher costs the server, per receive path.

    python bench/ingest.py                          # or: make bench-ingest (about 6 minutes)
    python bench/ingest.py --publishers 1,10 --seconds 6 --paths lean   # a quick look

N publishers send 640x480@30 VP8 at 1.5 Mb/s with Opus (bench/clips.py: a clip encoded
once and replayed by bench/recording_load.py, so a publisher costs its process little)
to one ``hookcast serve``, nobody plays them. For each receive path, one after the
other in the same run, with the same publishers:

  * ``lean`` (``relay_lean_receive=true``, the default): publisher RTP is unprotected,
    reordered and assembled into frames on the event loop as each datagram is read, and
    handed to the broadcast (hookcast.rtc.aiortc.receiver);
  * ``aiortc`` (``relay_lean_receive=false``): aiortc's own receiver, its decoder thread
    handing each frame back to the loop (the path before issue 23).

For each N the server's CPU (utime+stime of the whole process, /proc, 100 = one core) over
a window after a settle, the publishers' frames the server received against the frames
they sent in the same window (VIDEO_FRAMES of every stream, REST ``/stream/metrics``),
and the load of the machine and of other processes in that window (a window where
others used more than 10 % of a core is flagged *disturbed*). The summary gives the
cost per publisher (the least-squares slope over N) of each path, their ratio and
whether the issue's goals were met (<= 1 % of a core per publisher; 50 publishers
received at >= 99 % of their frames). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from clips import load
from fanout import (
    HOST,
    ONE_ADDRESS,
    Child,
    Children,
    free_port,
    hookcast_command,
    machine_cpu,
    process_cpu,
    wait_listening,
)

HERE = Path(__file__).resolve().parent
PATHS = {"lean": "relay_lean_receive=true\n", "aiortc": "relay_lean_receive=false\n"}
GOAL_PER_PUBLISHER = 1.0  # % of one core
GOAL_FRAMES = 0.99
BITRATE = 1_500_000


@dataclass
class Window:
    path: str
    publishers: int
    server: float  # % of one core
    machine: float  # % of all cores
    others: float  # % of one core used by processes outside the benchmark
    load: float  # % of one core: the publishers' process
    received: list[float]  # per stream: frames received / frames sent

    @property
    def worst(self) -> float:
        return min(self.received) if self.received else 0.0

    @property
    def disturbed(self) -> bool:
        return self.others > 10.0


async def start_server(children: Children, workdir: Path, path: str) -> tuple[Child, int, int]:
    home = workdir / f"home-{path}"
    for folder in ("conf", "plugins", "media", "records", "hooks"):
        (home / folder).mkdir(parents=True, exist_ok=True)
    ws_port, http_port = free_port(), free_port()
    (home / "conf" / "server.properties").write_text(
        f"ip={HOST}\nbind_address={HOST}\nws.port={ws_port}\nhttp.port={http_port}\n"
        f"on_record_hook_script=\n{ONE_ADDRESS}{PATHS[path]}")
    argv = [*hookcast_command(), "serve", "--home", str(home), "--log-level", "WARNING"]
    server = await children.start(f"server-{path}", argv, talk=False)
    await wait_listening(server, http_port)
    return server, ws_port, http_port


def rest(port: int, method: str, body: dict[str, object]) -> object:
    request = urllib.request.Request(
        f"http://{HOST}:{port}/rest-api/{method}", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def frames_received(port: int, ids: list[str]) -> list[int]:
    counts = []
    for media_session_id in ids:
        metrics = rest(port, "stream/metrics", {"mediaSessionId": media_session_id})
        assert isinstance(metrics, dict)
        counts.append(int(metrics.get("VIDEO_FRAMES", 0)))
    return counts


async def measure(children: Children, server: Child, http_port: int, ws_port: int,
                  clip: Path, path: str, count: int, seconds: float) -> Window:
    argv = [sys.executable, str(HERE / "recording_load.py"), "--url", f"ws://{HOST}:{ws_port}/",
            "--codec", "VP8", "--count", str(count), "--clip", str(clip),
            "--name", f"{path}-{count}"]
    publishers = await children.start(f"publishers-{path}-{count}", argv, talk=True)
    try:
        ready = await publishers.read(180)
        ids = list(ready["ids"])
        await asyncio.sleep(3)  # settle
        sent0 = await publishers.ask("snap")
        got0 = await asyncio.to_thread(frames_received, http_port, ids)
        cpu0, load0, (busy0, total0) = process_cpu(server.pid), process_cpu(publishers.pid), \
            machine_cpu()
        await asyncio.sleep(seconds)
        cpu1, load1, (busy1, total1) = process_cpu(server.pid), process_cpu(publishers.pid), \
            machine_cpu()
        sent1 = await publishers.ask("snap")
        got1 = await asyncio.to_thread(frames_received, http_port, ids)
    finally:
        await children.stop(publishers)
    server_pct = 100 * (cpu1 - cpu0) / seconds
    load_pct = 100 * (load1 - load0) / seconds
    machine_pct = 100 * (busy1 - busy0) / (total1 - total0)
    others = max(0.0, 100 * (busy1 - busy0) / seconds - server_pct - load_pct)
    sent = (sent1["video"] - sent0["video"]) / count  # frames each publisher sent
    received = [(b - a) / sent for a, b in zip(got0, got1, strict=True)] if sent else []
    return Window(path, count, server_pct, machine_pct, others, load_pct, received)


def slope(windows: list[Window]) -> float | None:
    """Least-squares slope of server CPU over publishers (% of a core per publisher)."""
    points = [(w.publishers, w.server) for w in windows if w.worst >= GOAL_FRAMES]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    num = sum((x - mean_x) * (y - mean_y) for x, y in points)
    den = sum((x - mean_x) ** 2 for x, _ in points)
    return num / den if den else None


def row(w: Window) -> str:
    median = sorted(w.received)[len(w.received) // 2] if w.received else 0.0
    flags = []
    if w.disturbed:
        flags.append("disturbed")
    if w.machine >= 97:
        flags.append("SATURATED")
    return (f"| {w.path} | {w.publishers} | {w.server:.1f} % | {w.server / w.publishers:.2f} % "
            f"| {100 * w.worst:.1f} % / {100 * median:.1f} % | {w.load:.1f} % | "
            f"{w.machine:.0f} % | {w.others:.1f} % | {' '.join(flags)} |")


async def run(args: argparse.Namespace) -> int:
    counts = [int(n) for n in args.publishers.split(",")]
    paths = args.paths.split(",")
    with tempfile.TemporaryDirectory(prefix="hookcast-ingest-") as folder:
        workdir = Path(folder)
        clip = workdir / "clip.pickle"
        clip.write_bytes(pickle.dumps(load("VP8", BITRATE, Path(args.cache))))
        children = Children(workdir)
        results: dict[str, list[Window]] = {}
        print("| path | publishers | server | per publisher | frames received (worst / median) "
              "| publishers' process | machine | others | |")
        print("|---|---|---|---|---|---|---|---|---|")
        try:
            for path in paths:
                server, ws_port, http_port = await start_server(children, workdir, path)
                await asyncio.sleep(2)
                idle0 = process_cpu(server.pid)
                await asyncio.sleep(3)
                idle = 100 * (process_cpu(server.pid) - idle0) / 3
                print(f"| {path} | 0 | {idle:.1f} % | | | | | | idle |", flush=True)
                windows = results[path] = []
                for count in counts:
                    window = await measure(children, server, http_port, ws_port, clip, path,
                                           count, args.seconds)
                    windows.append(window)
                    print(row(window), flush=True)
                await children.stop(server)
        finally:
            await children.stop_all()
    print()
    slopes = {path: slope(windows) for path, windows in results.items()}
    for path, value in slopes.items():
        text = f"{value:.3f} % of a core per publisher" if value is not None else "n/a"
        print(f"{path}: {text}")
    lean, old = slopes.get("lean"), slopes.get("aiortc")
    if lean and old:
        print(f"lean receive path is {old / lean:.1f}x cheaper per publisher than aiortc's")
    if lean is not None:
        ok = lean <= GOAL_PER_PUBLISHER
        print(f"goal <= {GOAL_PER_PUBLISHER} % per publisher: {'met' if ok else 'NOT met'}")
    biggest = max(results.get("lean", []), key=lambda w: w.publishers,
                  default=None)
    if biggest is not None:
        ok = biggest.publishers >= 50 and biggest.worst >= GOAL_FRAMES
        print(f"{biggest.publishers} publishers, worst received {100 * biggest.worst:.1f} % "
              f"of its frames: goal (50 at >= 99 %) {'met' if ok else 'NOT met'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--publishers", default="1,10,25,50")
    parser.add_argument("--paths", default="lean,aiortc")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir())))
    args = parser.parse_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
