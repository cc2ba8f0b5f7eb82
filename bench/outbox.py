"""REST-hook outbox benchmark (issue 26): 5,000 streams' events with the backend down,
then up.

    python bench/outbox.py           # or: make bench-outbox (about 1 minute)
    python bench/outbox.py --quick   # a smoke run: 500 streams, shorter windows (about 20 s)
    python bench/outbox.py --help    # --streams, --sessions, --down, --ops, --rounds, ...

Two ``hookcast serve`` processes (homes of their own, 127.0.0.1, free ports, every
property at its default but the per-address limits, which one address cannot meet, and
``rest_retry_min_delay=5``, its default, written down): *notify*, whose defaultApp
enables StreamStatusEvent and ConnectionStatusEvent (the outbox's path), and *plain*,
whose defaultApp enables no method (no notification is made). Their hooks go to a
backend started by this script (its ``backend`` role: aiohttp, answers 200 at once,
keeps each ``webhook-id`` with the event's method, key and status; no file writing, so
it is not what limits the rate).

The cheap streams: --sessions WCS sessions (no WebRTC) each send publishStream requests
whose SDP the server cannot use ("v=0" alone): each is a stream of its own (a
mediaSessionId, a name) that goes PENDING -> FAILED, about 0.3 ms of server CPU, and
makes one StreamStatusEvent (FAILED), through the same engine.stop ->
after_stream_status -> rest_hooks._notify -> Outbox.add as every stream's end; a real
stream costs about 7 ms in aiortc for the same notifications. A stream's life makes two
StreamStatusEvents (PUBLISHING, UNPUBLISHED), so --streams 5000 sends 10,000 requests
(--events-per-stream 2), and each session adds its ESTABLISHED and DISCONNECTED.

Loop lag: nothing inside ``hookcast serve`` measures it, so a probe process (this
script's ``probe`` role) GETs /rest-api/health every 20 ms, one at a time, and keeps the
round trips: a late event loop answers late. The idle server's round trip (about 1-2
ms of HTTP on both sides) is printed first; the goal is judged on the round trip itself
(so a little stricter than the loop's lag).

1. Writing (backend down, nothing listening on its port): the same requests, --rate a
   second (1,000: 5,000 streams ending within 10 s; 0 = as fast as the sessions go),
   against *plain* (reference: no notification) then *notify*; how long until the
   outbox holds them all (its pending depth on /metrics), and the round trips meanwhile.
2. Down: --down seconds more; every row is tried and backs off (5 s, doubling, +-20 %).
3. Draining: the backend starts. Time to the first delivery, to every event delivered
   (the backend's count of distinct ``webhook-id``s), the rate (events/s: over the
   whole drain and per second, the slowest full second), the round trips meanwhile; and
   whether every event came (each stream's FAILED, each session's two), once.
4. The path: --ops times, one after the other, a WCS session connects, publishes (the
   SDP refused: FAILED), and leaves, on *notify* and on *plain* in turn (ABBA, --rounds;
   the backend up). The client's times: connect (WebSocket + getUserData), publish
   (publishStream sent -> FAILED received: the session reads its next frame once
   ConnectionStatusEvent ESTABLISHED is written, so this wait is in it), and the whole.
   The stream's end and the disconnect are notified after the client was told, off its
   path. Median and p99 each side, and the difference.

Every window prints the server's CPU (utime+stime, /proc, 100 = one core), the
machine's busy share (100 = every core), the part of it outside this benchmark's
processes (*others*; > 10 % flags *disturbed*) and the load average. Goals (issue 26):
>= 1,000 events/s delivered after recovery, round trip p99 <= 20 ms while writing and
draining, <= 1 ms added per publish/stop. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from fanout import (
    HOST,
    IDLE,
    LINE,
    NCPU,
    Child,
    Children,
    find_py_spy,
    free_port,
    machine_cpu,
    process_cpu,
)
from recording import start_hookcast

GOAL_RATE = 1000.0  # events/s delivered after the backend is back
GOAL_LAG = 20.0  # ms, p99, while writing and while draining
GOAL_PATH = 1.0  # ms added to a publish/stop
METHODS = ["StreamStatusEvent", "ConnectionStatusEvent"]
BAD_SDP = "v=0\r\n"  # refused at once: "invalid SDP offer"
PROPERTIES = "rest_retry_min_delay=5\n"
OTHERS_WARN = 10.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0


def loadavg() -> str:
    with open("/proc/loadavg") as load:
        return " ".join(load.read().split()[:3])


# --- the backend (a child process) ------------------------------------------------------


def run_backend(port: int) -> None:
    """Answers every hook 200 at once; GET /report: what it received."""
    from aiohttp import web

    seen: dict[str, list[Any]] = {}  # webhook-id -> [method, key, status, times received]
    per_second: Counter[int] = Counter()
    first: list[float] = []

    async def hook(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        now = time.time()
        first[:] = first or [now]
        per_second[int(now)] += 1
        event = request.headers.get("webhook-id", "")
        method = request.match_info["method"]
        key = body.get("sessionId") if method == "ConnectionStatusEvent" else \
            body.get("mediaSessionId")
        entry = seen.setdefault(event, [method, key, body.get("status"), 0])
        entry[3] += 1
        return web.json_response({})

    async def report(request: web.Request) -> web.Response:
        full = request.query.get("events") == "1"
        return web.json_response({
            "received": sum(per_second.values()), "distinct": len(seen),
            "first": first[0] if first else None, "per_second": sorted(per_second.items()),
            "events": list(seen.values()) if full else None})

    app = web.Application()
    app.router.add_post("/hooks/{method}", hook)
    app.router.add_get("/report", report)
    web.run_app(app, host=HOST, port=port, access_log=None,
                print=lambda *_: print(json.dumps({"listening": 1}), flush=True))


# --- the probe (a child process) --------------------------------------------------------


def run_probe() -> None:
    """GET /rest-api/health every 20 ms on the port it was last told ({"port": P});
    {"take": 1} answers the round trips (ms) since the last take."""
    asyncio.run(_probe())


async def _probe() -> None:
    port: list[int] = [0]
    samples: list[float] = []

    async def commands() -> None:
        while line := await asyncio.to_thread(sys.stdin.readline):
            command = json.loads(line)
            if "port" in command:
                port[0] = command["port"]
                samples.clear()
                print(json.dumps({"ok": 1}), flush=True)
            else:
                print(json.dumps({"rtt": samples[:]}), flush=True)
                samples.clear()

    reader = asyncio.create_task(commands())
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while not reader.done():
            started = time.perf_counter()
            if port[0]:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(f"http://{HOST}:{port[0]}/rest-api/health") as answer:
                        await answer.read()
                    samples.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(max(0.0, 0.02 - (time.perf_counter() - started)))


# --- the servers ----------------------------------------------------------------------


@dataclass
class Server:
    name: str
    child: Child
    ws_port: int
    http_port: int

    async def metrics(self, http: aiohttp.ClientSession) -> dict[str, float]:
        """The outbox's lines of /metrics: name{labels} -> value."""
        async with http.get(f"http://{HOST}:{self.http_port}/metrics") as answer:
            text = await answer.text()
        return {name: float(value) for name, _, value in
                (line.rpartition(" ") for line in text.splitlines())
                if name.startswith("hookcast_rest_outbox")}


