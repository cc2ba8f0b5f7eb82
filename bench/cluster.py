"""Cluster benchmark (issue 24): edges, first frame, latency per hop, failover, workers.

    python bench/cluster.py                    # about 11 minutes (4 without part 4)
    python bench/cluster.py --quick            # a smoke run, about 3 minutes
    python bench/cluster.py --help             # every option

Every server is `hookcast serve` on 127.0.0.1 (free ports, ONE_ADDRESS: the per-address
bounds lifted, as in the other benchmarks), every cluster node with cluster_redis_url
(a redis-server this benchmark starts on a free port, no persistence), cluster_secret,
cluster_node_id and a short cluster_lease_ttl (--ttl, default 3 s). Four parts, one
after the other:

1. Edges: one origin node with the publisher (bench/loadgen.py: 640x480@30 VP8 at
   --bitrate + Opus) and 3 edge nodes; one count-mode player process per edge (bench/
   loadgen.py players) plays the stream by name on the edge's WebSocket: the edge pulls
   it from the origin (its edge copy). For each step of players per edge (--players):
   the origin's CPU, each edge's CPU, frames delivered (min / median over all players of
   the publisher's frames, same window), the origin's player sessions (one per edge:
   the edges' pulls). Then the reference: one node (no cluster) with the same publisher
   and the same players per node on it (bench/fanout.py's measurement). Goals: the
   origin's CPU flat across steps; an edge's CPU per player <= 1.2x a single node's.
2. First frame and latency: a publisher in this process draws the wall clock into its
   pictures (bench/pull.py's ClockTrack) and publishes on the origin; a player plays on
   an edge that has no copy yet (first player: the edge pulls first), then a second one
   on the same edge (later player); from the play request to the first picture decoded,
   --samples times each, the edges' copies gone in between (cluster_edge_linger 1 s).
   Then one player on the origin and one on an edge decode every picture; added latency
   per hop = median(edge) - median(origin). Goals: <= 1 s, <= 0.3 s, <= 60 ms.
3. Failover: the edge player plays, the origin is killed (SIGKILL); the publisher
   republishes on a second origin node, retrying until the name is free (the dead
   node's lease lasts --ttl); the edge player, once STOPPED, plays again (retrying until
   the name is found). Measured and stated: kill -> STOPPED, kill -> republished, kill ->
   the edge player's first picture again.
4. Workers (when the installed hookcast has `serve --workers`): one process (no cluster)
   vs `serve --workers 2` (cluster properties, the public ports shared by SO_REUSEPORT,
   the kernel spreading players over the workers; a player on the worker without the
   publisher gets the stream through an edge pull between the workers): count-mode
   players added in steps (--worker-players) on the public port; the largest step where
   every player (the minimum over players) got >= 99 % of the frames. Goal: workers /
   one process >= 1.7. The CPU of all worker processes is summed.

The load generators (publisher, players) run on the same machine as the servers: each
table says how busy the whole machine was (machine, 100 = every core) and how much of it
other processes took (others). Benchmarks assert nothing: this prints what it measured
and whether each goal was met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import fanout
from aiortc.mediastreams import MediaStreamError
from fanout import (
    HERE,
    HOST,
    NCPU,
    Child,
    Children,
    Point,
    Rig,
    free_port,
    hookcast_command,
    machine_cpu,
    parse_ns,
    process_cpu,
    tail,
    usable,
    verdict,
    wait_listening,
)
from pull import BITS, ClockTrack, latencies, read_stamp
from recording import rest, start_hookcast

from hookcast.rtc import aiortc as compat
from hookcast.signalling.client import ClientStream, WcsClient, WcsError

STREAM = fanout.STREAM
CLOCK = "clock"
SECRET = "hookcast-bench-cluster-secret"
EDGES = 3
GOAL_EDGE_RATIO = 1.2  # an edge's CPU per player / a single node's
GOAL_FIRST_S = 1.0  # first player on an edge: play request -> first picture
GOAL_LATER_S = 0.3  # a later player on the same edge
GOAL_HOP_MS = 60.0  # glass-to-glass latency added per hop
GOAL_WORKERS = 1.7  # players served at >= 99 % of frames, 2 workers / 1 process
GOAL_FRAMES = fanout.GOAL_FRAMES
#: the origin is flat when its CPU moved by at most this share of what the players would
#: have cost it without edges (or by at most FLAT_FLOOR % of a core)
FLAT_SHARE = 0.1
FLAT_FLOOR = 2.0


# --- processes ------------------------------------------------------------------------


async def start_redis(children: Children, workdir: Path) -> tuple[Child, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", str(workdir), "--protected-mode", "yes"]
    redis = await children.start("redis", argv, talk=False)
    await wait_listening(redis, port)
    return redis, f"redis://{HOST}:{port}/0"


def cluster_properties(redis_url: str, node: str | None, args: argparse.Namespace,
                       linger: float = 5.0) -> str:
    lines = [f"cluster_redis_url={redis_url}", f"cluster_secret={SECRET}",
             f"cluster_lease_ttl={args.ttl:g}", f"cluster_edge_linger={linger:g}",
             f"cluster_play_wait={args.play_wait:g}"]
    if node:
        lines.append(f"cluster_node_id={node}")
    return "\n".join(lines) + "\n"


@dataclass
class Node:
    name: str
    child: Child
    ws: int
    http: int

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.ws}/"


async def start_node(children: Children, workdir: Path, name: str, redis_url: str,
                     args: argparse.Namespace, linger: float = 5.0) -> Node:
    child, ws, http = await start_hookcast(children, workdir, name,
                                           cluster_properties(redis_url, name, args, linger))
    return Node(name, child, ws, http)


async def call(port: int, path: str, body: dict[str, Any] | None = None) -> Any:
    """A REST call (POST) off the loop; None when it answers an error (404: nothing)."""
    try:
        return await asyncio.to_thread(rest, port, path, body or {})
    except OSError:  # urllib's HTTPError (404 ...) and URLError are OSErrors
        return None


async def wait_nodes(port: int, count: int, within: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        nodes = await call(port, "/cluster/find_all") or []
        if len(nodes) >= count or time.monotonic() > deadline:
            return list(nodes)
        await asyncio.sleep(0.2)


def loadgen(role: str, url: str, name: str = STREAM) -> list[str]:
    return [sys.executable, str(HERE / "loadgen.py"), role, "--url", url, "--name", name]


async def start_publisher(children: Children, label: str, url: str,
                          args: argparse.Namespace) -> Child:
    publisher = await children.start(
        f"{label}-publisher",
        [*loadgen("publisher", url), "--bitrate", str(args.bitrate), "--audio"], talk=True)
    await publisher.read(timeout=30)  # {"event": "ready"}: PUBLISHING
    return publisher


async def start_players(children: Children, label: str, url: str) -> Child:
    return await children.start(f"{label}-players",
                                [*loadgen("players", url), "--mode", "count", "--audio"],
                                talk=True)


# --- part 1: edges --------------------------------------------------------------------


class ClusterRig(Rig):
    """A Rig (bench/fanout.py) whose snapshots also read the CPU of more servers."""

    def __init__(self, kind: str, server: Child, publisher: Child, player_procs: list[Child],
                 more: dict[str, Child]) -> None:
        super().__init__(kind, server, publisher, player_procs)
        self.more = more
        self.snaps: list[fanout.Snapshot] = []

    async def snapshot(self) -> fanout.Snapshot:
        snap = await super().snapshot()
        snap.cpu.update({name: process_cpu(child.pid) for name, child in self.more.items()})
        self.snaps = [*self.snaps[-1:], snap]
        return snap

    def core_pct(self, name: str) -> float:
        a, b = self.snaps
        return 100 * (b.cpu[name] - a.cpu[name]) / (b.t - a.t)


@dataclass
class Step:
    per_edge: int
    point: Point
    edges: list[float]  # % of a core, each edge
    origin_players: int  # player sessions on the origin (the edges' pulls)


async def origin_players(origin: Node) -> int:
    """Player sessions of STREAM on the origin itself (stream/find answers for the
    whole cluster; its entries name their node): with every player on the edges, these
    are the edges' pulls."""
    found = await call(origin.http, "/stream/find", {"name": STREAM, "published": False}) or []
    return sum(e.get("node") == origin.name for e in found)


