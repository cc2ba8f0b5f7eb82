"""WHIP/WHEP benchmark: does a WHIP publisher cost the server what a WCS publisher costs,
and a WHEP player what a WCS player costs? Both measured side by side in one run.

    python bench/whip.py                 # or: make bench-whip (about 6 minutes)
    python bench/whip.py --quick         # a smoke run (about 70 s)
    python bench/whip.py --help          # publishers, players, windows, rounds

One ``hookcast serve`` per part (a home of its own, 127.0.0.1, free ports, every other
property at its default but the per-address limits, which one address cannot meet).

1. Ingest: --publishers publishers each replay the same pre-encoded clip (bench/clips.py:
   640x480@30 VP8 at 1.5 Mb/s with Opus; aiortc's sender only packetises it), either
   over WCS signalling (bench/recording_load.py, as bench/ingest.py) or over WHIP (this
   script's ``publishers`` role: the same ClipTracks in the same aiortc peer connection
   WcsClient.publish makes, sendonly, VP8 and Opus forced, its offer POSTed to
   /whip/<name>). Only the server's side differs.
2. Players: one WCS publisher (the same clip), then --players players over WCS
   signalling (bench/loadgen.py ``players --mode count``) or over WHEP (``whep-players
   --mode count``: the peer connection WcsClient.play makes, its offer POSTed to
   /whep/<name>, the same count-mode receive path: RTP counted off the ICE socket,
   receiver reports and a REMB every 500 ms sent back).

Each case runs --rounds times in ABBA order (WCS, WHIP, then WHIP, WCS, ...). Before each
case a reference window: the server idle (ingest) or with the publisher alone (players);
the case's cost is its window less that reference, divided by the publishers or players.
Per window: the server's CPU (utime+stime of the whole process, /proc, 100 = one core),
the load generators' CPU, the machine's busy share (100 = every core) and the part used
by processes outside the benchmark (*others*; > 10 % flags the window *disturbed*),
frames: the server's count of each publisher's frames received (REST stream/find with
display=metrics, VIDEO_FRAMES) against the frames sent, or each player's complete
frames against the publisher's, in the same window (min / median).

Goals (the issue): WHIP/WCS per publisher and WHEP/WCS per player within +-20 %.
Nothing is asserted: it prints what it measured and whether each goal was met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import pickle
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fanout import HERE, HOST, NCPU, ROOT, Child, Children, machine_cpu, process_cpu

GOAL_SPREAD = 0.2  # WHIP/WCS and WHEP/WCS within +-20 %
GOAL_FRAMES = 99.0  # % of the frames sent, worst stream or player
DISTURBED = 10.0  # % of all cores used outside the benchmark worth a flag
BITRATE = 1_500_000
SELF = Path(__file__).resolve()
ENDED = ("UNPUBLISHED", "STOPPED", "FAILED")


# --- the WHIP publishers (run as: whip.py publishers ...) -------------------------------


async def whip_publishers(args: argparse.Namespace, clip: dict[str, Any]) -> None:
    """bench/recording_load.py over WHIP: --count peer connections replaying the clip,
    published as <name>-<i>; ``ready`` once every one is connected, ``snap`` -> packets
    sent; EOF: DELETE each session, close."""
    import aiohttp
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from clips import ClipTrack
    from loadgen import reply, stdin_lines

    from hookcast.rtc.aiortc import force_codec

    commands = await stdin_lines()
    pcs: list[RTCPeerConnection] = []
    tracks: list[ClipTrack] = []
    locations: list[str] = []
    start = time.time() + 0.5
    async with aiohttp.ClientSession() as http:
        try:
            for index in range(args.count):
                pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
                pcs.append(pc)
                for kind, mime in (("video", f"video/{args.codec}"), ("audio", "audio/opus")):
                    track = ClipTrack(kind, clip[kind], start)
                    tracks.append(track)
                    force_codec(pc.addTransceiver(track, direction="sendonly"), mime)
                await pc.setLocalDescription(await pc.createOffer())
                async with http.post(f"{args.url.rstrip('/')}/whip/{args.name}-{index}",
                                     data=pc.localDescription.sdp.encode(),
                                     headers={"Content-Type": "application/sdp"}) as answer:
                    body = await answer.text()
                    if answer.status != 201:
                        raise RuntimeError(f"WHIP answered {answer.status}: {body[:200]}")
                    locations.append(answer.headers["Location"])
                await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
            await connected(pcs, 30)
            reply({"event": "ready", "names": [f"{args.name}-{i}" for i in range(args.count)]})
            while line := await commands.readline():
                if line.decode().strip() == "snap":
                    reply({"t": time.monotonic(),
                           "video": sum(t.sent for t in tracks if t.kind == "video"),
                           "audio": sum(t.sent for t in tracks if t.kind == "audio")})
        finally:
            for location in locations:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.delete(location, timeout=aiohttp.ClientTimeout(total=5)):
                        pass
            for pc in pcs:
                await pc.close()


async def connected(pcs: list[Any], within: float) -> None:
    deadline = time.monotonic() + within
    while any(pc.connectionState != "connected" for pc in pcs):
        states = {pc.connectionState for pc in pcs}
        if "failed" in states or "closed" in states or time.monotonic() > deadline:
            raise RuntimeError(f"WHIP peer connections not connected: {sorted(states)}")
        await asyncio.sleep(0.1)


def publishers_main(argv: list[str]) -> int:
    from loadgen import die_with_parent

    from hookcast.rtc import aiortc as compat

    die_with_parent()
    parser = argparse.ArgumentParser(prog="whip.py publishers",
                                     description=whip_publishers.__doc__)
    parser.add_argument("--url", required=True, help="the server's HTTP root")
    parser.add_argument("--codec", default="VP8")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--clip", required=True)
    parser.add_argument("--name", default="whip")
    args = parser.parse_args(argv)
    compat.use_host_addresses(HOST)
    asyncio.run(whip_publishers(args, pickle.loads(Path(args.clip).read_bytes())))
    return 0


# --- the server and its REST API --------------------------------------------------------


@dataclass
class Server:
    child: Child
    ws: str  # ws://127.0.0.1:PORT/
    http: str  # http://127.0.0.1:PORT/
    http_port: int


async def start_server(children: Children, workdir: Path, name: str) -> Server:
    from recording import start_hookcast

    child, ws_port, http_port = await start_hookcast(children, workdir, name)
    return Server(child, f"ws://{HOST}:{ws_port}/", f"http://{HOST}:{http_port}/", http_port)


def find(port: int, published: bool) -> list[dict[str, Any]]:
    """stream/find with each stream's metrics ([] when none)."""
    request = urllib.request.Request(
        f"http://{HOST}:{port}/rest-api/stream/find",
        data=json.dumps({"published": published, "display": ["metrics"]}).encode(),
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return []
        raise


async def streams(port: int, published: bool, prefix: str) -> list[dict[str, Any]]:
    found = await asyncio.to_thread(find, port, published)
    return [s for s in found if str(s.get("name", "")).startswith(prefix)]


async def wait_streams(port: int, published: bool, prefix: str, count: int,
                       status: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        found = await streams(port, published, prefix)
        if sum(s.get("status") == status for s in found) >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} streams {prefix}* {status} expected, the server has "
                               f"{[s.get('status') for s in found]}")
        await asyncio.sleep(0.2)