async def start_server(children: Children, workdir: Path, name: str, hooks: str,
                       methods: list[str]) -> Server:
    home = workdir / name
    (home / "conf").mkdir(parents=True)
    (home / "conf" / "apps.json").write_text(json.dumps({"apps": [{
        "name": "defaultApp", "appKey": "defaultApp", "url": hooks, "methods": methods}]}))
    child, ws_port, http_port = await start_hookcast(children, workdir, name, PROPERTIES)
    return Server(name, child, ws_port, http_port)


# --- windows ----------------------------------------------------------------------------


@dataclass
class Window:
    """One measured stretch: CPU of the server and of the machine, the probe's round
    trips, the load average at its end."""

    phase: str
    server: str
    seconds: float
    server_core: float
    machine: float
    others: float
    rtt: list[float]
    load: str
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> str:
        flag = "  disturbed" if self.others > OTHERS_WARN else ""
        return (f"{self.phase:9} {self.server:7} {self.seconds:6.1f} {self.server_core:7.1f} "
                f"{self.machine:8.0f} {self.others:7.1f} {len(self.rtt):6d} "
                f"{statistics.median(self.rtt or [0]):6.1f} {percentile(self.rtt, 0.99):6.1f} "
                f"{max(self.rtt or [0]):6.1f}  {self.load}{flag}")