async def edges_part(children: Children, workdir: Path, origin: Node, edges: list[Node],
                     args: argparse.Namespace) -> list[Step]:
    print(f"\n== 1. edges: publisher on the origin, count-mode players on {EDGES} edges, "
          f"{args.seconds:g} s windows ==", flush=True)
    print(EDGE_HEADER, flush=True)
    publisher = await start_publisher(children, "edges", origin.url, args)
    procs = [await start_players(children, f"edge{i + 1}", e.url) for i, e in enumerate(edges)]
    r = ClusterRig("cluster", origin.child, publisher, procs,
                   {e.name: e.child for e in edges})
    steps: list[Step] = []
    try:
        await asyncio.sleep(2)  # the publisher's encoder settles
        for n in args.players:
            failed = await r.add_players(n * EDGES)
            await asyncio.sleep(args.settle)
            point = await r.measure(args.seconds, args.windows, failed)
            pulls = await origin_players(origin)
            step = Step(n, point, [r.core_pct(e.name) for e in edges], pulls)
            steps.append(step)
            print(edge_row(step), flush=True)
    finally:
        for child in [publisher, *procs]:
            await children.stop(child)
    return steps


EDGE_HEADER = (
    f"{'per':>4} {'all':>4} {'origin':>7} {'edge1':>6} {'edge2':>6} {'edge3':>6} {'players':>8} "
    f"{'pub':>5} {'machine':>8} {'others':>7} {'pub':>5} {'player frames':>15} {'<99%':>5} "
    f"{'origin':>7}\n"
    f"{'edge':>4} {'':>4} {'%core':>7} {'%core':>6} {'%core':>6} {'%core':>6} {'%core':>8} "
    f"{'%core':>5} {'%all':>8} {'%all':>7} {'fps':>5} {'min / median %':>15} {'':>5} "
    f"{'players':>7}"
)