async def wait_gone(port: int, published: bool, prefix: str, within: float = 15) -> None:
    """Until the server has ended every stream ``prefix``*; says so if it has not."""
    deadline = time.monotonic() + within
    while True:
        found = [s for s in await streams(port, published, prefix)
                 if s.get("status") not in ENDED]
        if not found:
            return
        if time.monotonic() > deadline:
            print(f"    {len(found)} streams {prefix}* still on the server {within:g} s after "
                  f"their clients left", flush=True)
            return
        await asyncio.sleep(0.2)


# --- windows ----------------------------------------------------------------------------


@dataclass
class Window:
    """One measured window."""

    part: str  # "ingest" or "players"
    case: str  # "idle" / "publisher" (references), "wcs", "whip", "whep"
    units: int  # publishers or players in it
    seconds: float
    server: float  # % of one core
    load: float  # % of one core: the load generators of this window together
    machine: float  # % of all cores
    others: float  # % of all cores used by processes outside the benchmark
    frames: tuple[float, float] | None = None  # min / median % of the frames sent
    mbps: float | None = None  # median payload a player received
    net: float | None = None  # (server - reference) / units, % of one core
    seen: int = 0  # the server's streams of the case, as stream/find lists them

    @property
    def disturbed(self) -> bool:
        return self.others > DISTURBED