HEADER = (f"{'phase':9} {'server':7} {'s':>6} {'server':>7} {'machine':>8} {'others':>7} "
          f"{'probes':>6} {'rtt':>6} {'rtt':>6} {'rtt':>6}  load average\n"
          f"{'':9} {'':7} {'':>6} {'%core':>7} {'%all':>8} {'%all':>7} {'':>6} "
          f"{'p50 ms':>6} {'p99 ms':>6} {'max ms':>6}")


class Meter:
    """CPU and round trips over a window; ``ours`` are this benchmark's processes."""

    def __init__(self, probe: Child, ours: Callable[[], list[int]]) -> None:
        self.probe = probe
        self.ours = ours

    async def window(self, phase: str, server: Server, work: Awaitable[Any]) -> Window:
        await self.probe.ask({"port": server.http_port})
        pids = self.ours()
        cpu0 = {pid: process_cpu(pid) for pid in pids}
        busy0, total0 = machine_cpu()
        started = time.monotonic()
        extra = await work
        seconds = time.monotonic() - started
        busy1, total1 = machine_cpu()
        cpu1 = {pid: process_cpu(pid) for pid in self.ours()}  # the backend may be new
        rtt = (await self.probe.ask({"take": 1}))["rtt"]
        machine = 100 * (busy1 - busy0) / max(total1 - total0, 1e-9)
        ours = sum(cpu1[p] - cpu0.get(p, 0.0) for p in cpu1) / seconds / NCPU * 100
        window = Window(phase, server.name, seconds,
                        100 * (process_cpu(server.child.pid) - cpu0[server.child.pid]) / seconds,
                        machine, max(0.0, machine - ours), rtt, loadavg(), extra or {})
        print(window.row(), flush=True)
        return window


def pids(children: Children) -> list[int]:
    return [os.getpid(), *(c.pid for c in children.children if c.proc.returncode is None)]


# --- the load: sessions that publish streams the server refuses -------------------------


async def session(http: aiohttp.ClientSession, server: Server, streams: int,
                  every: float, window: int = 8) -> list[str]:
    """One WCS session publishes ``streams`` refused streams, one every ``every`` seconds
    (0: as fast as it can), ``window`` at a time at most, and leaves; its sessionId and
    the streams' mediaSessionIds."""
    async with http.ws_connect(f"ws://{HOST}:{server.ws_port}/") as ws:
        await ws.send_json({"message": "connection", "data": [{
            "appKey": "defaultApp", "mediaProviders": ["WebRTC"], "clientVersion": "2.0"}]})
        session_id = (await until(ws, "getUserData"))["sessionId"]
        ids = [str(uuid.uuid4()) for _ in range(streams)]
        sent = ended = 0
        started = time.monotonic()
        while ended < streams:
            while sent < streams and sent - ended < window:
                await asyncio.sleep(started + sent * every - time.monotonic())
                await ws.send_json(publish(ids[sent]))
                sent += 1
            event = await until(ws, "notifyStreamStatusEvent")
            ended += event.get("status") in ("FAILED", "UNPUBLISHED")
    return [session_id, *ids]


def publish(media_session_id: str) -> dict[str, Any]:
    return {"message": "publishStream", "data": [{
        "mediaSessionId": media_session_id, "name": f"o-{media_session_id[:13]}",
        "published": True, "hasVideo": True, "hasAudio": True, "status": "PENDING",
        "record": False, "mediaProvider": "WebRTC", "sdp": BAD_SDP, "custom": {}}]}


async def until(ws: aiohttp.ClientWebSocketResponse, message: str) -> dict[str, Any]:
    async for frame in ws:
        data = json.loads(frame.data)
        if data.get("message") == message:
            return data["data"][0]  # type: ignore[no-any-return]
        if data.get("message") == "ping":
            await ws.send_json({"message": "pong", "data": [None]})
    raise ConnectionError(f"the session closed before {message}")