def edge_row(s: Step) -> str:
    p = s.point
    flags = "  SATURATED" if fanout.saturated_point(p) else ""
    if p.failed:
        flags += f"  ({p.failed} failed to start)"
    if not fanout.valid(p):
        flags += f"  INVALID (publisher {p.extra.get('publisher_status')})"
    edges = " ".join(f"{c:6.1f}" for c in s.edges)
    return (f"{s.per_edge:>4} {p.players:>4} {p.server_cpu:7.1f} {edges} {p.players_cpu:8.1f} "
            f"{p.publisher_cpu:5.1f} {p.machine:8.0f} {p.others:7.0f} {p.publisher_fps:5.1f} "
            f"{p.frames_min_pct:7.1f} / {p.frames_median_pct:5.1f} {p.below_goal:5d} "
            f"{s.origin_players:7d}{flags}")


async def single_reference(workdir: Path, args: argparse.Namespace) -> list[Point]:
    """bench/fanout.py's measurement of one node (no cluster), the same publisher, one
    player process with the same players per node."""
    print(f"\n   reference: one node, the publisher and {args.players} players on it "
          "(bench/fanout.py's table)", flush=True)
    print(fanout.HEADER)
    print(fanout.HEADER2, flush=True)
    reference = argparse.Namespace(
        audio=True, bitrate=args.bitrate, player_procs=1, player_mode="count", loss=0.0,
        settle=args.settle, seconds=args.seconds, windows=args.windows, profile="never",
        profile_seconds=0.0)
    own = Children(workdir)  # the rig stops all of its children at the end: not ours
    try:
        points, _ = await fanout.measure_server("fast", args.players, own, workdir, reference)
    finally:
        await own.stop_all()
    return points


def per_player(xs: Sequence[int], ys: Sequence[float]) -> float | None:
    """Slope from the first to the last (x, y)."""
    if len(xs) < 2 or xs[-1] == xs[0]:
        return None
    return (ys[-1] - ys[0]) / (xs[-1] - xs[0])


def edges_summary(steps: list[Step], single: list[Point]) -> list[str]:
    good = [s for s in steps if s.point in usable([s.point for s in steps])]
    lines = ["", "1. edges:"]
    left = [s.per_edge for s in steps if s not in good]
    if left:
        lines.append(f"  steps {left} left out: a player got < {GOAL_FRAMES:.0f} % of the "
                     "frames or the publisher stalled")
    frames = [s.point.frames_min_pct for s in steps]
    if frames:
        lines.append(f"  frames delivered: worst player {min(frames):.1f} %, median of the "
                     f"medians {statistics.median(s.point.frames_median_pct for s in steps):.1f}"
                     f" %; machine {min(s.point.machine for s in steps):.0f}-"
                     f"{max(s.point.machine for s in steps):.0f} % busy, others "
                     f"{max(s.point.others for s in steps):.0f} % at most")
    pulls = [s.origin_players for s in steps]
    lines.append(f"  the origin's player sessions at each step: {pulls} (one pull per edge = "
                 f"{EDGES}): {verdict(all(p == EDGES for p in pulls))}")
    single_good = usable(single)
    single_slope = per_player([p.players for p in single_good],
                              [p.server_cpu for p in single_good])
    if len(good) < 2 or single_slope is None or single_slope <= 0:
        lines.append("  fewer than two usable steps (edges or single node): no per-player "
                     "figures")
        return lines
    xs = [s.per_edge for s in good]
    origin = [s.point.server_cpu for s in good]
    moved = origin[-1] - origin[0]
    would = single_slope * EDGES * (xs[-1] - xs[0])
    flat = abs(moved) <= max(FLAT_SHARE * would, FLAT_FLOOR)
    lines.append(f"  origin's CPU over {xs[0]}->{xs[-1]} players per edge: "
                 f"{' -> '.join(f'{c:.1f}' for c in origin)} % of a core, moved {moved:+.1f} "
                 f"(the same players on it would have added {would:.1f}): flat (within "
                 f"{FLAT_SHARE:.0%} of that, or {FLAT_FLOOR:g} % of a core): {verdict(flat)}")
    slopes = [per_player(xs, [s.edges[i] for s in good]) or 0.0 for i in range(EDGES)]
    edge_slope = statistics.fmean(slopes)
    ratio = edge_slope / single_slope
    lines.append(f"  an edge's CPU per player: {edge_slope:.3f} % of a core (edges "
                 f"{', '.join(f'{x:.3f}' for x in slopes)}; {xs[0]}->{xs[-1]}); a single "
                 f"node's: {single_slope:.3f} % ({single_good[0].players}->"
                 f"{single_good[-1].players}); ratio {ratio:.2f} (goal <= {GOAL_EDGE_RATIO}: "
                 f"{verdict(ratio <= GOAL_EDGE_RATIO)})")
    if xs[-1] - xs[0] < 20:
        lines.append(f"  note: {xs[-1] - xs[0]} players per edge apart, the slopes are within "
                     "the noise of CPU ticks (10 ms): a smoke run, not a figure")
    base = [s.edges[i] - s.per_edge * slopes[i] for s in good[:1] for i in range(EDGES)]
    lines.append(f"  an edge's CPU with its pull and no player (intercept): "
                 f"{statistics.fmean(base):.1f} % of a core")
    return lines


# --- part 2: first frame and latency --------------------------------------------------


