"""Recording benchmark: server CPU per recorded stream, hookcast vs aiortc's MediaRecorder.

    python bench/recording.py                   # about 3 minutes
    python bench/recording.py --seconds 8 --many 10      # a quick look

The same publisher in every measurement: a 640x480@30 clip (bench/clips.py, encoded
once at --bitrate, a keyframe every 2 s) with Opus audio, replayed without an encoder,
so publishers cost little and twenty fit on the machine. For each format, one after the
other in one run:

  * hookcast (`hookcast serve`): the server's CPU (utime+stime, /proc, % of one core)
    with --streams streams published but not recorded, then with them recorded (REST
    startRecording), then without again (stopRecording): the difference from the mean of
    the two unrecorded windows, over --streams, is what one recording costs. WebM: VP8 +
    Opus muxed as they arrive; MP4: H.264 muxed as it arrives, its Opus either transcoded
    to AAC (record_mp4_audio=aac, the default: today's way) or kept as it is
    (record_mp4_audio=opus), two servers measured one after the other;
  * MediaRecorder (bench/mediarecorder_server.py, aiortc as it comes): aiortc decodes the
    stream and MediaRecorder re-encodes it into the file; its cost is the server's CPU
    with MediaRecorder minus with a MediaBlackhole (same receive and decode). Its MP4
    figure (H.264 + AAC) is the ratio's reference for both MP4 rows.

Every window prints, beside the server's CPU, the load generators' CPU, the whole
machine's busy share (/proc/stat, 100 = every core) and the part of it used by processes
outside the benchmark (*others*: the machine less the server, the load generators and
this process); a window whose others exceed DISTURBED (10 % of all cores) is flagged
*disturbed*: the figures there may be inflated.

Then --many simultaneous hookcast recordings (VP8 + Opus) for --many-seconds: their gaps
(hookcast_recording_gaps_total: the writer had to drop to a keyframe) and frames decoded
from every file (--many 0: skipped). Benchmarks assert nothing: this prints what it
measured, the ratios and whether each goal of the issue was met, and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
from clips import SECONDS, load
from fanout import (
    CLK_TCK,
    HOST,
    NCPU,
    ONE_ADDRESS,
    OTHERS_WARN,
    ROOT,
    SATURATED,
    Child,
    Children,
    free_port,
    hookcast_command,
    machine_cpu,
    process_cpu,
    wait_listening,
)

HERE = Path(__file__).resolve().parent
GOAL_RATIO = 20.0
DISTURBED = OTHERS_WARN  # % of all cores used outside the benchmark: the window is flagged


@dataclass(frozen=True)
class Kind:
    """One row of the table: a container, the publisher's codec, the server's properties."""

    key: str
    label: str
    fmt: str  # "webm" or "mp4": the container, and MediaRecorder's reference for it
    codec: str  # the publisher's video codec
    properties: str  # more lines of the hookcast server's server.properties
    goal: float  # % of one core per recorded stream


KINDS = (
    Kind("webm", "webm (VP8 + Opus)", "webm", "VP8", "", 0.5),
    Kind("mp4-aac", "mp4 (H264, Opus → AAC)", "mp4", "H264", "record_mp4_audio=aac\n", 2.5),
    Kind("mp4-opus", "mp4 (H264 + Opus as it is)", "mp4", "H264", "record_mp4_audio=opus\n",
         2.5),
)
CODECS = ("VP8", "H264")


async def start_hookcast(children: Children, workdir: Path, name: str,
                         properties: str = "") -> tuple[Child, int, int]:
    """``hookcast serve`` on free ports in a home of its own; ``properties``: more lines
    of its server.properties."""
    home = workdir / name
    for folder in ("conf", "plugins", "media", "records", "hooks"):
        (home / folder).mkdir(parents=True, exist_ok=True)
    ws_port, http_port = free_port(), free_port()
    (home / "conf" / "server.properties").write_text(
        f"ip={HOST}\nbind_address={HOST}\nws.port={ws_port}\nhttp.port={http_port}\n"
        + ONE_ADDRESS + properties)
    argv = [*hookcast_command(), "serve", "--home", str(home), "--log-level", "WARNING"]
    server = await children.start(name, argv, talk=False)
    await wait_listening(server, ws_port)
    return server, ws_port, http_port


async def start_mediarecorder(children: Children, workdir: Path, fmt: str,
                              blackhole: bool) -> tuple[Child, int]:
    folder = workdir / f"mediarecorder-{fmt}"
    folder.mkdir(exist_ok=True)
    argv = [sys.executable, str(HERE / "mediarecorder_server.py"), "--format", fmt,
            "--folder", str(folder), *(["--blackhole"] if blackhole else [])]
    server = await children.start(f"mediarecorder-{fmt}-{'blackhole' if blackhole else 'rec'}",
                                  argv, talk=True)
    assert server.proc.stdout is not None
    line = await asyncio.wait_for(server.proc.stdout.readline(), 30)
    if not line.startswith(b"READY "):
        raise RuntimeError(f"{server.name} did not start (log: {server.log})")
    return server, int(line.split()[1])


async def publishers(children: Children, port: int, codec: str, clip: Path, count: int,
                     record: bool, name: str) -> tuple[Child, list[str]]:
    argv = [sys.executable, str(HERE / "recording_load.py"), "--url", f"ws://{HOST}:{port}/",
            "--codec", codec, "--count", str(count), "--clip", str(clip), "--name", name,
            *(["--record"] if record else [])]
    load_child = await children.start(f"load-{name}", argv, talk=True)
    ready = await load_child.read(120)
    return load_child, ready["ids"]


def thread_cpu(pid: int, tid: int) -> float:
    with open(f"/proc/{pid}/task/{tid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass(frozen=True)
class Window:
    """One measured window: the server's CPU and how busy the machine was meanwhile."""

    row: str  # the table row it belongs to
    case: str  # "not recorded", "recorded", "blackhole", ...
    seconds: float
    server: float  # % of one core
    loop: float  # % of one core: the server's main thread (its event loop)
    load: float  # % of one core: the load generators of the window together
    machine: float  # % of all cores (100 = every core busy)
    others: float  # % of all cores used by processes outside the benchmark

    @property
    def disturbed(self) -> bool:
        return self.others > DISTURBED