async def make_events(http: aiohttp.ClientSession, server: Server, requests: int,
                      sessions: int, rate: float) -> list[list[str]]:
    """``requests`` refused publishes over ``sessions`` sessions at once, ``rate`` a
    second in all (0: as fast as they go)."""
    shares = [requests // sessions + (i < requests % sessions) for i in range(sessions)]
    every = sessions / rate if rate else 0.0
    return list(await asyncio.gather(*(session(http, server, n, every) for n in shares)))


async def wait_depth(http: aiohttp.ClientSession, server: Server, status: str,
                     reached: Callable[[float], bool], timeout: float) -> float:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        depth = (await server.metrics(http)).get(
            f'hookcast_rest_outbox_depth{{status="{status}"}}', 0.0)
        if reached(depth) or time.monotonic() > deadline:
            return depth
        await asyncio.sleep(0.1)


# --- parts ------------------------------------------------------------------------------


async def writing(http: aiohttp.ClientSession, server: Server, args: argparse.Namespace,
                  notify: bool) -> dict[str, Any]:
    """Make the events; with ``notify``, until the outbox holds them all."""
    requests = args.streams * args.events_per_stream
    started = time.monotonic()
    made = await make_events(http, server, requests, args.sessions, args.rate)
    sent = time.monotonic() - started
    expected = requests + 2 * args.sessions
    depth = 0.0
    if notify:
        depth = await wait_depth(http, server, "pending", lambda d: d >= expected, 60)
    return {"made": made, "sent_s": sent, "written_s": time.monotonic() - started,
            "depth": depth, "expected": expected}


async def backend_report(http: aiohttp.ClientSession, port: int,
                         events: bool = False) -> dict[str, Any]:
    url = f"http://{HOST}:{port}/report" + ("?events=1" if events else "")
    async with http.get(url) as answer:
        return await answer.json()  # type: ignore[no-any-return]


async def draining(http: aiohttp.ClientSession, server: Server, backend_port: int,
                   start_backend: Callable[[], Awaitable[float]], expected: int,
                   timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
    """Start the backend; wait until it has every event (or ``timeout``)."""
    up = await start_backend()
    while True:
        report = await backend_report(http, backend_port)
        if report["distinct"] >= expected or time.time() - up > timeout:
            break
        await asyncio.sleep(0.05)
    done = time.time()
    pending = await wait_depth(http, server, "pending", lambda d: d == 0, 10)
    return {"up": up, "done": done, "report": report, "pending_after": pending}


async def path_op(http: aiohttp.ClientSession, server: Server) -> tuple[float, float, float]:
    """One session: connect, a refused publish, leave; (connect, publish, whole) in ms."""
    started = time.perf_counter()
    async with http.ws_connect(f"ws://{HOST}:{server.ws_port}/") as ws:
        await ws.send_json({"message": "connection", "data": [{
            "appKey": "defaultApp", "mediaProviders": ["WebRTC"], "clientVersion": "2.0"}]})
        await until(ws, "getUserData")
        connected = time.perf_counter()
        await ws.send_json(publish(str(uuid.uuid4())))
        await until(ws, "notifyStreamStatusEvent")
        published = time.perf_counter()
    ended = time.perf_counter()
    return ((connected - started) * 1000, (published - connected) * 1000,
            (ended - started) * 1000)


async def path_run(http: aiohttp.ClientSession, server: Server, ops: int) -> dict[str, Any]:
    times = [await path_op(http, server) for _ in range(ops)]
    return {"times": times}


# --- the run ------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def check_events(events: list[list[Any]], made: list[list[str]]) -> str:
    """Whether every expected event came, and only once."""
    expected: Counter[tuple[str, str, str]] = Counter()
    for session_id, *streams in made:
        expected.update([("ConnectionStatusEvent", session_id, "ESTABLISHED"),
                         ("ConnectionStatusEvent", session_id, "DISCONNECTED")])
        expected.update(("StreamStatusEvent", s, "FAILED") for s in streams)
    got = Counter((m, k, s) for m, k, s, _ in events)
    again = sum(times - 1 for *_, times in events)
    missing, unexpected = expected - got, got - expected
    return (f"{sum(got.values())} distinct event ids of {sum(expected.values())} expected: "
            f"{sum(missing.values())} missing, {sum(unexpected.values())} unexpected or "
            f"twice under two ids, {again} received again under the same id (a retry)")


def drain_figures(drain: dict[str, Any], expected: int) -> tuple[str, float, float]:
    """(summary, rate events/s from the first receipt, slowest full second)."""
    report = drain["report"]
    first = report["first"] or drain["up"]
    seconds = [(s, n) for s, n in report["per_second"] if s >= int(drain["up"])]
    full = [n for _, n in seconds[1:-1]]  # whole seconds only
    last = max(drain["done"] - first, 1e-9)
    rate = report["distinct"] / last
    text = (f"backend up -> first delivery {first - drain['up']:.2f} s; -> every event "
            f"{drain['done'] - drain['up']:.2f} s; {report['distinct']} of {expected} "
            f"delivered ({report['received']} requests); rate {rate:.0f} events/s from the "
            f"first delivery ({report['distinct'] / max(drain['done'] - drain['up'], 1e-9):.0f}"
            f"/s from the backend's start), per whole second "
            f"{f'{min(full)}-{max(full)}/s' if full else 'n/a (under 3 s)'}; "
            f"pending after: {drain['pending_after']:.0f}")
    return text, rate, min(full) if full else 0.0


def path_summary(results: dict[str, list[tuple[float, float, float]]]) -> tuple[str, float]:
    """The path table and the added median (ms) of the whole operation."""
    lines = [f"  {'server':7} {'ops':>5}  {'connect p50/p99 ms':>18}  "
             f"{'publish p50/p99 ms':>18}  {'whole p50/p99 ms':>17}"]
    medians: dict[str, list[float]] = {}
    for name, times in results.items():
        cells = []
        for part in range(3):
            values = [t[part] for t in times]
            cells.append(f"{statistics.median(values):8.2f} /{percentile(values, 0.99):7.2f}")
        medians[name] = [statistics.median([t[p] for t in times]) for p in range(3)]
        lines.append(f"  {name:7} {len(times):5d}  {cells[0]:>18}  {cells[1]:>18}  "
                     f"{cells[2]:>17}")
    added = [medians["notify"][p] - medians["plain"][p] for p in range(3)]
    p99 = [percentile([t[p] for t in results["notify"]], 0.99)
           - percentile([t[p] for t in results["plain"]], 0.99) for p in range(3)]
    lines.append(f"  added by notifications: connect {added[0]:+.2f} ms, publish "
                 f"{added[1]:+.2f} ms, whole {added[2]:+.2f} ms (medians); p99 "
                 f"{p99[0]:+.2f} / {p99[1]:+.2f} / {p99[2]:+.2f} ms")
    return "\n".join(lines), added[2]


def outbox_line(metrics: dict[str, float]) -> str:
    short = {name.replace("hookcast_rest_outbox_", "").replace("_total", ""): value
             for name, value in metrics.items() if not name.endswith("_created")}
    return ", ".join(f"{name} {value:g}" for name, value in sorted(short.items()))


async def hold(http: aiohttp.ClientSession, server: Server, seconds: float) -> dict[str, Any]:
    await asyncio.sleep(seconds)
    return {"metrics": await server.metrics(http)}


async def profile(pid: int, seconds: float, out: Path) -> str:
    """py-spy the server for ``seconds``: where its time goes."""
    py_spy = find_py_spy()
    if py_spy is None:
        return "py-spy is not installed: no profile"
    proc = await asyncio.create_subprocess_exec(
        py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
        "--format", "raw", "--output", str(out), "--nonblocking", "--threads",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0 or not out.exists():  # noqa: ASYNC240
        return f"py-spy failed: {err.decode(errors='replace').strip()[-300:]}"
    return summarize(out)


def summarize(path: Path, top: int = 14) -> str:
    """Self time, and time inside hookcast's and aiohttp's functions, from collapsed
    stacks (idle waits left out)."""
    own: Counter[str] = Counter()
    inside: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f for f in stack.split(";") if not f.startswith(("thread", "process"))]
        if not frames or not count.isdigit() or frames[-1].startswith(IDLE):
            continue
        total += int(count)
        frames = [LINE.sub(")", f) for f in frames]
        own[frames[-1]] += int(count)
        for frame in set(frames):
            if any(k in frame for k in ("plugins/", "core/", "aiohttp/", "sqlite")):
                inside[frame] += int(count)
    if not total:
        return "py-spy recorded no busy samples"
    out = [f"py-spy: {total} busy samples (all threads), top self time:"]
    out += [f"    {100 * n / total:5.1f} %  {f}" for f, n in own.most_common(top)]
    out.append("  inclusive (hookcast, aiohttp):")
    out += [f"    {100 * n / total:5.1f} %  {f}" for f, n in inside.most_common(top)]
    return "\n".join(out)


async def profiled(work: Awaitable[dict[str, Any]], server: Server, seconds: float,
                   out: Path) -> dict[str, Any]:
    """``work``'s result, with a py-spy profile of ``server`` over its first ``seconds``
    (when not 0) under "profile"."""
    if not seconds:
        return await work
    result, text = await asyncio.gather(work, profile(server.child.pid, seconds, out))
    return {**result, "profile": text}


async def run(args: argparse.Namespace) -> None:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="hookcast-bench-outbox-"))
    children = Children(workdir)
    port = free_port()
    hooks = f"http://{HOST}:{port}/hooks"

    async def start_backend() -> float:
        child = await children.start("backend", [sys.executable, __file__, "backend", "--port",
                                                 str(port)], talk=True)
        await child.read()
        return time.time()

    try:
        notify = await start_server(children, workdir, "notify", hooks, METHODS)
        plain = await start_server(children, workdir, "plain", hooks, [])
        probe = await children.start("probe", [sys.executable, __file__, "probe"], talk=True)
        meter = Meter(probe, lambda: pids(children))
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            results = await parts(http, args, meter, notify, plain, port, start_backend,
                                  workdir)
        report(args, results)
        print(f"\nload average at the end {loadavg()}; total run time "
              f"{time.monotonic() - started:.0f} s; logs in {workdir}")
    finally:
        await children.stop_all()


