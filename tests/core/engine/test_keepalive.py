"""Stream keep-alive through a real server: ``on_stream_keep_alive`` calls of one
interval are spread evenly across it, and at most ``max_in_flight`` wait for an answer
at once (a stream whose turn comes while that many are pending is skipped and counted).

The plugin is a drop-in file in the server home, as a user writes one: it records the
time of every call and, when told to, hangs until released.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest
from aiortc.mediastreams import MediaStreamTrack

from hookcast.config.home import Home
from hookcast.engine.keepalive import KeepAlive
from hookcast.engine.streams import Status, Stream
from hookcast.keys import ENGINE
from hookcast.server import Server
from hookcast.signalling.client import WcsClient
from tests.conftest import write_plugin

pytestmark = [pytest.mark.timeout(90)]

Start = Callable[..., Any]

RECORDER = """
import asyncio
import time

from hookcast import hookimpl


class Recorder:
    \"\"\"Records every keep-alive call; while ``hang`` is set, calls wait for ``release``.\"\"\"

    def __init__(self):
        self.calls = []  # (time.monotonic(), mediaSessionId)
        self.pending = 0
        self.peak = 0
        self.hang = False
        self.release = asyncio.Event()

    @hookimpl
    async def on_stream_keep_alive(self, stream):
        self.calls.append((time.monotonic(), stream.media_session_id))
        self.pending += 1
        self.peak = max(self.peak, self.pending)
        try:
            if self.hang:
                await self.release.wait()
        finally:
            self.pending -= 1


def hookcast_plugin():
    return Recorder()
"""


async def start_with_recorder(home: Home, start_server: Start, **properties: str) -> tuple[Server, Any]:
    """A server with keep-alive on and the recording plugin loaded; (server, recorder)."""
    write_plugin(home, "recorder", RECORDER)
    server: Server = await start_server(
        home, keep_alive_streaming_sessions_enabled="true", **properties
    )
    recorder = next(r.plugin for r in server.bus.plugins() if r.name == "recorder")
    return server, recorder


def keep_alive_of(server: Server) -> KeepAlive:
    keep_alive = server.http_app[ENGINE].keep_alive
    assert keep_alive is not None, "keep_alive_streaming_sessions_enabled=true starts it"
    return keep_alive


async def wait_until(predicate: Callable[[], bool], within: float, what: Callable[[], str]) -> None:
    """Poll until ``predicate()``; after ``within`` seconds fail, saying ``what()`` is."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, f"waited {within} s: {what()}"
        await asyncio.sleep(0.02)


class Silent(MediaStreamTrack):
    """An audio track that never yields a frame. The keep-alive schedule does not
    depend on media; silent publishers keep the event loop free, so what is timed is
    the scheduler and not 20 encoders competing for a 2-core VM."""

    kind = "audio"

    async def recv(self) -> Any:
        await asyncio.Future()


def rounds_of(calls: list[tuple[float, str]], order: list[str]) -> list[list[float]]:
    """The call times of every complete round: ``len(order)`` consecutive calls, one
    per stream, in the order the keep-alive walks them (the registry's)."""
    ids = [media_session_id for _, media_session_id in calls]
    return [
        [at for at, _ in calls[i:i + len(order)]]
        for i in range(len(calls) - len(order) + 1)
        if ids[i:i + len(order)] == order
    ]


STREAMS = 20
INTERVAL = 1.0  # seconds: one call every 50 ms when spread, 20 at once when not
GAP = INTERVAL / STREAMS


async def test_calls_of_one_interval_are_spread_across_it(home: Home, start_server: Start) -> None:
    """20 real WebRTC publishers, a 1 s interval: one call every ~50 ms, not a burst."""
    server, recorder = await start_with_recorder(
        home, start_server, streaming_sessions_keep_alive_interval=str(int(INTERVAL * 1000))
    )
    client = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    try:
        await client.connect()
        streams = [await client.publish(f"ka-{i}", [Silent()]) for i in range(STREAMS)]
        await asyncio.gather(*(s.wait_status("PUBLISHING") for s in streams))
        registry = server.http_app[ENGINE].registry
        order = [s.media_session_id for s in registry]
        assert sorted(order) == sorted(s.media_session_id for s in streams)
        first = len(recorder.calls)  # from here on every stream is live
        await wait_until(lambda: len(rounds_of(recorder.calls[first:], order)) >= 3,
                         within=10 * INTERVAL, what=lambda: f"3 complete rounds; calls: {recorder.calls[first:]}")
    finally:
        await client.close()

    rounds = rounds_of(recorder.calls[first:], order)
    gaps = [b - a for times in rounds for a, b in pairwise(times)]
    spans = [times[-1] - times[0] for times in rounds]
    periods = [b[0] - a[0] for a, b in pairwise(rounds)]
    summary = (f"spans {[round(s, 3) for s in spans]} s, gaps {[round(g * 1000) for g in gaps]} ms, "
               f"rounds {[round(p, 3) for p in periods]} s apart")
    # each round covers the interval: its 20 calls span ~950 ms (a burst spans ~0)...
    expected_span = (STREAMS - 1) * GAP
    assert all(0.7 * expected_span <= span <= INTERVAL + 0.3 for span in spans), summary
    # ... one call every ~50 ms: the median gap is the interval's share, and most gaps are
    # near it (a stalled loop delays a call and the next ones catch up; the tolerance
    # absorbs a few of those)
    assert 0.7 * GAP <= statistics.median(gaps) <= 1.3 * GAP, summary
    near = [g for g in gaps if 0.5 * GAP <= g <= 1.5 * GAP]
    assert len(near) >= 0.75 * len(gaps), summary
    # and rounds come once per interval
    assert all(0.8 * INTERVAL <= period <= 1.2 * INTERVAL for period in periods), summary