WINDOW_HEADER = (f"{'row':<28} {'window':<14} {'server':>7} {'loop':>6} {'load gen':>9} "
                 f"{'machine':>8} {'others':>7}\n"
                 f"{'':<28} {'':<14} {'%core':>7} {'%core':>6} {'%core':>9} {'%all':>8} "
                 f"{'%all':>7}")


def window_row(w: Window) -> str:
    flags = ("  disturbed" if w.disturbed else "") + (
        "  SATURATED" if w.machine >= SATURATED else "")
    return (f"{w.row:<28} {w.case:<14} {w.server:7.1f} {w.loop:6.1f} {w.load:9.1f} "
            f"{w.machine:8.0f} {w.others:7.1f}{flags}")


async def cpu_window(server: Child, loads: Sequence[Child], seconds: float, row: str,
                     case: str) -> Window:
    """The server's, its main thread's, the load generators' and the machine's CPU over
    ``seconds``; others = the machine less the server, the load generators and this
    process (fanout.py's accounting). The window's row is printed as it ends."""
    def read() -> tuple[float, ...]:
        busy, total = machine_cpu()
        return (time.monotonic(), process_cpu(server.pid), thread_cpu(server.pid, server.pid),
                sum(process_cpu(c.pid) for c in loads), busy, total, time.process_time())

    t0, s0, m0, l0, b0, a0, o0 = read()
    await asyncio.sleep(seconds)
    t1, s1, m1, l1, b1, a1, o1 = read()
    span = t1 - t0
    server_pct, loop, load, own = (100 * (x1 - x0) / span
                                   for x0, x1 in ((s0, s1), (m0, m1), (l0, l1), (o0, o1)))
    machine = 100 * (b1 - b0) / (a1 - a0)
    others = max(0.0, machine - (server_pct + load + own) / NCPU)
    window = Window(row, case, span, server_pct, loop, load, machine, others)
    print(window_row(window), flush=True)
    return window


def others_range(windows: Sequence[Window]) -> str:
    """"2.1-14.0 % (disturbed)": the others of a figure's windows."""
    low, high = min(w.others for w in windows), max(w.others for w in windows)
    return (f"{low:.1f}-{high:.1f} %" if high - low >= 0.05 else f"{low:.1f} %") + (
        " (disturbed)" if any(w.disturbed for w in windows) else "")


