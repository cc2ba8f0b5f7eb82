"""``/metrics`` in Prometheus text format (prometheus-client).

A custom collector reads the engine and the hook bus at scrape time, so nothing on
the media path updates a metric: sessions, streams by status, players per stream,
relay packets forwarded and dropped, plugin hook calls by outcome. Each server has
its own registry (no process-global state).
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hookcast.bus import HookBus
from hookcast.engine.engine import Engine
from hookcast.engine.streams import Status
from hookcast.keys import PROMETHEUS


class HookcastCollector(Collector):
    def __init__(self, engine: Engine, bus: HookBus) -> None:
        self.engine = engine
        self.bus = bus

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        sessions = GaugeMetricFamily("hookcast_sessions", "Signalling sessions open")
        sessions.add_metric([], len(engine.sessions))
        yield sessions
        settings = engine.settings
        yield GaugeMetricFamily("hookcast_sessions_max", "Sessions allowed at once (max_sessions)",
                                value=settings.max_sessions)
        yield GaugeMetricFamily(
            "hookcast_custom_size_max_bytes",
            "Largest custom object a client may send, as JSON (max_custom_size)",
            value=settings.max_custom_size,
        )
        refused = CounterMetricFamily(
            "hookcast_sessions_refused", "Sessions refused, by reason: max_sessions, "
            "max_sessions_per_address, invalid (a bad connection message, custom over "
            "max_custom_size), plugin",
            labels=["reason"],
        )
        for reason in ("max_sessions", "max_sessions_per_address", "invalid", "plugin"):
            refused.add_metric([reason], engine.sessions.refused[reason])
        yield refused
        dropped = CounterMetricFamily(
            "hookcast_sessions_dropped", "Sockets closed before they sent connection, by "
            "reason: connection_timeout, room (the oldest, for a newcomer)", labels=["reason"],
        )
        for reason in ("connection_timeout", "room"):
            dropped.add_metric([reason], engine.sessions.dropped[reason])
        yield dropped
        pending = CounterMetricFamily(
            "hookcast_pending_streams_refused", "Stream requests refused, or pending streams "
            "failed to make room, by the bound reached: max_pending_streams_per_session, "
            "max_pending_streams_per_address, max_pending_streams", labels=["bound"],
        )
        for bound in ("max_pending_streams_per_session", "max_pending_streams_per_address",
                      "max_pending_streams"):
            pending.add_metric([bound], engine.pending.refused[bound])
        yield pending
        yield GaugeMetricFamily("hookcast_pending_streams",
                                "Streams requested and not connected yet",
                                value=len(engine.pending))
        yield CounterMetricFamily("hookcast_heap_trims", "Times the memory freed by ended "
                                  "streams and sessions was given back to the system",
                                  value=engine.heap.trims)
        streams = GaugeMetricFamily(
            "hookcast_streams", "Streams by status and role", labels=["status", "role"]
        )
        by_status = {(s, r): 0 for s in Status for r in ("publisher", "player")}
        for stream in engine.registry:
            by_status[(stream.status, "publisher" if stream.published else "player")] += 1
        for (status, role), count in by_status.items():
            streams.add_metric([status.value, role], count)
        yield streams
        players = GaugeMetricFamily(
            "hookcast_stream_players", "Players of each published stream", labels=["stream"]
        )
        for name, broadcast in engine.broadcasts.items():
            players.add_metric([name], len(broadcast.players))
        yield players
        relay = CounterMetricFamily(
            "hookcast_relay_packets",
            "Encoded frames the relay forwarded to or dropped for players",
            labels=["kind", "result"],
        )
        nacks = CounterMetricFamily(
            "hookcast_relay_nacks",
            "RTP packets players asked again (NACK: asked) and packets the forwarding path "
            "sent them again (answered); per player: divide by hookcast_relay_players",
            labels=["kind", "result"],
        )
        counted = engine.meters.relay_counts()
        for kind in ("audio", "video"):
            for result in ("dropped", "forwarded"):
                relay.add_metric([kind, result], counted[(kind, result)])
            nacks.add_metric([kind, "asked"], counted[(kind, "nacked")])
            nacks.add_metric([kind, "answered"], counted[(kind, "retransmitted")])
        yield relay
        yield nacks
        paths = GaugeMetricFamily(
            "hookcast_relay_players",
            "Players' tracks by sending path: fast (the dedicated forwarding path) or "
            "aiortc (its own sender per player)", labels=["kind", "path"],
        )
        by_path = {(k, p): 0 for k in ("audio", "video") for p in ("fast", "aiortc")}
        for (kind, path), count in sorted({**by_path, **engine.meters.relay_paths()}.items()):
            paths.add_metric([kind, path], count)
        yield paths
        hooks = CounterMetricFamily(
            "hookcast_hook_calls", "Plugin hook calls by outcome",
            labels=["hook", "plugin", "outcome"],
        )
        for (hook, plugin, outcome), count in sorted(self.bus.outcomes.items()):
            hooks.add_metric([hook, plugin, outcome], count)
        yield hooks
        recordings = engine.recordings
        yield GaugeMetricFamily("hookcast_recordings_active", "Recordings being written",
                                value=len(recordings.active))
        yield CounterMetricFamily("hookcast_recording_bytes", "Media bytes written to records/",
                                  value=recordings.bytes)
        yield CounterMetricFamily(
            "hookcast_recordings_failed", "Recordings ended by an error (disk full, records/ "
            "not writable)", value=recordings.failed)
        yield CounterMetricFamily(
            "hookcast_recording_gaps", "Times a recording dropped to the next keyframe because "
            "the disk did not keep up", value=recordings.gaps)
        yield from self.bus.prometheus_metrics()


def make_registry(engine: Engine, bus: HookBus) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HookcastCollector(engine, bus))
    return registry


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[PROMETHEUS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def prometheus_routes() -> list[web.RouteDef]:
    return [web.get("/metrics", metrics)]