BOUND_STREAMS = 1500
#: seconds: one turn every 1.3 ms; only a loop stalled for longer than 1,000 turns
#: (1.3 s) could fill the bound with calls that answer at once
BOUND_INTERVAL = 2.0


def register_streams(server: Server, count: int) -> list[Stream]:
    """``count`` live publishers in the server's registry, without media.

    The in-flight bound is 1,000 (the engine's default, not a setting): proving it
    needs more than 1,000 live streams, and 1,000+ aiortc peer connections (each with
    its sockets, ICE, DTLS and a sender) are far beyond a 2-core VM within a test.
    The keep-alive only reads the registry and each stream's status and snapshot, so
    registered Stream objects are what it sees of real ones."""
    registry = server.http_app[ENGINE].registry
    streams = [
        Stream(media_session_id=f"bound-{i:04}", name=f"bound-{i:04}", published=True,
               session_id="keep-alive-test", app_key="defaultApp")
        for i in range(count)
    ]
    for stream in streams:  # no await in between: every round sees all of them or none
        registry.add(stream)
        stream.status = Status.PUBLISHING
    return streams


async def test_in_flight_calls_are_bounded_and_the_rest_skipped_and_counted(
    home: Home, start_server: Start
) -> None:
    server, recorder = await start_with_recorder(
        home, start_server, streaming_sessions_keep_alive_interval=str(int(BOUND_INTERVAL * 1000)),
        plugin_hook_timeout="60",  # a hanging call stays pending for the whole test
        disabled_plugins="rest_hooks",  # no REST hooks for 1,500 made-up streams
    )
    keep_alive = keep_alive_of(server)
    bound = keep_alive.max_in_flight
    assert bound == 1000  # the documented default: "at most 1,000 wait for an answer"
    recorder.hang = True
    streams = register_streams(server, BOUND_STREAMS)
    order = [s.media_session_id for s in streams]
    within = 3 * BOUND_INTERVAL

    def state() -> str:
        return (f"keep-alive sent {keep_alive.sent}, skipped {keep_alive.skipped}; plugin "
                f"called {len(recorder.calls)} times, {recorder.pending} pending (peak {recorder.peak})")

    try:
        # one round: the first `bound` streams are called and hang, the rest are skipped
        await wait_until(lambda: keep_alive.sent + keep_alive.skipped >= BOUND_STREAMS,
                         within=within, what=lambda: f"one round; {state()}")
        assert (recorder.pending, recorder.peak) == (bound, bound)
        assert [media_session_id for _, media_session_id in recorder.calls] == order[:bound]
        assert keep_alive.sent == bound
        assert keep_alive.skipped >= BOUND_STREAMS - bound
        # a second round while they still hang: every turn is skipped and counted
        await wait_until(lambda: keep_alive.sent + keep_alive.skipped >= 2 * BOUND_STREAMS,
                         within=within, what=lambda: f"two rounds; {state()}")
        assert (keep_alive.sent, len(recorder.calls)) == (bound, bound)
        assert keep_alive.skipped >= 2 * BOUND_STREAMS - bound
        assert (recorder.pending, recorder.peak) == (bound, bound)
        # answers arrive: the bound frees up and every stream is called again
        recorder.hang = False
        recorder.release.set()
        await wait_until(lambda: recorder.pending == 0, within=within, what=lambda: f"calls to end; {state()}")
        skipped = keep_alive.skipped

        def called_again() -> set[str]:
            return {media_session_id for _, media_session_id in recorder.calls[bound:]}

        await wait_until(lambda: called_again() == set(order), within=within,
                         what=lambda: f"every stream called again; {len(called_again())} were; {state()}")
        assert keep_alive.skipped == skipped, "nothing is skipped while answers arrive"
        assert len(recorder.calls) == keep_alive.sent
        assert recorder.peak == bound
    finally:
        recorder.release.set()
        registry = server.http_app[ENGINE].registry
        for stream in streams:
            registry.remove(stream)