async def parts(http: aiohttp.ClientSession, args: argparse.Namespace, meter: Meter,
                notify: Server, plain: Server, port: int,
                start_backend: Callable[[], Awaitable[float]], workdir: Path) -> dict[str, Any]:
    requests = args.streams * args.events_per_stream
    pace = f"{args.rate:g}/s" if args.rate else "as fast as they go"
    print(f"{args.streams} streams' events: {requests} refused publishes ({pace}) over "
          f"{args.sessions} WCS sessions (+ their ESTABLISHED and DISCONNECTED); "
          f"rest_retry_min_delay 5 s; {NCPU} cores; load average {loadavg()}\n")
    print(HEADER)
    out: dict[str, Any] = {}
    out["idle"] = await meter.window("idle", notify, asyncio.sleep(args.idle))
    out["ref"] = await meter.window("writing", plain, writing(http, plain, args, False))
    out["write"] = await meter.window("writing", notify, profiled(
        writing(http, notify, args, True), notify, args.profile, workdir / "writing.pyspy"))
    out["down"] = await meter.window("down", notify, hold(http, notify, args.down))
    expected = out["write"].extra["expected"]
    out["drain"] = await meter.window("draining", notify, profiled(
        draining(http, notify, port, start_backend, expected, args.drain_timeout),
        notify, args.profile, workdir / "draining.pyspy"))
    out["drain_metrics"] = await notify.metrics(http)
    out["events"] = (await backend_report(http, port, events=True))["events"]
    out["path"] = {"notify": [], "plain": []}
    for round_ in range(args.rounds):
        for server in (notify, plain) if round_ % 2 == 0 else (plain, notify):
            work = path_run(http, server, args.ops)
            if round_ == 0 and server is notify:
                work = profiled(work, notify, args.profile, workdir / "path.pyspy")
            window = await meter.window("path", server, work)
            if "profile" in window.extra:
                out["path_profile"] = window.extra["profile"]
            out["path"][server.name].extend(window.extra["times"])
            out.setdefault("path_windows", []).append(window)
    return out