async def first_picture(track: Any, began: float, within: float = 20.0) -> float:
    """Seconds from ``began`` to the first picture decoded from ``track``."""
    decoder = av.CodecContext.create("vp8", "r")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        packet = await asyncio.wait_for(track.recv(), within)
        with contextlib.suppress(av.error.FFmpegError):
            if decoder.decode(packet):
                return time.monotonic() - began
    raise TimeoutError("no picture")


async def drain(track: Any) -> None:
    with contextlib.suppress(Exception):
        while True:
            await track.recv()


@dataclass
class Viewer:
    """A player in this process: its client, stream and the task reading its track."""

    client: WcsClient
    stream: ClientStream | None = None
    reader: asyncio.Task[None] | None = None
    playing: float = 0.0  # seconds from the play request to PLAYING

    async def play(self, name: str = CLOCK) -> float:
        """Play ``name``; seconds from the request to the first picture decoded (and, in
        ``self.playing``, to PLAYING)."""
        began = time.monotonic()
        self.stream = await self.client.play(name, kinds=("video",))
        await self.stream.wait_status("PLAYING")
        self.playing = time.monotonic() - began
        spent = await first_picture(self.stream.tracks[0], began)
        self.reader = asyncio.create_task(drain(self.stream.tracks[0]))
        return spent

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
        await self.client.close()


async def viewer(node: Node) -> Viewer:
    client = WcsClient(node.url)
    await client.connect()
    return Viewer(client)


async def clock_publisher(node: Node) -> tuple[WcsClient, ClientStream]:
    client = WcsClient(node.url)
    await client.connect()
    stream = await client.publish(CLOCK, [ClockTrack()], video_codec="VP8")
    await stream.wait_status("PUBLISHING")
    return client, stream


async def first_frames(edges: list[Node], samples: int, linger: float
                       ) -> tuple[list[float], list[float]]:
    firsts: list[float] = []
    laters: list[float] = []
    for k in range(samples):
        edge = edges[k % len(edges)]
        first, later = await viewer(edge), await viewer(edge)
        try:
            firsts.append(await first.play())
            await asyncio.sleep(1)
            laters.append(await later.play())
        finally:
            await asyncio.gather(first.close(), later.close())
        print(f"  sample {k + 1} on {edge.name}: first player {firsts[-1]:.3f} s (PLAYING after "
              f"{first.playing:.3f} s), later player {laters[-1]:.3f} s (PLAYING after "
              f"{later.playing:.3f} s)", flush=True)
        # the edge's copy closes linger after its last player left, as its heartbeat
        # (every third of the TTL) sees it: up to two heartbeats late
        await asyncio.sleep(linger + 1)
    return firsts, laters


async def hop_latency(origin: Node, edge: Node, seconds: float) -> tuple[list[float], int]:
    """([median ms playing on the origin, on the edge, mean on the origin, on the edge],
    pictures compared); the clock drawn is in whole milliseconds."""
    players = [await viewer(node) for node in (origin, edge)]
    try:
        streams = [await p.client.play(CLOCK, kinds=("video",)) for p in players]
        for stream in streams:
            await stream.wait_status("PLAYING")
        got: list[list[float]] = [[], []]
        since = time.monotonic() + 2  # both players past their first keyframe
        await asyncio.gather(*(latencies(s.tracks[0], out, since, since + seconds)
                               for s, out in zip(streams, got, strict=True)))
    finally:
        await asyncio.gather(*(p.close() for p in players))
    sane = [[v for v in values if v < 5000] for values in got]
    if not all(sane):
        return [float("nan")] * 4, 0
    return ([statistics.median(sane[0]), statistics.median(sane[1]),
             statistics.fmean(sane[0]), statistics.fmean(sane[1])], min(map(len, sane)))


async def timing_part(origin: Node, edges: list[Node], args: argparse.Namespace) -> list[str]:
    print(f"\n== 2. first frame ({args.samples} samples) and latency per hop "
          f"({args.latency_seconds:g} s) ==", flush=True)
    busy0, total0 = machine_cpu()
    client, _ = await clock_publisher(origin)
    try:
        firsts, laters = await first_frames(edges, args.samples,
                                            args.linger + 2 * args.ttl / 3)
        (on_origin, on_edge, mean_origin, mean_edge), pictures = await hop_latency(
            origin, edges[0], args.latency_seconds)
    finally:
        await client.close()
    busy1, total1 = machine_cpu()
    first, later = statistics.median(firsts), statistics.median(laters)
    added = on_edge - on_origin
    return [
        "", "2. first frame and latency (the publisher and the players in this process, "
        f"machine {100 * (busy1 - busy0) / (total1 - total0):.0f} % busy over the part):",
        f"  first player on an edge (the edge pulls first): median {first:.3f} s of "
        f"{len(firsts)} (min {min(firsts):.3f}, max {max(firsts):.3f}); goal <= "
        f"{GOAL_FIRST_S:g} s: {verdict(first <= GOAL_FIRST_S)}",
        f"  later player on the same edge (its copy there): median {later:.3f} s "
        f"(min {min(laters):.3f}, max {max(laters):.3f}); goal <= {GOAL_LATER_S:g} s: "
        f"{verdict(later <= GOAL_LATER_S)}",
        f"  glass-to-glass over {pictures} pictures: median {on_origin:.1f} ms on the origin, "
        f"{on_edge:.1f} ms on an edge: {added:.1f} ms added per hop (means {mean_origin:.1f} "
        f"and {mean_edge:.1f} ms: {mean_edge - mean_origin:+.1f}); goal <= {GOAL_HOP_MS:g} ms: "
        f"{verdict(added <= GOAL_HOP_MS)}",
    ]