async def cpu_window(server: Child, loads: list[Child], seconds: float) -> dict[str, float]:
    """The server's, the load generators' and the machine's CPU over ``seconds``."""
    def read() -> tuple[float, float, float, float, float, float]:
        busy, total = machine_cpu()
        return (time.monotonic(), process_cpu(server.pid),
                sum(process_cpu(c.pid) for c in loads), busy, total, time.process_time())

    t0, s0, l0, b0, m0, o0 = read()
    await asyncio.sleep(seconds)
    t1, s1, l1, b1, m1, o1 = read()
    elapsed = t1 - t0
    server, load, own = (100 * (s1 - s0) / elapsed, 100 * (l1 - l0) / elapsed,
                         100 * (o1 - o0) / elapsed)
    machine = 100 * (b1 - b0) / (m1 - m0)
    others = max(0.0, machine - (server + load + own) / NCPU)
    return {"seconds": elapsed, "server": server, "load": load, "machine": machine,
            "others": others}


async def leave(children: Children, child: Child, within: float = 20.0) -> None:
    """End a load generator the way a client leaves: EOF on its stdin, and it ends its
    sessions itself (WCS: closes its WebSocket; WHIP, WHEP: DELETEs each one) and exits.
    Killed without a goodbye, a WHIP or WHEP client would leave its sessions on the
    server until ICE consent fails: the next reference window would pay for them."""
    assert child.proc.stdin is not None
    child.proc.stdin.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(child.proc.wait(), within)
    await children.stop(child)


def spread(values: list[float]) -> tuple[float, float] | None:
    return (min(values), statistics.median(values)) if values else None


# --- part 1: ingest ---------------------------------------------------------------------


async def start_publishers(children: Children, server: Server, case: str, count: int,
                           clip: Path, name: str) -> Child:
    if case == "wcs":
        argv = [sys.executable, str(HERE / "recording_load.py"), "--url", server.ws,
                "--codec", "VP8", "--count", str(count), "--clip", str(clip), "--name", name]
    else:
        argv = [sys.executable, str(SELF), "publishers", "--url",
                server.http, "--count", str(count), "--clip", str(clip), "--name", name]
    child = await children.start(f"publishers-{name}", argv, talk=True)
    await child.read(60 + 5 * count)
    return child


async def ingest_case(children: Children, server: Server, case: str, count: int,
                      clip: Path, name: str, args: argparse.Namespace) -> tuple[Window, Window]:
    """(the idle reference, the window with ``count`` publishers of ``case``)."""
    idle = Window("ingest", "idle", 0, **await cpu_window(server.child, [], args.idle_seconds))
    load = await start_publishers(children, server, case, count, clip, name)
    try:
        await wait_streams(server.http_port, True, f"{name}-", count, "PUBLISHING")
        await asyncio.sleep(args.settle)
        sent0 = await load.ask("snap")
        got0 = {s["name"]: s["metrics"].get("VIDEO_FRAMES", 0)
                for s in await streams(server.http_port, True, f"{name}-")}
        cpu = await cpu_window(server.child, [load], args.seconds)
        sent1 = await load.ask("snap")
        found = await streams(server.http_port, True, f"{name}-")
    finally:
        await leave(children, load)
    got1 = {s["name"]: s["metrics"].get("VIDEO_FRAMES", 0) for s in found}
    sent = (sent1["video"] - sent0["video"]) / count  # frames each publisher sent
    received = [100 * (got1[n] - got0.get(n, 0)) / sent for n in got1] if sent else []
    window = Window("ingest", case, count, **cpu, frames=spread(received),
                    net=(cpu["server"] - idle.server) / count,
                    seen=sum(s.get("status") == "PUBLISHING" for s in found))
    await wait_gone(server.http_port, True, f"{name}-")
    return idle, window


# --- part 2: players --------------------------------------------------------------------