def report(args: argparse.Namespace, out: dict[str, Any]) -> None:
    idle, ref, write, drain = out["idle"], out["ref"], out["write"], out["drain"]
    expected = write.extra["expected"]
    print(f"\nidle: health round trip p50 {statistics.median(idle.rtt or [0]):.1f} ms, p99 "
          f"{percentile(idle.rtt, 0.99):.1f} ms (what the HTTP itself takes)")
    print(f"1. writing {expected} events, backend down:")
    print(f"  plain (no notification): requests sent in {ref.extra['sent_s']:.1f} s, server "
          f"{ref.server_core:.0f} % of a core; round trip p99 {percentile(ref.rtt, 0.99):.1f} ms")
    print(f"  notify: requests sent in {write.extra['sent_s']:.1f} s, all {expected} in the "
          f"outbox after {write.extra['written_s']:.1f} s ({expected / write.extra['written_s']:.0f}"
          f" events/s; depth {write.extra['depth']:.0f}), server {write.server_core:.0f} % of a "
          f"core; round trip p99 {percentile(write.rtt, 0.99):.1f} ms")
    if "profile" in write.extra:
        print(f"  where the server's time went while writing ({args.profile:g} s):\n"
              + write.extra["profile"])
    print(f"2. down {args.down:g} s more: {outbox_line(out['down'].extra['metrics'])}")
    text, rate, _ = drain_figures(drain.extra, expected)
    print(f"3. draining: {text}\n  {check_events(out['events'], write.extra['made'])}\n"
          f"  outbox after: {outbox_line(out['drain_metrics'])}")
    if "profile" in drain.extra:
        print(f"  where the server's time went while draining ({args.profile:g} s):\n"
              + drain.extra["profile"])
    if "path_profile" in out:
        print(f"  where the notify server's time went on the path ({args.profile:g} s):\n"
              + out["path_profile"])
    path, added = path_summary(out["path"])
    print(f"4. the path ({args.rounds} rounds of {args.ops} sessions each side, ABBA, "
          f"backend up):\n{path}")
    lag_write, lag_drain = percentile(write.rtt, 0.99), percentile(drain.rtt, 0.99)
    windows = [idle, ref, write, out["down"], drain, *out["path_windows"]]
    print(f"machine {min(w.machine for w in windows):.0f}-{max(w.machine for w in windows):.0f}"
          f" % busy, others {min(w.others for w in windows):.1f}-"
          f"{max(w.others for w in windows):.1f} % of all cores")
    print("goals (issue 26):")
    print(f"  >= {GOAL_RATE:.0f} events/s delivered after recovery: {verdict(rate >= GOAL_RATE)}"
          f" ({rate:.0f}/s)")
    print(f"  loop lag p99 <= {GOAL_LAG:.0f} ms (health round trip) while writing: "
          f"{verdict(lag_write <= GOAL_LAG)} ({lag_write:.1f} ms; "
          f"{percentile(ref.rtt, 0.99):.1f} ms without notifications); while draining: "
          f"{verdict(lag_drain <= GOAL_LAG)} ({lag_drain:.1f} ms)")
    print(f"  <= {GOAL_PATH:g} ms added to a publish/stop: {verdict(added <= GOAL_PATH)} "
          f"({added:+.2f} ms, median of the whole connect-publish-leave)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = sys.argv[1] if len(sys.argv) > 1 else ""
    if sub == "backend":
        return run_backend(int(sys.argv[3]))
    if sub == "probe":
        return run_probe()
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--events-per-stream", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--rate", type=float, default=1000.0,
                        help="publish requests a second while writing (0: as fast as they go)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="the idle window; the backend stays down 4x as long after the "
                             "writing (unless --down)")
    parser.add_argument("--down", type=float, default=None,
                        help="seconds the backend stays down after the writing")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--ops", type=int, default=250, help="sessions per path window")
    parser.add_argument("--rounds", type=int, default=4, help="path windows per server")
    parser.add_argument("--profile", type=float, default=0.0,
                        help="py-spy the server for this many seconds from the start of the "
                             "writing and from the backend's start")
    parser.add_argument("--quick", action="store_true",
                        help="500 streams, 10 sessions, 3 s idle, 6 s down, 2 rounds of 60")
    args = parser.parse_args()
    args.idle = args.seconds
    args.down = 4 * args.seconds if args.down is None else args.down
    if args.quick:
        args.streams, args.sessions, args.idle, args.down = 500, 10, 3.0, 6.0
        args.ops, args.rounds = 60, 2
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