def rest(port: int, path: str, body: dict[str, object]) -> Any:
    request = urllib.request.Request(f"http://{HOST}:{port}/rest-api{path}",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def published(port: int) -> list[dict[str, Any]]:
    """The streams published on the server, with their metrics (WCS answers a find
    that matches nothing with 404: no stream)."""
    try:
        found = rest(port, "/stream/find", {"published": True, "display": ["metrics"]})
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return []
        raise
    assert isinstance(found, list)
    return found


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise KeyError(name)


@dataclass
class Cost:
    """A hookcast row: the server's windows without, with, and again without recording."""

    kind: Kind
    plain: Window
    recorded: Window
    again: Window
    streams: int
    audio: str  # the audio codec of the files recorded, as PyAV names it

    @property
    def without(self) -> float:
        return (self.plain.server + self.again.server) / 2

    @property
    def per_recording(self) -> float:
        return max((self.recorded.server - self.without) / self.streams, 0.01)

    @property
    def loop_per_recording(self) -> float:
        return (self.recorded.loop - (self.plain.loop + self.again.loop) / 2) / self.streams


async def set_recording(port: int, ids: Sequence[str], on: bool) -> None:
    path = "/stream/startRecording" if on else "/stream/stopRecording"
    for media_session_id in ids:
        await asyncio.to_thread(rest, port, path, {"mediaSessionId": media_session_id})


async def hookcast_cost(children: Children, workdir: Path, kind: Kind, clip: Path,
                        args: argparse.Namespace) -> Cost:
    """The server's windows with --streams streams not recorded, recorded, not again."""
    name = f"hookcast-{kind.key}"
    server, ws_port, http_port = await start_hookcast(children, workdir, name, kind.properties)
    load_child, ids = await publishers(children, ws_port, kind.codec, clip, args.streams, False,
                                       kind.key)
    windows: list[Window] = []
    for case, recording in (("not recorded", False), ("recorded", True),
                            ("not recorded", False)):
        if recording or windows:
            await set_recording(http_port, ids, recording)
        await asyncio.sleep(args.settle)
        windows.append(await cpu_window(server, [load_child], args.seconds, kind.label, case))
    await children.stop(load_child)
    await children.stop(server)
    audio = await asyncio.to_thread(audio_codec, workdir / name / "records", kind.fmt)
    plain, recorded, again = windows
    return Cost(kind, plain, recorded, again, args.streams, audio)


def audio_codec(folder: Path, suffix: str) -> str:
    """The audio codec of the ``.<suffix>`` recordings in ``folder`` ("aac", "opus"; "-"
    without): the property the row sets took effect."""
    names = set()
    for path in folder.glob(f"*.{suffix}"):
        try:
            with av.open(str(path)) as container:
                names |= {s.codec_context.name for s in container.streams.audio}
        except (av.FFmpegError, OSError):
            names.add(f"unreadable {path.name}")
    return ", ".join(sorted(names)) or "-"


async def mediarecorder_cost(children: Children, workdir: Path, fmt: str, codec: str,
                             clip: Path, args: argparse.Namespace) -> tuple[Window, Window]:
    """The server's windows for one stream with a MediaBlackhole, then with MediaRecorder."""
    measured = []
    for blackhole in (True, False):
        server, port = await start_mediarecorder(children, workdir, fmt, blackhole)
        load_child, _ = await publishers(children, port, codec, clip, 1, False, f"mr-{fmt}")
        await asyncio.sleep(args.settle)
        measured.append(await cpu_window(server, [load_child], args.seconds,
                                         f"MediaRecorder {fmt}",
                                         "blackhole" if blackhole else "recording"))
        await children.stop(load_child)
        await children.stop(server)
    return measured[0], measured[1]


@dataclass(frozen=True)
class Many:
    """What --many simultaneous recordings gave."""

    active: float  # hookcast_recordings_active
    window: Window
    gaps: float  # hookcast_recording_gaps_total
    files: int
    kept: list[float]  # per file: frames in it / frames the server received of its stream
    ended: list[str]  # files whose stream was no longer published at the count
    received: float  # the server's frames per stream, as a share of 30 fps


async def many(children: Children, workdir: Path, clip: Path,
               args: argparse.Namespace) -> Many:
    """--many (>= 1) streams recorded at once: gaps, and what each file holds."""
    server, ws_port, http_port = await start_hookcast(children, workdir, "hookcast-many")
    started = time.monotonic()
    half = args.many // 2
    loads = [await publishers(children, ws_port, "VP8", clip, n, True, f"many{i}")
             for i, n in enumerate((half, args.many - half)) if n]
    await asyncio.sleep(args.settle)
    active = await asyncio.to_thread(metric, http_port, "hookcast_recordings_active")
    window = await cpu_window(server, [c for c, _ in loads], args.many_seconds,
                              f"{args.many} recordings", "recorded")
    gaps = await asyncio.to_thread(metric, http_port, "hookcast_recording_gaps_total")
    streams = await asyncio.to_thread(published, http_port)
    received = {s["mediaSessionId"]: s["metrics"]["VIDEO_FRAMES"] for s in streams}
    for load_child, _ in loads:
        await children.stop(load_child)
    await asyncio.sleep(3)
    await children.stop(server)
    files = sorted((workdir / "hookcast-many" / "records").glob("*.webm"))
    # what each file holds against what the server received of its stream (read just
    # before the publishers stopped): the recorder's own losses, whatever the machine's
    kept, ended = [], []
    for f in files:
        # the default file name, stream-{sessionId}-{mediaSessionId}, holds the stream's id
        stream = next((s for s in streams if s["mediaSessionId"] in f.name
                       or f.name.startswith(s["name"] + "-")), None)
        if stream is not None and received[stream["mediaSessionId"]]:
            kept.append(_frames(f) / received[stream["mediaSessionId"]])
        else:  # its publisher left (or was refused) before the count: say so, not crash
            ended.append(f.name)
    elapsed = time.monotonic() - started
    sent = statistics.fmean(received.values()) / elapsed / 30 if received else 0.0
    return Many(active, window, gaps, len(files), kept, ended, sent)


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)


