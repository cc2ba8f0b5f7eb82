"""Fan-out benchmark: server CPU per extra player, hookcast's two sending paths vs MediaRelay.

    python bench/fanout.py                         # full run, about 8-9 minutes
    python bench/fanout.py --players 1,10 --aiortc-players 1,10 --baseline-players 1,2 \
        --seconds 5 --paths fast,aiortc            # a quick look

One publisher sends 640x480@30 VP8 (aiortc's encoder in CBR at --bitrate) to a server;
N players (WcsClient, hookcast.signalling.client) play it. For every N the benchmark waits until all
players are PLAYING and receiving, lets it settle, then measures a --seconds window:

  * server CPU: utime+stime of the server process alone (/proc/<pid>/stat, all threads),
    as % of one core; the per-extra-player cost is the slope between N values;
  * frames: every player's received frames vs the frames the publisher sent in the
    same window (goal: none below 95 %); bitrate: payload bytes a player received;
  * the CPU of the publisher, of the player processes, and of the whole machine.

Servers, same publisher, same players, one after the other in the same run:

  * fast: `hookcast serve --home <temporary home>` (ip and bind_address 127.0.0.1, free
    ports, every other property at its default): the dedicated forwarding path
    (relay_fast_path=true), UDP GSO where the kernel has it;
  * fast-nogso: the same with relay_gso=false (one sendto per packet);
  * aiortc: the same with relay_fast_path=false: aiortc's own RTCRtpSender per player,
    reading a SubscriberTrack queue (hookcast's path before issue 16);
  * MediaRelay: bench/mediarelay_server.py, minimal WCS signalling over aiortc's stock
    MediaRelay: the publisher is decoded once and every player's sender re-encodes.
    Re-encoding 640x480 costs a good share of a core per player, so it is measured at
    few players (--baseline-players).

Processes: server, publisher and --player-procs player processes (bench/loadgen.py),
all children of this one, all on 127.0.0.1; they are killed on exit or Ctrl-C.
Benchmarks are not tests: nothing here asserts; it prints what it measured and
whether each goal of the issue was met. With py-spy installed and the per-player goal
missed, it profiles the hookcast server at the largest N and says where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
STREAM = "bench"

GOAL_PER_PLAYER = 0.1  # % of one core per extra player: >= 1,000 players per core
GOAL_PER_LOSSY_PLAYER = 0.15  # ... when players lose 2 % of the packets
#: % of a lossy row's lost video packets the server must have sent again (RTX) for the
#: row to count: its players' complete frames fall short by the losses themselves
REPAIRED = 95.0
STRETCH_PER_PLAYER = 0.05  # >= 2,000 per core (SRS's C++ figure)
GOAL_BITRATE = 1.0  # Mb/s
GOAL_FRAMES = 99.0  # % of the publisher's frames, every player
#: the hookcast servers: label -> properties
HOOKCAST = {
    "fast": "relay_fast_path=true\nrelay_gso=true\n",
    # the same server; its players lose --loss of the packets and NACK them
    "fast-loss": "relay_fast_path=true\nrelay_gso=true\n",
    "fast-nogso": "relay_fast_path=true\nrelay_gso=false\n",
    "aiortc": "relay_fast_path=false\n",
}
#: every benchmark client comes from 127.0.0.1: the per-address bounds of a real server
#: (max_sessions_per_address, max_pending_streams_per_address) are lifted
ONE_ADDRESS = ("max_sessions_per_address=100000\nmax_pending_streams_per_address=100000\n"
               "max_pending_streams=100000\nmax_sessions=100000\n")
SATURATED = 97.0  # % of all cores busy: the machine had nothing left
OTHERS_WARN = 10.0  # % of all cores used outside the benchmark worth a warning
UNSTEADY = 0.15  # relative spread of the server's CPU between sub-windows worth a flag
UNSTEADY_FLOOR = 3.0  # ... and at least this many % of a core (CPU time ticks are 10 ms)


# --- processes ------------------------------------------------------------------------


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    """A child process; JSON-line commands for the load generators."""

    name: str
    proc: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def ask(self, command: Any, timeout: float = 30.0) -> dict[str, Any]:  # noqa: ASYNC109
        assert self.proc.stdin is not None and self.proc.stdout is not None
        text = command if isinstance(command, str) else json.dumps(command)
        self.proc.stdin.write(text.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self.read(timeout)

    async def read(self, timeout: float = 30.0) -> dict[str, Any]:  # noqa: ASYNC109
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            raise RuntimeError(f"{self.name}: no answer within {timeout:.0f} s "
                               f"(log: {self.log})") from None
        if not line:
            raise RuntimeError(f"{self.name} exited (status {await self.proc.wait()}); "
                               f"its log: {self.log}\n{tail(self.log)}")
        return json.loads(line)  # type: ignore[no-any-return]


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Children:
    """Every process the benchmark starts; stop() ends them all (TERM, then KILL)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[Child] = []

    async def start(self, name: str, argv: Sequence[str], *, talk: bool) -> Child:
        log = self.workdir / f"{name}.log"
        pipe = asyncio.subprocess.PIPE
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=pipe if talk else subprocess.DEVNULL,
            stdout=pipe if talk else log.open("ab"),
            stderr=log.open("ab"),
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # Ctrl-C reaches only us; we stop them in order
            preexec_fn=_die_with_parent,
            limit=16 * 1024 * 1024,
        )
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    async def stop(self, child: Child, grace: float = 10.0) -> None:
        if child.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                if child.proc.stdin is not None and not child.proc.stdin.is_closing():
                    child.proc.stdin.close()  # EOF: the load generators leave on their own
                child.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(child.proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
                await child.proc.wait()
        if child in self.children:
            self.children.remove(child)

    async def stop_all(self) -> None:
        # load generators first, then servers; each in parallel
        generators = [c for c in self.children if c.proc.stdin is not None]
        await asyncio.gather(*(self.stop(c) for c in generators))
        await asyncio.gather(*(self.stop(c) for c in list(self.children)))

    def kill_all_now(self) -> None:
        for child in self.children:
            with contextlib.suppress(ProcessLookupError):
                child.proc.kill()


# --- CPU accounting -------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a live process has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    idle = values[3] + values[4]
    total = sum(values)
    return (total - idle) / CLK_TCK, total / CLK_TCK


# --- servers --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


async def wait_listening(child: Child, port: int, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while True:
        if child.proc.returncode is not None:
            raise RuntimeError(f"{child.name} exited with status {child.proc.returncode}:\n"
                               f"{tail(child.log)}")
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} is not listening on {port}") from None
            await asyncio.sleep(0.1)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


def hookcast_command() -> list[str]:
    script = Path(sys.executable).parent / "hookcast"
    return [str(script)] if script.exists() else [sys.executable, "-m", "hookcast"]


async def start_hookcast(children: Children, workdir: Path, kind: str) -> tuple[Child, str]:
    home = workdir / f"hookcast-home-{kind}"
    for folder in ("conf", "plugins", "media", "records", "hooks"):
        (home / folder).mkdir(parents=True, exist_ok=True)
    ws_port, http_port = free_port(), free_port()
    (home / "conf" / "server.properties").write_text(
        f"ip={HOST}\nbind_address={HOST}\nws.port={ws_port}\nhttp.port={http_port}\n"
        + ONE_ADDRESS + HOOKCAST[kind]
    )
    argv = [*hookcast_command(), "serve", "--home", str(home), "--log-level", "WARNING"]
    server = await children.start(f"{kind}-server", argv, talk=False)
    await wait_listening(server, ws_port)
    return server, f"ws://{HOST}:{ws_port}/"


async def start_mediarelay(children: Children, bitrate: int) -> tuple[Child, str]:
    argv = [sys.executable, str(HERE / "mediarelay_server.py"), "--port", "0",
            "--bitrate", str(bitrate)]
    log = children.workdir / "mediarelay-server.log"
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log.open("ab"),
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    server = Child("mediarelay-server", proc, log)
    children.children.append(server)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    if not line.startswith(b"READY "):
        raise RuntimeError(f"mediarelay server did not start:\n{tail(log)}")
    return server, f"ws://{HOST}:{int(line.split()[1])}/"


# --- one measurement ------------------------------------------------------------------


@dataclass
class Snapshot:
    t: float
    cpu: dict[str, float]
    machine_busy: float
    machine_total: float
    publisher: dict[str, Any]
    players: list[list[int]]
    own: float  # this process's CPU seconds


@dataclass
class Point:
    """One steady-state window with N players."""

    server: str
    players: int
    failed: int
    seconds: float
    server_cpu: float  # % of one core
    publisher_cpu: float
    players_cpu: float  # all player processes together
    machine: float  # % of all cores (100 % = every core busy)
    others: float  # % of all cores used by processes outside this benchmark
    publisher_frames: int
    publisher_fps: float
    publisher_mbps: float  # RTP payload the publisher sent
    publisher_pps: float  # RTP packets/s the publisher sent (what each player receives)
    frames_min_pct: float
    frames_median_pct: float
    below_goal: int  # players under GOAL_FRAMES % of the publisher's frames
    player_mbps: float  # median payload bitrate a player received
    server_rss_mib: float = 0.0
    per_player: float | None = None  # slope from the previous point, % core per player
    extra: dict[str, Any] = field(default_factory=dict)


class Rig:
    """A running server with its publisher and player processes."""

    def __init__(self, kind: str, server: Child, publisher: Child, player_procs: list[Child]):
        self.kind = kind
        self.server = server
        self.publisher = publisher
        self.player_procs = player_procs
        self.counts = [0] * len(player_procs)

    async def add_players(self, total: int) -> int:
        """Bring the number of players up to `total`, spread evenly; returns failures."""
        wanted = [0] * len(self.counts)
        for i in range(total):
            wanted[i % len(wanted)] += 1
        jobs = [(p, w - c) for p, w, c in zip(self.player_procs, wanted, self.counts, strict=True)
                if w > c]
        replies = await asyncio.gather(*(
            p.ask({"cmd": "add", "count": n}, timeout=60 + 3 * n) for p, n in jobs
        ))
        failed = 0
        for (proc, _), answer in zip(jobs, replies, strict=True):
            self.counts[self.player_procs.index(proc)] = answer["players"]
            failed += answer["failed"]
            for error in answer["errors"]:
                print(f"    a player failed to start: {error}", flush=True)
        return failed

    async def snapshot(self) -> Snapshot:
        pids = {"server": self.server.pid, "publisher": self.publisher.pid,
                **{p.name: p.pid for p in self.player_procs}}
        asks = [self.publisher.ask("snap"), *(p.ask("snap") for p in self.player_procs)]
        t = time.monotonic()
        cpu = {name: process_cpu(pid) for name, pid in pids.items()}
        busy, total = machine_cpu()
        answers = await asyncio.gather(*asks)
        players = [row for answer in answers[1:] for row in answer["players"]]
        own = time.process_time()
        return Snapshot(t, cpu, busy, total, answers[0], players, own)

    def rss_mib(self) -> float:
        with open(f"/proc/{self.server.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    async def measure(self, seconds: float, windows: int, failed: int) -> Point:
        """One window of `seconds`. The server's CPU is its mean over the window; it is
        also read at `windows` equal sub-windows, and a row whose sub-windows differ by
        more than UNSTEADY (relative) is flagged: the load changed during the window."""
        a = await self.snapshot()
        marks = [(a.t, a.cpu["server"])]
        for _ in range(windows - 1):
            await asyncio.sleep(seconds / windows)
            marks.append((time.monotonic(), process_cpu(self.server.pid)))
        await asyncio.sleep(max(0.0, a.t + seconds - time.monotonic()))
        b = await self.snapshot()
        marks.append((b.t, b.cpu["server"]))
        span = b.t - a.t
        sub = [100 * (c1 - c0) / (t1 - t0) for (t0, c0), (t1, c1) in pairwise(marks)]

        def core_pct(name: str) -> float:
            return 100 * (b.cpu[name] - a.cpu[name]) / span

        machine = 100 * (b.machine_busy - a.machine_busy) / (b.machine_total - a.machine_total)
        ours = sum(core_pct(name) for name in b.cpu) + 100 * (b.own - a.own) / span
        frames = b.publisher["frames"] - a.publisher["frames"]
        joined = len(a.players)
        received = [b.players[i][0] - a.players[i][0] for i in range(joined)]
        payload = [b.players[i][1] - a.players[i][1] for i in range(joined)]
        pct = [100 * r / frames if frames else 0.0 for r in received] or [0.0]
        lossy = {}
        if joined and len(b.players[0]) >= 5:  # count mode: audio, dropped, RTX per player
            audio, dropped, rtx = ([b.players[i][k] - a.players[i][k] for i in range(joined)]
                                   for k in (2, 3, 4))
            lossy = {"audio_pps": round(statistics.median(audio) / span, 1),
                     "dropped_per_player": round(statistics.fmean(dropped), 1),
                     "rtx_per_player": round(statistics.fmean(rtx), 1)}
            if sum(dropped):
                # players lose packets: their complete frames fall short by the frames that
                # lost one, and what counts is that the server answered every NACK
                lossy["repaired_pct"] = round(100 * sum(rtx) / sum(dropped), 1)
        return Point(
            server=self.kind,
            players=joined,
            failed=failed,
            seconds=span,
            server_cpu=core_pct("server"),
            publisher_cpu=core_pct("publisher"),
            players_cpu=sum(core_pct(p.name) for p in self.player_procs),
            machine=machine,
            others=max(0.0, machine - ours / NCPU),
            publisher_frames=frames,
            publisher_fps=frames / span,
            publisher_mbps=8 * (b.publisher["rtp_bytes"] - a.publisher["rtp_bytes"]) / span / 1e6,
            publisher_pps=(b.publisher["rtp_packets"] - a.publisher["rtp_packets"]) / span,
            frames_min_pct=min(pct),
            frames_median_pct=statistics.median(pct),
            below_goal=sum(p < GOAL_FRAMES for p in pct) if joined else 0,
            player_mbps=statistics.median([8 * x / span / 1e6 for x in payload] or [0.0]),
            server_rss_mib=self.rss_mib(),
            extra={**lossy, "publisher_status": b.publisher.get("status"),
                   "server_cpu_windows": [round(x, 2) for x in sub],
                   "unsteady": (max(sub) - min(sub))
                   > max(UNSTEADY * statistics.fmean(sub), UNSTEADY_FLOOR)},
        )


@contextlib.asynccontextmanager
async def rig(kind: str, children: Children, workdir: Path, args: argparse.Namespace
              ) -> AsyncIterator[Rig]:
    if kind in HOOKCAST:
        server, url = await start_hookcast(children, workdir, kind)
    else:
        server, url = await start_mediarelay(children, args.bitrate)
    gen = [sys.executable, str(HERE / "loadgen.py")]
    common = ["--url", url, "--name", STREAM]
    try:
        audio = ["--audio" if args.audio else "--no-audio"]
        publisher = await children.start(
            f"{kind}-publisher",
            [*gen, "publisher", *common, "--bitrate", str(args.bitrate), *audio], talk=True,
        )
        await publisher.read(timeout=30)  # {"event": "ready"}: PUBLISHING
        loss = ["--loss", str(args.loss)] if kind == "fast-loss" else []
        procs = [
            await children.start(f"{kind}-players{i}",
                                 [*gen, "players", *common, "--mode", args.player_mode, *audio,
                                  *loss], talk=True)
            for i in range(args.player_procs)
        ]
        yield Rig(kind, server, publisher, procs)
    finally:
        await children.stop_all()


# --- profiling ------------------------------------------------------------------------


def find_py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


async def profile_server(pid: int, seconds: float, out: Path) -> str:
    """py-spy the server for `seconds`; a summary of where its time goes."""
    py_spy = find_py_spy()
    if py_spy is None:
        return "py-spy is not installed (pip install py-spy): no profile"
    proc = await asyncio.create_subprocess_exec(
        py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
        "--format", "raw", "--output", str(out), "--nonblocking", "--threads",
        stdout=subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0 or not os.path.exists(out):  # noqa: ASYNC240
        return f"py-spy failed: {err.decode(errors='replace').strip()[-500:]}"
    return summarize_profile(out)


CATEGORIES = [  # (what, substring of "function (file:line)"), first match wins, leaf first
    # the fast path (py-spy samples Python frames: a C call or system call made from a
    # function counts as that function's own time)
    ("fast path: SRTP encryption in place (libsrtp)", "ProtectBuffer.protect"),
    ("fast path: send loop (header rewrite, copies, sendmsg/sendto system calls)",
     "core/rtc/fastpath.py"),
    ("fast path: sender-report counters", "count_sent"),
    ("SRTP protect/unprotect (pylibsrtp)", "pylibsrtp"),
    ("UDP send/receive (asyncio, sockets)", "selector_events.py"),
    ("RTP packetize VP8 (aiortc codecs)", "codecs/"),
    ("RTP packet build/serialize/parse (aiortc rtp.py)", "aiortc/rtp.py"),
    ("RTCRtpSender send loop", "rtcrtpsender.py"),
    ("RTCRtpReceiver (REMB, NACK, jitter)", "rtcrtpreceiver.py"),
    ("hookcast jitter buffer", "core/rtc/jitter.py"),
    ("hookcast relay fan-out", "core/rtc/relay.py"),
    ("hookcast packets/bitstream", "core/rtc/"),
    ("DTLS transport routing", "rtcdtlstransport.py"),
    ("ICE (aioice)", "aioice"),
    ("asyncio event loop", "asyncio/"),
    ("logging", "logging/"),
]


LINE = re.compile(r":\d+\)$")
IDLE = (  # leaf frames where a thread sleeps; py-spy --nonblocking samples them anyway
    "EpollSelector.select (", "Condition.wait (", "Event.wait (", "Thread.join (",
    "_worker (concurrent", "Queue.get (queue.py",
)


def summarize_profile(path: Path, top: int = 15) -> str:
    """Self time by function and time by category from py-spy's collapsed stacks."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    category: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if frames and frames[0].startswith(("thread", "process")):
            frames = frames[1:]
        if not frames or frames[-1].startswith(IDLE):
            idle += n
            continue
        total += n
        frames = [LINE.sub(")", f) for f in frames]  # per function, not per line
        self_time[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
        cat = "other"
        for frame in reversed(frames):
            found = next((name for name, key in CATEGORIES if key in frame), None)
            if found:
                cat = found
                break
        category[cat] += n
    if not total:
        return "py-spy recorded no samples"
    out = [f"py-spy: {total} busy samples, all threads ({idle} idle-wait samples left out: "
           "epoll, thread waits)", "  by category (innermost match):"]
    out += [f"    {100 * n / total:5.1f} %  {name}" for name, n in category.most_common()]
    out.append("  top self time:")
    out += [f"    {100 * n / total:5.1f} %  {name}" for name, n in self_time.most_common(top)]
    out.append("  top inclusive (aiortc / hookcast functions):")
    interesting = [(f, n) for f, n in inclusive.most_common()
                   if any(k in f for k in ("aiortc", "core/", "pylibsrtp"))]
    out += [f"    {100 * n / total:5.1f} %  {f}" for f, n in interesting[:top]]
    return "\n".join(out)


# --- the run --------------------------------------------------------------------------


def saturated_point(p: Point) -> bool:
    """The machine had no idle CPU left: the server competed for it."""
    return p.machine >= SATURATED


def valid(p: Point) -> bool:
    """The publisher was publishing at (nearly) full frame rate during the window."""
    return p.extra.get("publisher_status") == "PUBLISHING" and p.publisher_fps >= 27


def usable(points: list[Point]) -> list[Point]:
    """Points a per-player slope may be drawn through: the publisher ran at full rate and
    every player got >= 95 % of its frames, so the server did all of its work. (On a
    saturated machine the server's CPU time can only be inflated by contention, so such
    a row, flagged SATURATED, still gives an upper bound.)"""
    return [p for p in points if valid(p) and (
        p.below_goal == 0 if "repaired_pct" not in p.extra
        else p.extra["repaired_pct"] >= REPAIRED)]


def slope(points: list[Point], a: int = 0, b: int = -1) -> float | None:
    pa, pb = points[a], points[b]
    if pb.players == pa.players:
        return None
    return (pb.server_cpu - pa.server_cpu) / (pb.players - pa.players)


def fit(points: list[Point]) -> float | None:
    """Least-squares slope of server CPU over players."""
    if len(points) < 2:
        return None
    xs = [p.players for p in points]
    ys = [p.server_cpu for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else None


HEADER = (
    f"{'server':<10} {'N':>4} {'server':>7} {'/extra':>7} {'players':>8} {'pub':>6} "
    f"{'machine':>8} {'others':>7} {'pub':>5} {'player frames':>15} {'<95%':>5} {'player':>7} "
    f"{'RSS':>5}"
)
HEADER2 = (
    f"{'':<10} {'':>4} {'%core':>7} {'player':>7} {'%core':>8} {'%core':>6} "
    f"{'%all':>8} {'%all':>7} {'fps':>5} {'min / median %':>15} {'':>5} {'Mb/s':>7} {'MiB':>5}"
)


def row(p: Point) -> str:
    extra = f"{p.per_player:7.3f}" if p.per_player is not None else f"{'-':>7}"
    failed = f" ({p.failed} failed to start)" if p.failed else ""
    saturated = "  SATURATED" if saturated_point(p) else ""
    if p.extra.get("unsteady"):
        spread = "/".join(f"{x:.0f}" for x in p.extra["server_cpu_windows"])
        saturated += f"  unsteady ({spread})"
    if not valid(p):
        saturated += f"  INVALID (publisher {p.extra.get('publisher_status')}, "\
                     f"{p.publisher_fps:.0f} fps)"
    return (
        f"{p.server:<10} {p.players:>4} {p.server_cpu:7.1f} {extra} {p.players_cpu:8.1f} "
        f"{p.publisher_cpu:6.1f} {p.machine:8.0f} {p.others:7.0f} {p.publisher_fps:5.1f} "
        f"{p.frames_min_pct:7.1f} / {p.frames_median_pct:5.1f} {p.below_goal:5d} "
        f"{p.player_mbps:7.2f} {p.server_rss_mib:5.0f}{saturated}{failed}"
    )


async def measure_server(kind: str, ns: list[int], children: Children, workdir: Path,
                         args: argparse.Namespace) -> tuple[list[Point], str | None]:
    points: list[Point] = []
    profile: str | None = None
    async with rig(kind, children, workdir, args) as r:
        await asyncio.sleep(2)  # the publisher's encoder settles
        for n in ns:
            started = time.monotonic()
            failed = await r.add_players(n)
            setup = time.monotonic() - started
            await asyncio.sleep(args.settle)
            point = await r.measure(args.seconds, args.windows, failed)
            point.extra["setup_seconds"] = round(setup, 1)
            if points:
                point.per_player = slope([points[-1], point])
            points.append(point)
            print(row(point), flush=True)
        want = args.profile == "always" or (args.profile == "auto" and kind == "fast")
        if want and kind in HOOKCAST:
            print(f"{'':<10} profiling the server at N={points[-1].players} for "
                  f"{args.profile_seconds:.0f} s (py-spy) ...", flush=True)
            profile = await profile_server(r.server.pid, args.profile_seconds,
                                           workdir / f"{kind}-server.pyspy.txt")
    return points, profile


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def describe_slope(name: str, points: list[Point]) -> tuple[float | None, str | None]:
    """Slope between the smallest and largest usable N, and a line saying so."""
    good = usable(points)
    left = [p.players for p in points if p not in good]
    if len(good) < 2:
        return None, (f"{name}: fewer than two usable rows, no per-player figure"
                      + (f" (N={left}: players lost frames or publisher stalled)"
                         if left else ""))
    s = slope(good)
    assert s is not None
    lsq = fit(good)
    text = (f"{name}: {s:.3f} % of a core per extra player (N={good[0].players}->"
            f"{good[-1].players}; least squares over {len(good)} rows {lsq:.3f}), "
            f"{100 / s if s > 0 else float('inf'):.0f} extra players per core")
    if left:
        text += f"; N={left} left out (players lost frames or publisher stalled)"
    rate = statistics.fmean(p.publisher_pps for p in good)
    if rate:
        text += (f"\n  = {s * 1e4 / rate:.0f} us of server CPU per RTP packet sent to a player "
                 f"({rate:.0f} packets/s per player)")
    return s, text


def summary(runs: dict[str, list[Point]]) -> list[str]:
    lines = []
    fast, base = runs.get("fast", []), runs.get("mediarelay", [])
    if runs:
        first = next(iter(runs.values()))[0]
        lines.append(
            f"publisher: {first.publisher_fps:.1f} fps, {first.publisher_mbps:.2f} Mb/s of RTP "
            f"payload sent; players received, median over N: " + ", ".join(
                f"{kind} {statistics.median(p.player_mbps for p in points):.2f} Mb/s"
                for kind, points in runs.items()))
    slopes: dict[str, float] = {}
    for kind, points in runs.items():
        value, text = describe_slope(kind, points)
        if text:
            lines.append(text)
        if value is not None:
            slopes[kind] = value
    if "fast" in slopes and slopes["fast"] > 0:
        lines.append("per extra player, relative to fast: " + ", ".join(
            f"{kind} {value / slopes['fast']:.2f}x" for kind, value in slopes.items()
            if kind != "fast"))
    lines.append("")
    lines.append("goals (fast path):")
    if "fast-loss" in slopes:
        lossy = usable(runs["fast-loss"])
        repaired = [p.extra.get("repaired_pct", 0.0) for p in lossy]
        lines.append(f"  <= {GOAL_PER_LOSSY_PLAYER} % of a core per extra player whose network "
                     f"loses packets: {verdict(slopes['fast-loss'] <= GOAL_PER_LOSSY_PLAYER)} "
                     f"({slopes['fast-loss']:.3f} %; losses answered by RTX: "
                     f"{min(repaired, default=0):.0f}-{max(repaired, default=0):.0f} %)")
    if "fast" in slopes:
        good = usable(fast)
        rate = min(p.player_mbps for p in good)
        value = slopes["fast"]
        lines.append(f"  <= {GOAL_PER_PLAYER} % of a core per extra player (>= 1,000 per core) at "
                     f">= {GOAL_BITRATE:.0f} Mb/s: "
                     f"{verdict(value <= GOAL_PER_PLAYER and rate >= GOAL_BITRATE)} "
                     f"({value:.3f} % at {rate:.2f} Mb/s, measured up to N={good[-1].players})")
        lines.append(f"  stretch <= {STRETCH_PER_PLAYER} % (>= 2,000 per core): "
                     f"{verdict(value <= STRETCH_PER_PLAYER)}")
    else:
        lines.append("  per extra player: not measurable in this run")
    if fast:
        worst = min(p.frames_min_pct for p in fast)
        rows = [p.players for p in fast if p.below_goal]
        calm = [p.players for p in fast if p.below_goal and not saturated_point(p)]
        text = (f"  worst player >= {GOAL_FRAMES:.0f} % of the publisher's frames: "
                f"{verdict(not rows)} (worst {worst:.1f} %")
        if rows:
            text += f"; below in rows N={rows}"
            if not calm:
                text += ", all of them SATURATED: the machine, not the server, ran out of CPU"
        lines.append(text + ")")
    every = [p for points in runs.values() for p in points]
    busy = sorted({f"{p.server} N={p.players}" for p in every if p.others > OTHERS_WARN})
    if busy:
        lines.append(f"  note: other processes used > {OTHERS_WARN:.0f} % of the machine in rows "
                     f"{', '.join(busy)} ('others'); CPU figures there may be inflated")
    if any(saturated_point(p) for p in every):
        lines.append("  note: SATURATED rows had no idle CPU on the machine; there the server "
                     "competed with players, publisher and other processes ('others')")
    if base and not slopes.get("mediarelay"):
        lines.append("  note: no MediaRelay slope in this run")
    return lines


def calibrate(runs: int = 5, packets: int = 20_000) -> dict[str, float]:
    """What this machine takes for the two pieces every packet to a player needs, in
    microseconds per 1,124-byte packet (min of ``runs``): pylibsrtp's Session.protect
    (AES-128-CM-SHA1-80, the call aiortc makes) and a loopback sendto (the receiving
    socket drained as it goes). Printed so figures from different machines compare."""
    from pylibsrtp import Policy, Session

    policy = Policy(key=os.urandom(30), srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
                    ssrc_type=Policy.SSRC_ANY_OUTBOUND)
    session = Session(policy)
    packet = bytearray(b"\x80\x60" + bytes(10) + os.urandom(1_112))
    protect, send = [], []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        sink.bind((HOST, 0))
        sink.setblocking(False)
        address = sink.getsockname()
        data = bytes(packet)
        for run in range(runs):
            packet[8:12] = (run + 1).to_bytes(4, "big")  # a new SSRC: no replayed index
            began = time.perf_counter()
            for number in range(packets):
                packet[2:4] = (number & 0xFFFF).to_bytes(2, "big")
                session.protect(bytes(packet))
            protect.append((time.perf_counter() - began) / packets * 1e6)
            spent = 0.0
            for _ in range(packets // 100):
                began = time.perf_counter()
                for _ in range(100):
                    out.sendto(data, address)
                spent += time.perf_counter() - began
                with contextlib.suppress(BlockingIOError):
                    while sink.recv(2048):
                        pass
            send.append(spent / packets * 1e6)
    return {"protect_us": min(protect), "sendto_us": min(send)}


def parse_paths(text: str) -> list[str]:
    paths = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [p for p in paths if p not in HOOKCAST]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown path {unknown}; known: {', '.join(HOOKCAST)}")
    return paths


def parse_ns(text: str) -> list[int]:
    values = sorted({int(v) for v in text.split(",") if v.strip()})
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("expected player counts >= 1, e.g. 1,10,50,100")
    return values


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="hookcast-bench-"))
    children = Children(workdir)
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, main_task.cancel)
    runs: dict[str, list[Point]] = {}
    profile: str | None = None
    began = time.monotonic()
    print(f"fan-out benchmark: 640x480@30 VP8 at {args.bitrate / 1e6:.2f} Mb/s target, "
          f"{args.seconds:.0f} s windows after {args.settle:.0f} s settling, "
          f"{args.player_procs} player processes, {NCPU} CPUs; logs in {workdir}")
    print("server %core: the server process alone, 100 = one core, mean over the window; "
          "/extra player: slope from the previous row\n"
          "players, pub: the player processes (together) and the publisher, % of one core\n"
          "machine: every core of the machine (100 = all busy); others: the part of it used by "
          "processes outside this benchmark\n"
          "player frames: frames each player received / frames the publisher sent, same window; "
          "player Mb/s: median received payload\n")
    machine = calibrate()
    print(f"this machine, per 1,124-byte packet: SRTP protect {machine['protect_us']:.1f} us, "
          f"loopback sendto {machine['sendto_us']:.1f} us (the issue's machine: 1.3-1.9 and "
          f"2.7 us)\n")
    print(HEADER)
    print(HEADER2, flush=True)
    try:
        for kind in args.paths:
            ns = args.aiortc_players if kind == "aiortc" else args.players
            runs[kind], found = await measure_server(kind, ns, children, workdir, args)
            profile = profile or found
        if not args.skip_baseline:
            try:
                runs["mediarelay"], _ = await measure_server(
                    "mediarelay", args.baseline_players, children, workdir, args)
            except RuntimeError as error:
                print(f"the MediaRelay baseline failed: {error}", flush=True)
    except asyncio.CancelledError:
        print("\ninterrupted: stopping every process", file=sys.stderr)
        await children.stop_all()
        return 130
    finally:
        children.kill_all_now()
        if not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    for line in summary(runs):
        print(line)
    if profile:
        print("\nwhere the fast-path server's time goes at the largest N:")
        print(profile)
    print(f"\ntotal run time {time.monotonic() - began:.0f} s")
    if args.json:
        with open(args.json, "w") as out:  # noqa: ASYNC230 (once, at the end)
            json.dump({**{kind: [asdict(p) for p in points] for kind, points in runs.items()},
                       "machine": machine, "profile": profile, "args": vars(args)}, out,
                      indent=2)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="hookcast fan-out benchmark: server CPU per extra player, fast path vs "
                    "aiortc's senders vs MediaRelay")
    parser.add_argument("--paths", type=parse_paths,
                        default=parse_paths("fast,fast-loss,fast-nogso,aiortc"),
                        help="hookcast servers to measure, in order (default "
                             "fast,fast-nogso,aiortc)")
    parser.add_argument("--players", type=parse_ns, default=parse_ns("1,10,50,100,200"),
                        help="player counts for fast and fast-nogso (default 1,10,50,100,200)")
    parser.add_argument("--aiortc-players", type=parse_ns, default=parse_ns("1,10,50,100"),
                        help="player counts for the aiortc path (default 1,10,50,100)")
    parser.add_argument("--baseline-players", type=parse_ns, default=parse_ns("1,2,3"),
                        help="player counts for the MediaRelay baseline (default 1,2,3)")
    parser.add_argument("--seconds", type=float, default=12.0,
                        help="measurement window per player count (default 12)")
    parser.add_argument("--windows", type=int, default=3,
                        help="sub-windows per measurement, to flag rows whose load changed "
                        "during the window (default 3)")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds between the last player joining and the window")
    parser.add_argument("--bitrate", type=float, default=1.5,
                        help="publisher's VP8 target in Mb/s (default 1.5)")
    parser.add_argument("--player-procs", type=int, default=2,
                        help="processes the players are spread over (default 2)")
    parser.add_argument("--player-mode", choices=("count", "lean", "full"), default="count",
                        help="count (default): RTP counted off the ICE socket from clear "
                        "headers, RTCP as lean; lean: full WebRTC stack, per-packet receive "
                        "work replaced by a frame counter; full: hookcast.rtc.aiortc.install() "
                        "and aiortc's whole receive path (see loadgen.py)")
    parser.add_argument("--skip-baseline", action="store_true", help="hookcast only")
    parser.add_argument("--audio", action=argparse.BooleanOptionalAction, default=True,
                        help="the publisher sends Opus beside the video, players play both")
    parser.add_argument("--loss", type=float, default=0.02,
                        help="share of packets the fast-loss run's players lose and NACK")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                        help="py-spy a hookcast server at its largest N: the fast path's "
                        "(auto, the default), every one's (always) or none (never)")
    parser.add_argument("--profile-seconds", type=float, default=8.0)
    parser.add_argument("--json", help="also write the measurements to this file")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the temporary folder with every process's log")
    args = parser.parse_args(argv)
    args.bitrate = int(args.bitrate * 1e6)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