# --- part 3: failover -----------------------------------------------------------------


async def republish(node: Node, within: float) -> tuple[WcsClient, int]:
    """Publish CLOCK on ``node`` until accepted; (client, attempts)."""
    client = WcsClient(node.url)
    await client.connect()
    deadline = time.monotonic() + within
    attempts = 0
    while True:
        attempts += 1
        try:
            stream = await client.publish(CLOCK, [ClockTrack()], video_codec="VP8")
            await stream.wait_status("PUBLISHING", timeout=5)
            return client, attempts
        except (WcsError, TimeoutError):
            if time.monotonic() > deadline:
                await client.close()
                raise
            if not client.connected:
                await client.close()
                client = WcsClient(node.url)
                await client.connect()
            await asyncio.sleep(0.1)


def drawn_after(stamp: int, since: int) -> bool:
    """The clock drawn in a picture (ms modulo 2**24) is later than ``since``."""
    return 0 < (stamp - since) % (1 << BITS) < 1 << (BITS - 1)


async def watch(track: Any, fresh: asyncio.Future[float], since: int) -> None:
    """Decode ``track``; ``fresh`` gets the monotonic time of the first picture drawn
    after ``since`` (wall-clock ms modulo 2**24): the republished stream's."""
    decoder = av.CodecContext.create("vp8", "r")
    with contextlib.suppress(MediaStreamError):
        while not fresh.done():
            packet = await track.recv()
            with contextlib.suppress(av.error.FFmpegError):
                for picture in decoder.decode(packet):
                    if drawn_after(read_stamp(picture), since) and not fresh.done():
                        fresh.set_result(time.monotonic())


async def replay_when_stopped(player: Viewer, stream: ClientStream, fresh: asyncio.Future[float],
                              since: int, wait: float) -> tuple[float, int] | None:
    """If the edge player ends (STOPPED) within ``wait``: play again until PLAYING,
    watching the new track; (monotonic time it ended, play attempts). None: it never
    ended (the edge's pull followed the name to its new node)."""
    try:
        await asyncio.wait_for(stream.wait_end(), wait)
    except TimeoutError:
        return None
    ended = time.monotonic()
    attempts = 0
    while not fresh.done():
        attempts += 1
        try:
            again = await player.client.play(CLOCK, kinds=("video",))
            await again.wait_status("PLAYING")
        except (WcsError, TimeoutError):
            await asyncio.sleep(0.1)
            continue
        player.reader = asyncio.create_task(watch(again.tracks[0], fresh, since))
        break
    return ended, attempts


@dataclass
class Failover:
    """One failover, seconds from the kill."""

    killed: str
    target: str
    stopped: float | None  # the edge player ended (None: it never did)
    status: str  # how it ended
    replays: int  # play attempts after it ended
    republished: float
    attempts: int  # publish attempts until accepted
    picture: float  # the edge player's first picture of the republished stream


async def failover_once(current: Node, target: Node, publisher: WcsClient, edge: Node,
                        args: argparse.Namespace) -> tuple[Failover, WcsClient]:
    """Kill ``current`` (where ``publisher`` publishes) under a player on ``edge``; the
    publisher's stream republished on ``target``; (what happened, its client there)."""
    player = await viewer(edge)
    watcher: asyncio.Task[None] | None = None
    try:
        await player.play()
        await asyncio.sleep(2)
        assert player.stream is not None and player.reader is not None
        player.reader.cancel()
        stream, fresh = player.stream, asyncio.get_running_loop().create_future()
        since = int(time.time() * 1000) % (1 << BITS)
        killed = time.monotonic()
        os.kill(current.child.pid, signal.SIGKILL)
        watcher = asyncio.create_task(watch(stream.tracks[0], fresh, since))
        follow = asyncio.create_task(
            replay_when_stopped(player, stream, fresh, since, 3 * args.ttl + 10))
        republished, attempts = await republish(target, 30)
        at_pub = time.monotonic()
        at_picture = await asyncio.wait_for(fresh, 30)
        stopped = await follow
    finally:
        if watcher is not None:
            watcher.cancel()
        await asyncio.gather(player.close(), publisher.close(), return_exceptions=True)
    return Failover(current.name, target.name, stopped[0] - killed if stopped else None,
                    f"{stream.status} {stream.info!r}" if stopped else "",
                    stopped[1] if stopped else 0, at_pub - killed, attempts,
                    at_picture - killed), republished


async def wait_node(port: int, name: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if any(n.get("node") == name for n in await call(port, "/cluster/find_all") or []):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"node {name} did not join the cluster within {within:g} s")


def failover_row(k: int, f: Failover) -> str:
    stopped = f"{f.stopped:7.2f}" if f.stopped is not None else f"{'never':>7}"
    return (f"{k:>5} {f.killed + ' -> ' + f.target:<18} {stopped} {f.republished:10.2f} "
            f"{f.attempts:8d} {f.picture:8.2f}  "
            + (f"{f.status}, {f.replays} play attempts" if f.stopped is not None else
               "the edge's pull followed the name to its new node"))