def bitrate(clip_path: Path) -> float:
    import pickle

    clip = pickle.loads(clip_path.read_bytes())
    return sum(len(d) for d, _, _ in clip["video"]) * 8 / SECONDS / 1e6


async def measure_all(children: Children, workdir: Path, clips: dict[str, Path],
                      args: argparse.Namespace) -> tuple[list[Cost], dict[str, list[Window]]]:
    """Every row's hookcast windows; MediaRecorder's for a container after its last row
    (the MP4 rows one after the other, then MediaRecorder's MP4)."""
    costs: list[Cost] = []
    baseline: dict[str, list[Window]] = {}
    for index, kind in enumerate(KINDS):
        costs.append(await hookcast_cost(children, workdir, kind, clips[kind.codec], args))
        if all(later.fmt != kind.fmt for later in KINDS[index + 1:]):
            baseline[kind.fmt] = list(await mediarecorder_cost(
                children, workdir, kind.fmt, kind.codec, clips[kind.codec], args))
    return costs, baseline


def table(costs: Sequence[Cost], baseline: dict[str, list[Window]]) -> list[str]:
    """The Markdown table: a row per kind, MediaRecorder's figure of its container."""
    streams = costs[0].streams
    lines = [f"| row | hookcast: server CPU, {streams} streams, without / with recording "
             "| hookcast per recording (event loop) | audio in the files | MediaRecorder: "
             "server CPU, 1 stream, blackhole / recording | MediaRecorder per recording "
             "| ratio | goal | others, % of all cores (hookcast; MediaRecorder) |",
             "|---|---|---|---|---|---|---|---|---|"]
    shown: set[str] = set()
    for cost in costs:
        hole, record = baseline[cost.kind.fmt]
        ours, theirs = cost.per_recording, record.server - hole.server
        met = ours <= cost.kind.goal and theirs / ours >= GOAL_RATIO
        same = f" (the {cost.kind.fmt} row above's)" if cost.kind.fmt in shown else ""
        shown.add(cost.kind.fmt)
        lines.append(
            f"| {cost.kind.label} | {cost.without:.1f} / {cost.recorded.server:.1f} % "
            f"| **{ours:.2f} %** ({cost.loop_per_recording:.2f} %) | {cost.audio} "
            f"| {hole.server:.1f} / {record.server:.1f} %{same} | {theirs:.1f} % "
            f"| **{theirs / ours:.0f}x** | <= {cost.kind.goal} % and >= {GOAL_RATIO:.0f}x: "
            f"{'met' if met else 'NOT met'} "
            f"| {others_range([cost.plain, cost.recorded, cost.again])}; "
            f"{others_range([hole, record])} |")
    return lines