async def players_case(children: Children, server: Server, publisher: Child, source: str,
                       case: str, count: int, index: int,
                       args: argparse.Namespace) -> tuple[Window, Window]:
    """(the publisher-alone reference, the window with ``count`` players of ``case``)."""
    alone = Window("players", "publisher", 0,
                   **await cpu_window(server.child, [publisher], args.idle_seconds))
    role, url = ("players", server.ws) if case == "wcs" else ("whep-players", server.http)
    players = await children.start(f"{case}-players-{index}", [
        sys.executable, str(HERE / "loadgen.py"), role, "--url", url, "--name", source,
        "--mode", "count"], talk=True)
    try:
        added = await players.ask({"cmd": "add", "count": count}, timeout=60 + 3 * count)
        for error in added["errors"]:
            print(f"    a {case} player failed to start: {error}", flush=True)
        await asyncio.sleep(args.settle)
        sent0, got0 = await publisher.ask("snap"), await players.ask("snap")
        cpu = await cpu_window(server.child, [publisher, players], args.seconds)
        sent1, got1 = await publisher.ask("snap"), await players.ask("snap")
        found = await streams(server.http_port, False, source)
    finally:
        await leave(children, players)
    sent = sent1["video"] - sent0["video"]
    before = got0["players"]
    frames = [100 * (b[0] - a[0]) / sent for a, b in zip(before, got1["players"], strict=False)
              ] if sent else []
    mbps = [8 * (b[1] - a[1]) / cpu["seconds"] / 1e6
            for a, b in zip(before, got1["players"], strict=False)]
    playing = added["players"]
    window = Window("players", case, playing, **cpu, frames=spread(frames),
                    mbps=statistics.median(mbps) if mbps else None,
                    net=(cpu["server"] - alone.server) / max(playing, 1),
                    seen=sum(s.get("status") == "PLAYING" for s in found))
    await wait_gone(server.http_port, False, source)
    return alone, window


# --- printing ---------------------------------------------------------------------------

HEADER = ("part     case       N  server  net per  load gen  machine  others  frames sent->got  "
          "player  server\n"
          "                        %core  unit      %core     %all    %all   min / median %    "
          "  Mb/s  sees")


def row(w: Window) -> str:
    net = f"{w.net:7.3f}" if w.net is not None else f"{'':7}"
    frames = (f"{w.frames[0]:6.1f} / {w.frames[1]:6.1f}" if w.frames else f"{'':15}")
    mbps = f"{w.mbps:6.2f}" if w.mbps is not None else f"{'':6}"
    seen = f"{w.seen:5d}" if w.units else f"{'':5}"
    flags = ("  disturbed" if w.disturbed else "") + ("  SATURATED" if w.machine >= 97 else "")
    return (f"{w.part:<8} {w.case:<9} {w.units:3d}  {w.server:6.1f}  {net}  {w.load:8.1f}  "
            f"{w.machine:7.0f}  {w.others:6.1f}  {frames}    {mbps}  {seen}{flags}")


def compare(label: str, unit: str, found: list[Window], part: str, base: str,
            other: str) -> list[str]:
    """The summary lines of one part: each case's mean net cost per unit, the ratio, the
    goal, frames and how busy the machine was."""
    windows = [w for w in found if w.part == part]
    nets = {case: [w.net for w in windows if w.case == case and w.net is not None]
            for case in (base, other)}
    if not all(nets.values()):
        return [f"{label}: not measured"]
    mean = {case: statistics.fmean(values) for case, values in nets.items()}
    lines = [f"{label}: server CPU per {unit}, net of the reference window, mean of "
             f"{len(nets[base])}: {base.upper()} {mean[base]:.3f} % of a core "
             f"({', '.join(f'{v:.3f}' for v in nets[base])}), {other.upper()} "
             f"{mean[other]:.3f} % ({', '.join(f'{v:.3f}' for v in nets[other])})"]
    if mean[base] > 0:
        ratio = mean[other] / mean[base]
        ok = abs(ratio - 1) <= GOAL_SPREAD
        lines.append(f"  {other.upper()}/{base.upper()} = {ratio:.2f} (goal within "
                     f"+-{GOAL_SPREAD:.0%}: {'met' if ok else 'NOT met'})")
    else:
        lines.append(f"  {base.upper()} cost nothing measurable: no ratio")
    measured = [w for w in windows if w.case in (base, other)]
    worst = min((w.frames[0] for w in measured if w.frames), default=0.0)
    lines.append(f"  frames: worst {worst:.1f} % of those sent (goal >= {GOAL_FRAMES:.0f} %: "
                 f"{'met' if worst >= GOAL_FRAMES else 'NOT met'})")
    lines.append(f"  machine {min(w.machine for w in windows):.0f}-"
                 f"{max(w.machine for w in windows):.0f} % busy, others "
                 f"{min(w.others for w in windows):.1f}-{max(w.others for w in windows):.1f} "
                 f"% of all cores" + ("; some windows disturbed: figures there may be "
                                     "inflated" if any(w.disturbed for w in windows) else ""))
    return lines