async def failover_part(children: Children, workdir: Path, redis_url: str, origin: Node,
                        edge: Node, args: argparse.Namespace) -> list[str]:
    print(f"\n== 3. failover, {args.failovers} rounds: the node publishing {CLOCK!r} killed "
          f"(-9) under a player on {edge.name}, republished on a new node; "
          f"cluster_lease_ttl {args.ttl:g} s ==", flush=True)
    print(f"{'round':>5} {'killed -> target':<18} {'STOPPED':>7} {'republish':>10} "
          f"{'attempts':>8} {'picture':>8}\n{'':>5} {'':<18} {'s':>7} {'accepted s':>10} "
          f"{'':>8} {'again s':>8}", flush=True)
    busy0, total0 = machine_cpu()
    current = origin
    publisher, _ = await clock_publisher(origin)
    found: list[Failover] = []
    try:
        for k in range(args.failovers):
            target = await start_node(children, workdir, f"origin{k + 2}", redis_url, args)
            await wait_node(edge.http, target.name)
            result, publisher = await failover_once(current, target, publisher, edge, args)
            await children.stop(current.child)
            current = target
            found.append(result)
            print(failover_row(k + 1, result), flush=True)
    finally:
        await publisher.close()
    busy1, total1 = machine_cpu()
    stops = [f.stopped for f in found if f.stopped is not None]
    return [
        "", f"3. failover (cluster_lease_ttl {args.ttl:g} s, leases renewed every "
        f"{args.ttl / 3:g} s, an edge's pull retries every 0.5 s; machine "
        f"{100 * (busy1 - busy0) / (total1 - total0):.0f} % busy), median of {len(found)}:",
        f"  kill -> republish accepted on another node: "
        f"{statistics.median(f.republished for f in found):.2f} s",
        f"  kill -> the edge player's first picture of the republished stream: "
        f"{statistics.median(f.picture for f in found):.2f} s",
        f"  the edge player STOPPED in {len(stops)} of {len(found)} rounds"
        + (f" (after {statistics.median(stops):.2f} s, then played again)" if stops else "")
        + f"; in {len(found) - len(stops)} the edge's pull followed the name to the new node "
        "before its lease lapsed, the player's session went on",
    ]


# --- part 4: workers ------------------------------------------------------------------