def load_summary(windows: Sequence[Window]) -> str:
    disturbed = [w for w in windows if w.disturbed]
    return (f"machine {min(w.machine for w in windows):.0f}-{max(w.machine for w in windows):.0f}"
            f" % busy over the {len(windows)} windows, others {others_range(windows)} of all "
            f"cores; {len(disturbed)} windows disturbed (others > {DISTURBED:.0f} % of all "
            f"cores)" + (": their figures may be inflated" if disturbed else ""))


def many_lines(result: Many, args: argparse.Namespace) -> list[str]:
    window = result.window
    worst = f"{100 * min(result.kept):.0f} %" if result.kept else "n/a (no file matched)"
    zero = result.gaps == 0 and result.files == args.many
    ended = (f"; {len(result.ended)} files of streams no longer published at the count: "
             f"{', '.join(result.ended)}" if result.ended else "")
    return ["", f"{args.many} simultaneous recordings (VP8 {args.many_bitrate / 1e6:.1f} "
            f"Mb/s + Opus, WebM), {args.many_seconds:g} s measured: active "
            f"{result.active:.0f}, server CPU {window.server:.1f} %, recording gaps "
            f"{result.gaps:.0f}, files {result.files}: {'met' if zero else 'NOT met'} "
            f"(goal: zero gaps, a file per stream). The server itself received "
            f"{100 * result.received:.0f} % of 30 fps per stream; the worst file holds "
            f"{worst} of what the server received of its stream (a recording "
            f"starts at the publisher's next keyframe){ended}. Machine {window.machine:.0f} % "
            f"busy, others {window.others:.1f} % of all cores"
            + (" (disturbed)" if window.disturbed else "")]


async def run(args: argparse.Namespace) -> int:
    cache = ROOT / ".cache" / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    clips = {codec: cache / f"clip-{codec}-{args.bitrate}.pickle" for codec in CODECS}
    for codec in clips:
        load(codec, args.bitrate, cache)
    workdir = Path(tempfile.mkdtemp(prefix="hookcast-bench-recording-"))
    children = Children(workdir)
    rates = ", ".join(f"{c} {bitrate(p):.2f} Mb/s" for c, p in clips.items())
    print(f"clip: 640x480@30, video {rates} + Opus 64 kb/s; {args.seconds:g} s windows after "
          f"{args.settle:g} s settling; {NCPU} CPUs\nserver: the server process, 100 = one "
          "core (loop: its main thread); load gen: the publishers' processes; machine: every "
          "core (100 = all busy); others: the part of it outside this benchmark "
          f"(disturbed > {DISTURBED:.0f} %)\n", flush=True)
    print(WINDOW_HEADER, flush=True)
    lines: list[str] = []
    try:
        costs, baseline = await measure_all(children, workdir, clips, args)
        windows = [w for c in costs for w in (c.plain, c.recorded, c.again)]
        windows += [w for pair in baseline.values() for w in pair]
        lines += ["", *table(costs, baseline), "", load_summary(windows)]
        by_key = {c.kind.key: c for c in costs}
        aac, opus = by_key["mp4-aac"].per_recording, by_key["mp4-opus"].per_recording
        lines.append(f"MP4, Opus kept as it is against Opus -> AAC: {opus:.2f} % against "
                     f"{aac:.2f} % of a core per recording ({aac / opus:.1f}x less)")
        if args.many > 0:
            many_clip = cache / f"clip-VP8-{args.many_bitrate}.pickle"
            load("VP8", args.many_bitrate, cache)
            lines += many_lines(await many(children, workdir, many_clip, args), args)
        else:
            lines += ["", "--many 0: the simultaneous recordings were not measured"]
    finally:
        await children.stop_all()
    print("\n".join(lines))
    print(f"\nlogs and files: {workdir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="measurement window")
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--bitrate", type=int, default=1_400_000, help="clip's video bitrate")
    parser.add_argument("--streams", type=int, default=8,
                        help="streams hookcast records at once for the per-stream figure")
    parser.add_argument("--many", type=int, default=20,
                        help="simultaneous recordings of the last part (0: skip it)")
    parser.add_argument("--many-seconds", type=float, default=20.0)
    parser.add_argument("--many-bitrate", type=int, default=500_000,
                        help="clip bitrate of the --many streams (20 x 1.5 Mb/s publishers "
                             "and their server do not fit together on 2 cores)")
    args = parser.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