def abba(rounds: int, first: str, second: str) -> list[str]:
    order: list[str] = []
    for n in range(rounds):
        order += [first, second] if n % 2 == 0 else [second, first]
    return order


# --- the run ----------------------------------------------------------------------------


async def ingest(children: Children, workdir: Path, clip: Path,
                 args: argparse.Namespace) -> list[Window]:
    server = await start_server(children, workdir, "ingest")
    windows: list[Window] = []
    try:
        await asyncio.sleep(2)
        for index, case in enumerate(abba(args.rounds, "wcs", "whip")):
            for window in await ingest_case(children, server, case, args.publishers, clip,
                                            f"{case}{index}", args):
                windows.append(window)
                print(row(window), flush=True)
    finally:
        await children.stop(server.child)
    return windows


async def players(children: Children, workdir: Path, clip: Path,
                  args: argparse.Namespace) -> list[Window]:
    server = await start_server(children, workdir, "players")
    windows: list[Window] = []
    try:
        publisher = await start_publishers(children, server, "wcs", 1, clip, "src")
        await wait_streams(server.http_port, True, "src-0", 1, "PUBLISHING")
        await asyncio.sleep(args.settle)
        for index, case in enumerate(abba(args.rounds, "wcs", "whep")):
            for window in await players_case(children, server, publisher, "src-0", case,
                                             args.players, index, args):
                windows.append(window)
                print(row(window), flush=True)
        await children.stop(publisher)
    finally:
        await children.stop(server.child)
    return windows


def loadavg() -> str:
    with open("/proc/loadavg") as load:
        return " ".join(load.read().split()[:3])


async def run(args: argparse.Namespace) -> int:
    from clips import load

    began = time.monotonic()
    cache = ROOT / ".cache" / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    load("VP8", BITRATE, cache)
    clip = cache / f"clip-VP8-{BITRATE}.pickle"
    workdir = Path(tempfile.mkdtemp(prefix="hookcast-bench-whip-"))
    children = Children(workdir)
    print(f"WHIP/WHEP benchmark: VP8 640x480@30 at {BITRATE / 1e6:.1f} Mb/s + Opus (a clip "
          f"replayed, not encoded); {args.publishers} publishers, {args.players} players; "
          f"{args.seconds:g} s windows after {args.settle:g} s settling, references "
          f"{args.idle_seconds:g} s; {args.rounds} round(s), ABBA; {NCPU} CPUs, load average "
          f"{loadavg()}; logs in {workdir}")
    print("server %core: the server process, 100 = one core; net per unit: (server - the "
          "reference window before it) / N\nload gen: the publishers' and players' "
          "processes; machine: every core (100 = all busy); others: the part of it outside "
          "this benchmark\nframes: the server's received frames per publisher (ingest) or "
          "each player's complete frames (players) / frames sent, same window; server sees: "
          "its PUBLISHING or PLAYING streams of the case\n")
    print(HEADER, flush=True)
    found: list[Window] = []
    try:
        if not args.skip_ingest:
            found += await ingest(children, workdir, clip, args)
        if not args.skip_players:
            found += await players(children, workdir, clip, args)
    except asyncio.CancelledError:
        print("\ninterrupted: stopping every process", file=sys.stderr)
        return 130
    finally:
        await children.stop_all()
    print()
    if not args.skip_ingest:
        print("\n".join(compare("1. ingest", "publisher", found, "ingest", "wcs", "whip")))
    if not args.skip_players:
        print("\n".join(compare("2. players", "player", found, "players", "wcs", "whep")))
    print(f"\nload average at the end {loadavg()}; total run time "
          f"{time.monotonic() - began:.0f} s; logs in {workdir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["publishers"]:  # the WHIP load generator, started by the benchmark
        return publishers_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--publishers", type=int, default=10,
                        help="publishers per ingest window (default 10)")
    parser.add_argument("--players", type=int, default=30,
                        help="players per players window (default 30)")
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="measured window (default 15)")
    parser.add_argument("--idle-seconds", type=float, default=8.0,
                        help="the reference window before each case (default 8)")
    parser.add_argument("--settle", type=float, default=4.0,
                        help="seconds between the load being up and the window (default 4)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="WCS/WHIP (WHEP) pairs, ABBA order (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 4 publishers, 10 players, 6 s windows, 1 round")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-players", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.publishers, args.players, args.rounds = 4, 10, 1
        args.seconds, args.idle_seconds, args.settle = 6.0, 3.0, 4.0
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