def has_workers() -> str | None:
    """None when `hookcast serve --workers` exists, else why not."""
    try:
        out = subprocess.run([*hookcast_command(), "serve", "--help"], capture_output=True,
                             text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"`hookcast serve --help` failed: {error}"
    if "--workers" not in out:
        return "the installed hookcast has no `serve --workers` (not merged yet)"
    return None


def tree(pid: int) -> list[int]:
    """``pid`` and every descendant (from /proc/<pid>/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    todo += [int(c) for c in children.read().split()]
    return found


def tree_cpu(pid: int) -> float:
    total = 0.0
    for each in tree(pid):
        with contextlib.suppress(OSError):
            total += process_cpu(each)
    return total


class TreeRig(Rig):
    """A Rig whose server CPU is that of a process and all its descendants; it also
    keeps each process's own, for the busiest one (``busiest``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.each: list[tuple[float, dict[int, float]]] = []

    async def snapshot(self) -> fanout.Snapshot:
        snap = await super().snapshot()
        snap.cpu["server"] = tree_cpu(self.server.pid)
        each = {}
        for pid in tree(self.server.pid):
            with contextlib.suppress(OSError):
                each[pid] = process_cpu(pid)
        self.each.append((snap.t, each))
        return snap

    def busiest(self) -> float:
        """% of one core of the busiest server process over the last measure."""
        (t0, a), (t1, b) = self.each[-2:]
        return max((100 * (b[pid] - a[pid]) / (t1 - t0) for pid in b if pid in a), default=0.0)


async def start_workers(children: Children, workdir: Path, redis_url: str,
                        args: argparse.Namespace) -> tuple[Child, int, int]:
    home = workdir / "workers"
    for folder in ("conf", "plugins", "media", "records", "hooks"):
        (home / folder).mkdir(parents=True, exist_ok=True)
    ws, http = free_port(), free_port()
    (home / "conf" / "server.properties").write_text(
        f"ip={HOST}\nbind_address={HOST}\nws.port={ws}\nhttp.port={http}\n"
        + fanout.ONE_ADDRESS + cluster_properties(redis_url, None, args))
    argv = [*hookcast_command(), "serve", "--home", str(home), "--log-level", "WARNING",
            "--workers", "2"]
    server = await children.start("workers", argv, talk=False)
    await wait_listening(server, ws)
    nodes = await wait_nodes(http, 2)
    if len(nodes) < 2:
        raise RuntimeError(f"--workers 2: {len(nodes)} node(s) in the cluster:\n"
                           f"{tail(server.log)}")
    return server, ws, http


async def spread(http: int) -> dict[str, int]:
    """Players of STREAM per node (stream/find answers for the whole cluster); the
    pull of the worker without the publisher counts as a player of the other one."""
    found = await call(http, "/stream/find", {"name": STREAM, "published": False}) or []
    counts: dict[str, int] = {}
    for entry in found:
        node = str(entry.get("node") or "the process")  # no cluster: no node named
        counts[node] = counts.get(node, 0) + 1
    return counts


async def capacity(children: Children, label: str, server: Child, ws: int, http: int,
                   args: argparse.Namespace) -> list[tuple[Point, dict[str, int]]]:
    url = f"ws://{HOST}:{ws}/"
    publisher = await start_publisher(children, label, url, args)
    procs = [await start_players(children, f"{label}{i}", url) for i in range(2)]
    r = TreeRig(label, server, publisher, procs)
    rows: list[tuple[Point, dict[str, int]]] = []
    try:
        await asyncio.sleep(2)
        for n in args.worker_players:
            failed = await r.add_players(n)
            await asyncio.sleep(args.settle)
            point = await r.measure(args.seconds, 1, failed)
            point.extra["busiest"] = r.busiest()
            where = await spread(http)
            rows.append((point, where))
            print(worker_row(point, where), flush=True)
            if point.below_goal and len(rows) >= 2 and rows[-2][0].below_goal:
                break  # two steps in a row below the goal: the capacity is behind
    finally:
        for child in [publisher, *procs]:
            await children.stop(child)
    return rows


WORKER_HEADER = (
    f"{'server':<10} {'N':>4} {'server':>7} {'busiest':>8} {'players':>8} {'pub':>5} "
    f"{'machine':>8} {'others':>7} {'pub':>5} {'player frames':>15} {'<99%':>5}  "
    "players per node\n"
    f"{'':<10} {'':>4} {'%core':>7} {'process':>8} {'%core':>8} {'%core':>5} {'%all':>8} "
    f"{'%all':>7} "
    f"{'fps':>5} {'min / median %':>15}"
)


def worker_row(p: Point, where: dict[str, int]) -> str:
    flags = "  SATURATED" if fanout.saturated_point(p) else ""
    if p.failed:
        flags += f"  ({p.failed} failed to start)"
    nodes = ", ".join(f"{n}: {c}" for n, c in sorted(where.items()))
    return (f"{p.server:<10} {p.players:>4} {p.server_cpu:7.1f} {p.extra['busiest']:8.1f} "
            f"{p.players_cpu:8.1f} "
            f"{p.publisher_cpu:5.1f} {p.machine:8.0f} {p.others:7.0f} {p.publisher_fps:5.1f} "
            f"{p.frames_min_pct:7.1f} / {p.frames_median_pct:5.1f} {p.below_goal:5d}  "
            f"{nodes}{flags}")


def projection(rows: list[tuple[Point, dict[str, int]]]) -> float | None:
    """Players at which the busiest server process would use a whole core, from the
    line through the first and the last step (None without two usable steps)."""
    usable = [p for p, _ in rows if fanout.valid(p) and not p.failed]
    if len(usable) < 2 or usable[-1].players == usable[0].players:
        return None
    first, last = usable[0], usable[-1]
    slope = (last.extra["busiest"] - first.extra["busiest"]) / (last.players - first.players)
    if slope <= 0:
        return None
    return first.players + (100 - first.extra["busiest"]) / slope


def served(rows: list[tuple[Point, dict[str, int]]]) -> tuple[int, bool]:
    """Largest N where every player got >= GOAL_FRAMES % (and the publisher ran at full
    rate); True when even the largest N measured was served (a lower bound)."""
    good = [p.players for p, _ in rows if fanout.valid(p) and p.below_goal == 0 and not p.failed]
    best = max(good, default=0)
    return best, bool(rows) and best == rows[-1][0].players


async def workers_part(children: Children, workdir: Path, redis_url: str,
                       args: argparse.Namespace) -> list[str]:
    print(f"\n== 4. workers: one process vs serve --workers 2, players "
          f"{args.worker_players} on the public port ==", flush=True)
    why = None if args.skip_workers else has_workers()
    if args.skip_workers:
        why = "--skip-workers"
    if why:
        return ["", f"4. workers: skipped ({why})"]
    print(WORKER_HEADER, flush=True)
    single, ws, http = await start_hookcast(children, workdir, "one-process")
    one = await capacity(children, "1 process", single, ws, http, args)
    await children.stop(single)
    workers, ws, http = await start_workers(children, workdir, redis_url, args)
    two = await capacity(children, "2 workers", workers, ws, http, args)
    await children.stop(workers, grace=40)
    (a, a_bound), (b, b_bound) = served(one), served(two)
    lines = ["", f"4. workers (>= {GOAL_FRAMES:.0f} % of the frames for every player, the "
             "minimum over players; server CPU: all worker processes summed):"]
    bound = " (at least: the largest step measured)"
    lines.append(f"  one process served {a} players{bound if a_bound else ''}; 2 workers "
                 f"served {b}{bound if b_bound else ''}")
    if a:
        ratio = b / a
        lines.append(f"  ratio {ratio:.2f} (goal >= {GOAL_WORKERS}: "
                     f"{verdict(ratio >= GOAL_WORKERS)})"
                     + ("; the one-process figure is a lower bound, so is not the ratio"
                        if a_bound else ""))
    projected = [projection(rows) for rows in (one, two)]
    if all(projected):
        p1, p2 = projected
        lines.append(
            f"  projected (not measured): the busiest server process grows by "
            f"{100 / p1:.3f} and {100 / p2:.3f} % of a core per player, so one process "
            f"would reach a full core at about {p1:.0f} players and 2 workers at about "
            f"{p2:.0f}: {p2 / p1:.2f}x, on a host whose cores are not also running the "
            f"load generators (goal >= {GOAL_WORKERS})")
    saturated = [f"{p.server} N={p.players}" for rows in (one, two) for p, _ in rows
                 if fanout.saturated_point(p)]
    if saturated:
        lines.append(f"  SATURATED (the machine, load generators included, had no idle CPU): "
                     f"{', '.join(saturated)}")
    return lines


# --- the run --------------------------------------------------------------------------


async def part(title: str, work: Awaitable[list[str]]) -> None:
    """Run one part and print what it found; a part that fails is reported (with where
    its logs are) and the next one runs."""
    try:
        lines = await work
    except Exception as error:  # a boundary: one part
        lines = ["", f"{title}: failed: {type(error).__name__}: {error}"]
    print("\n".join(lines), flush=True)


async def edges_and_reference(children: Children, workdir: Path, origin: Node,
                              edges: list[Node], args: argparse.Namespace) -> list[str]:
    steps = await edges_part(children, workdir, origin, edges, args)
    single = await single_reference(workdir, args)
    return edges_summary(steps, single)


async def cluster_parts(children: Children, workdir: Path, redis_url: str,
                        args: argparse.Namespace) -> None:
    origin = await start_node(children, workdir, "origin", redis_url, args)
    edges = [await start_node(children, workdir, f"edge{i + 1}", redis_url, args, args.linger)
             for i in range(EDGES)]
    nodes = await wait_nodes(origin.http, 1 + EDGES)
    print(f"cluster: {', '.join(n['node'] for n in nodes)}", flush=True)
    if not args.skip_edges:
        await part("1. edges", edges_and_reference(children, workdir, origin, edges, args))
    compat.install()  # the players in this process receive encoded frames, PyAV decodes
    if not args.skip_timing:
        await part("2. first frame and latency", timing_part(origin, edges, args))
    if not args.skip_failover:
        await part("3. failover",
                   failover_part(children, workdir, redis_url, origin, edges[0], args))
    for node in edges:
        await children.stop(node.child)


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="hookcast-bench-cluster-"))
    children = Children(workdir)
    compat.use_host_addresses(HOST)
    began = time.monotonic()
    busy0, total0 = machine_cpu()
    print(f"cluster benchmark: 640x480@30 VP8 at {args.bitrate / 1e6:.2f} Mb/s + Opus, "
          f"{NCPU} CPUs, cluster_lease_ttl {args.ttl:g} s, edges' cluster_edge_linger "
          f"{args.linger:g} s; logs in {workdir}\n"
          "%core: one process, 100 = one core; machine: every core (100 = all busy); "
          "others: the part of it used by processes outside this benchmark; player frames: "
          "frames each player received / frames the publisher sent, same window", flush=True)
    try:
        _, redis_url = await start_redis(children, workdir)
        if not (args.skip_edges and args.skip_timing and args.skip_failover):
            await cluster_parts(children, workdir, redis_url, args)
        await part("4. workers", workers_part(children, workdir, redis_url, args))
    finally:
        await children.stop_all()
        if not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
    busy1, total1 = machine_cpu()
    print(f"\nthe machine was {100 * (busy1 - busy0) / (total1 - total0):.0f} % busy over the "
          f"whole run ({NCPU} cores); total run time {time.monotonic() - began:.0f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--players", type=parse_ns, default=None,
                        help="players per edge, in steps (default 10,20,40,60)")
    parser.add_argument("--worker-players", type=parse_ns, default=None,
                        help="players on the public port, in steps (default "
                             "50,100,150,200,250,300,350)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="measurement window (default 12)")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--bitrate", type=float, default=1.5, help="Mb/s (default 1.5)")
    parser.add_argument("--ttl", type=float, default=3.0, help="cluster_lease_ttl")
    parser.add_argument("--linger", type=float, default=1.0,
                        help="the edges' cluster_edge_linger (default 1 s)")
    parser.add_argument("--play-wait", type=float, default=5.0, help="cluster_play_wait")
    parser.add_argument("--samples", type=int, default=None,
                        help="first-frame samples (default 6)")
    parser.add_argument("--latency-seconds", type=float, default=None,
                        help="latency window (default 15)")
    parser.add_argument("--failovers", type=int, default=None,
                        help="failover rounds (default 3)")
    parser.add_argument("--skip-edges", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-failover", action="store_true")
    parser.add_argument("--skip-workers", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: players 5,10 per edge, workers 20,40, 5 s windows, "
                             "3 samples")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    quick = args.quick
    args.players = args.players or parse_ns("5,10" if quick else "10,20,40,60")
    args.worker_players = args.worker_players or parse_ns(
        "20,40" if quick else "50,100,150,200,250,300,350")
    args.seconds = args.seconds or (5.0 if quick else 12.0)
    args.samples = args.samples or (3 if quick else 6)
    args.failovers = args.failovers or (2 if quick else 3)
    args.latency_seconds = args.latency_seconds or (5.0 if quick else 15.0)
    args.bitrate = int(args.bitrate * 1e6)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
