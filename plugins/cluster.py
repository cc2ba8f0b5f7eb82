"""The cluster: nodes that share a stream directory in Redis, and play anywhere.

Off unless ``cluster_redis_url`` is set. Every node (a ``hookcast serve`` process, or a
worker of ``hookcast serve --workers N``) keeps in Redis, under ``cluster_name``:

- ``<name>:node:<id>``: its heartbeat record (the URLs other nodes call it on, its
  load: streams, players, CPU), written every third of ``cluster_lease_ttl`` and
  expiring after it;
- ``<name>:stream:<stream name>``: the **lease** of each name published here (owner
  node, process instance, epoch, URLs), claimed when a publisher is admitted, renewed
  with the heartbeat, released or re-claimed only by compare-and-set (Lua). A name
  leased by another node is refused (``Stream name is already in use``); a node that
  dies loses its leases within the TTL; a node that finds its lease taken by another
  (it was cut off longer than the TTL) stops claiming the name;
- ``<name>:epoch``: the counter that numbers leases.

A player on a node that does not have the stream waits (``cluster_play_wait`` at most)
for this node's **edge copy**: one pull from the owner (``EdgePull``, the pull
machinery: frames as they were encoded), shared by every player that arrives, closed
``cluster_edge_linger`` seconds after its last player left. The edge follows the lease:
when it expires or another node takes it (a republish elsewhere), the pull reconnects to
the new owner, or ends (its players STOPPED) when no node publishes the name. Edge
copies are never leased (no loops); the pull carries a node credential, so the owner
fires none of the hooks meant for users for it (``SessionInfo.node``).

The REST API answers for the whole cluster through ``across`` (``MediaCore.cluster``):
``stream/find_all``, ``find`` and ``terminate`` gather every node's answer (each entry
names its ``node``), recording and metrics calls reach the node that has the stream.
``/rest-api/cluster/find_all`` lists the nodes.

When Redis cannot be reached, local publish and play go on; the cluster's features
answer a clear error, it is logged once, and the node re-registers and re-claims its
leases by itself once Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client.core import GaugeMetricFamily, Metric
from redis.exceptions import RedisError
from yarl import URL

from hookcast import (
    NODE_FIELD,
    NODE_HEADER,
    ClusterDown,
    Home,
    Info,
    MediaCore,
    Refuse,
    RestError,
    RestMethod,
    ServerInfo,
    SessionInfo,
    Settings,
    StreamInfo,
    WcsClient,
    hookimpl,
    node_credential,
    printable,
    rest_routes,
)
from hookcast.plugins._remote import ACTIVE, Finished, Options, Pull
from hookcast.properties import Property, PropertyType, Seconds, Text

log = logging.getLogger(__name__)

#: seconds one Redis command may take
REDIS_TIMEOUT = 2.0
#: seconds a REST call to another node may take
NODE_CALL_TIMEOUT = 3.0
#: seconds between two attempts of an edge pull (each looks the owner up again)
EDGE_RETRY = 0.5
#: seconds the shutdown gives the directory (leases released, record removed)
LEAVE_TIMEOUT = 2.0
#: seconds between two looks at the edge copies' players (cluster_edge_linger's step)
LINGER_CHECK = 0.25
#: nodes listed at most (SCAN of the heartbeat records)
MAX_NODES = 1000


class RedisUrl(PropertyType[str]):
    name = "redis URL"

    def parse(self, raw: str) -> str:
        raw = raw.strip()
        if raw and URL(raw).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("expected redis://host:port/db, rediss://... or unix:///path "
                             "(or empty: no cluster)")
        return raw


PROPERTIES = [
    Property("cluster_redis_url", "", RedisUrl(),
             "Redis of the cluster's directory (redis://127.0.0.1:6379/0); empty = this "
             "process alone, no cluster (hookcast)"),
    Property("cluster_name", "hookcast", Text(),
             "Prefix of the cluster's keys in Redis: nodes with the same one form a "
             "cluster (hookcast)"),
    Property("cluster_node_id", "", Text(),
             "This node's name in the cluster; empty = <host name>:<ws.port> (and /w<N> "
             "for a worker) (hookcast)"),
    Property("cluster_advertise_ws", "", Text(),
             "The WebSocket URL other nodes reach this one on (ws://10.0.0.5:8080); "
             "empty = ws://<ip, or 127.0.0.1>:<ws.port> (a worker's internal port) "
             "(hookcast)"),
    Property("cluster_advertise_http", "", Text(),
             "The HTTP URL other nodes reach this one's REST API on; empty = as for "
             "cluster_advertise_ws (hookcast)"),
    Property("cluster_lease_ttl", 6.0, Seconds(minimum=1.5),
             "Seconds a node's heartbeat and its stream leases live in Redis unless "
             "renewed (every third of it): a node that dies loses its names within it "
             "(hookcast)"),
    Property("cluster_play_wait", 5.0, Seconds(minimum=0.5),
             "Seconds a player of a stream published on another node waits for this "
             "node's copy of it, then Stream not found (hookcast)"),
    Property("cluster_edge_linger", 5.0, Seconds(minimum=0),
             "Seconds this node's copy of another node's stream stays after its last "
             "player left (hookcast)"),
]

# --- Lua: every change of a lease is a compare-and-set ------------------------------------

#: KEYS: lease, epoch counter; ARGV: node, instance, ttl ms, lease JSON (no epoch).
#: Returns the lease held now (ours, new or already ours; or another's).
CLAIM = """
local current = redis.call('GET', KEYS[1])
if current then
  local lease = cjson.decode(current)
  if lease.node == ARGV[1] and lease.instance == ARGV[2] then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
  end
  return current
end
local lease = cjson.decode(ARGV[4])
lease.epoch = redis.call('INCR', KEYS[2])
local encoded = cjson.encode(lease)
redis.call('SET', KEYS[1], encoded, 'PX', ARGV[3])
return encoded
"""
#: KEYS: lease; ARGV: node, instance, epoch, ttl ms. 1 renewed, 0 gone, -1 another's.
RENEW = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local lease = cjson.decode(current)
if lease.node == ARGV[1] and lease.instance == ARGV[2]
    and tostring(lease.epoch) == ARGV[3] then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 1
end
return -1
"""
#: KEYS: lease; ARGV: node, instance, epoch. 1 released, 0 not ours (or gone).
RELEASE = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local lease = cjson.decode(current)
if lease.node == ARGV[1] and lease.instance == ARGV[2]
    and tostring(lease.epoch) == ARGV[3] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class Lease:
    """Who publishes a name in the cluster."""

    node: str
    instance: str
    epoch: int
    ws: str
    http: str

    @classmethod
    def decode(cls, raw: bytes | str | None) -> Lease | None:
        if raw is None:
            return None
        try:
            value = json.loads(raw)
            return cls(str(value["node"]), str(value["instance"]), int(value["epoch"]),
                       str(value["ws"]), str(value["http"]))
        except (ValueError, KeyError, TypeError):
            return None


NODE_ENTRY = {
    "type": "object",
    "required": ["node", "ws", "http", "self", "age"],
    "properties": {
        "node": {"type": "string"}, "ws": {"type": "string"}, "http": {"type": "string"},
        "self": {"type": "boolean", "description": "this node"},
        "age": {"type": "number", "description": "seconds since its last heartbeat"},
        "at": {"type": "number", "description": "its last heartbeat, Unix time"},
        "streams": {"type": "integer", "description": "streams published there"},
        "players": {"type": "integer"},
        "edges": {"type": "integer", "description": "copies of other nodes' streams"},
        "cpu": {"type": "number", "description": "% of one core"},
    },
}
NODES = RestMethod("cluster", "find_all", "The nodes of the cluster: their URLs, load and "
                   "heartbeat age (this node first); 404 on a server that is no cluster "
                   "node, 503 while Redis cannot be reached",
                   answer_schema={"type": "array", "items": NODE_ENTRY},
                   not_found="Not found", get=True)


class Refollow(Exception):
    """The stream's lease changed: the edge pull reconnects to its owner now."""


class EdgePull(Pull):
    """This node's copy of a stream another node publishes (see the module docstring)."""

    def __init__(self, cluster: ClusterPlugin, name: str, lease: Lease) -> None:
        assert cluster.media is not None and cluster.settings is not None
        super().__init__(cluster.media, cluster.settings, lease.ws, name, name, Options())
        self.cluster = cluster
        self.following = lease
        self.node = lease.node
        self.refollow = asyncio.Event()

    def _attempts(self) -> int:
        return 1_000_000  # it ends when no node publishes the name (_attempt)

    def _delay(self, failures: int) -> float:
        return EDGE_RETRY

    async def _connect(self, client: WcsClient) -> None:
        credential = node_credential(self.cluster.secret, self.cluster.node_id)
        user = await client.connect("defaultApp", custom={NODE_FIELD: credential})
        self.remote_server_id = str(user.get("hookcastServerId") or "")

    async def _attempt(self) -> None:
        try:
            lease = await self.cluster.lease_of(self.local_name)
        except ClusterDown:
            lease = self.following  # Redis is away: the owner we know is the best guess
        if lease is None or lease.node == self.cluster.node_id:
            raise Finished(Info.PUBLISHER_STOP)
        self.following, self.uri, self.node = lease, lease.ws, lease.node
        self.refollow.clear()
        try:
            await super()._attempt()
        except Finished:
            if self.source is not None and self.source.closed.is_set():
                raise
            raise Finished(Info.PUBLISHER_STOP) from None

    async def _until(self, stream: Any, *local: asyncio.Event) -> None:
        await super()._until(stream, *local, self.refollow)
        if self.refollow.is_set():
            raise Refollow(f"{self.local_name}: its lease changed")


class Edge:
    """An edge pull and when its last player left."""

    def __init__(self, link: EdgePull) -> None:
        self.link = link
        self.idle_since: float | None = None


class ClusterPlugin:
    """The plugin; also what the core's REST API asks (``hookcast.Cluster``)."""

    #: a player waits for an edge copy within before_play
    hookcast_timeout = 60.0

    def __init__(self) -> None:
        self.media: MediaCore | None = None
        self.settings: Settings | None = None
        self.redis: aioredis.Redis | None = None
        self.http: aiohttp.ClientSession | None = None
        self.node_id = ""
        self.instance = secrets.token_hex(8)
        self.secret = ""
        self.prefix = "hookcast"
        self.ws_url = ""
        self.http_url = ""
        self.ttl = 6.0
        self.up = False
        self._down_logged = False
        #: name -> the lease this node holds for its stream
        self.held: dict[str, Lease] = {}
        #: media session ids of local streams whose name another node took: not claimed
        self.lost: set[str] = set()
        self.edges: dict[str, Edge] = {}
        self._beat: asyncio.Task[None] | None = None
        self._cpu = (time.monotonic(), time.process_time(), 0.0)
        self._scripts: dict[str, Any] = {}

    @property
    def active(self) -> bool:
        return self.redis is not None

    # --- lifecycle ----------------------------------------------------------------------

    @hookimpl
    def plugin_properties(self) -> list[Property]:
        return PROPERTIES

    @hookimpl
    async def after_server_start(self, server: ServerInfo) -> None:
        settings = server.settings
        url = settings.value("cluster_redis_url")
        if not url:
            return
        if not settings.cluster_secret:
            log.error("cluster: cluster_redis_url is set but cluster_secret is empty: this "
                      "node does not join the cluster (set the same cluster_secret on every "
                      "node)")
            return
        self.media, self.settings, self.secret = server.media, settings, settings.cluster_secret
        self.prefix = settings.value("cluster_name") or "hookcast"
        self.ttl = settings.value("cluster_lease_ttl")
        self.node_id = settings.value("cluster_node_id") or _default_node_id(server)
        self.ws_url, self.http_url = _advertised(server)
        self.redis = aioredis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
        for name, script in (("claim", CLAIM), ("renew", RENEW), ("release", RELEASE)):
            self._scripts[name] = self.redis.register_script(script)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=NODE_CALL_TIMEOUT))
        assert server.media is not None
        server.media.cluster = self
        log.info("cluster: node %s (%s, %s) joins %s at %s", printable(self.node_id),
                 printable(self.ws_url), printable(self.http_url), printable(self.prefix),
                 printable(_without_password(url)))
        await self._heartbeat()
        self._beat = asyncio.create_task(self._beating(), name="cluster heartbeat")

    @hookimpl
    async def before_server_stop(self, server: ServerInfo) -> None:
        if not self.active:
            return
        if self._beat is not None:
            self._beat.cancel()
            await asyncio.gather(self._beat, return_exceptions=True)
        await asyncio.gather(*(edge.link.terminate(Info.SHUTDOWN)
                               for edge in self.edges.values()))
        with contextlib.suppress(Exception):
            async with asyncio.timeout(LEAVE_TIMEOUT):
                for name, lease in list(self.held.items()):
                    await self._release(name, lease)
                assert self.redis is not None
                await self.redis.delete(self._key("node", self.node_id))

    @hookimpl
    async def after_server_stop(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.redis.aclose(), LEAVE_TIMEOUT)
        if self.media is not None:
            self.media.cluster = None

    # --- Redis ----------------------------------------------------------------------------

    def _key(self, kind: str, name: str = "") -> str:
        return f"{self.prefix}:{kind}:{name}" if name else f"{self.prefix}:{kind}"

    async def _call(self, awaitable: Any) -> Any:
        """Run one Redis operation: ClusterDown when Redis cannot be reached (logged once
        until it is back)."""
        try:
            result = await asyncio.wait_for(awaitable, REDIS_TIMEOUT + 1)
        except (RedisError, OSError, TimeoutError) as error:
            if self.up or not self._down_logged:
                log.error("cluster: Redis cannot be reached (%s): local publish and play go "
                          "on; cluster features answer an error until it is back",
                          printable(str(error) or type(error).__name__))
                self._down_logged = True
            self.up = False
            raise ClusterDown(f"the cluster's Redis cannot be reached: "
                              f"{type(error).__name__}") from None
        if not self.up:
            if self._down_logged:
                log.info("cluster: Redis is back; node %s registered again",
                         printable(self.node_id))
            self.up, self._down_logged = True, False
        return result

    async def lease_of(self, name: str) -> Lease | None:
        assert self.redis is not None
        return Lease.decode(await self._call(self.redis.get(self._key("stream", name))))

    async def _claim(self, name: str, media_session_id: str) -> Lease | None:
        """Claim ``name`` for this node: the lease held now (ours or another's)."""
        value = json.dumps({"node": self.node_id, "instance": self.instance, "ws": self.ws_url,
                            "http": self.http_url, "mediaSessionId": media_session_id,
                            "since": int(time.time())})
        raw = await self._call(self._scripts["claim"](
            keys=[self._key("stream", name), self._key("epoch")],
            args=[self.node_id, self.instance, int(self.ttl * 1000), value]))
        lease = Lease.decode(raw)
        if lease is not None and self._ours(lease):
            self.held[name] = lease
        return lease

    def _ours(self, lease: Lease) -> bool:
        return lease.node == self.node_id and lease.instance == self.instance

    async def _release(self, name: str, lease: Lease) -> None:
        self.held.pop(name, None)
        await self._call(self._scripts["release"](
            keys=[self._key("stream", name)],
            args=[self.node_id, self.instance, lease.epoch]))

    # --- publish: one name, one publisher -----------------------------------------------

    @hookimpl
    async def before_publish(self, session: SessionInfo, stream: StreamInfo) -> Refuse | None:
        if not self.active or session.node or "://" in stream.name:
            return None
        try:
            lease = await self._claim(stream.name, stream.media_session_id)
        except ClusterDown:
            return None  # published here; leased once Redis is back (the heartbeat)
        if lease is not None and not self._ours(lease):
            log.info("cluster: %r is published on node %s: refused here",
                     printable(stream.name, 100), printable(lease.node))
            return Refuse(Info.NAME_IN_USE)
        return None

    @hookimpl
    async def after_stream_status(self, stream: StreamInfo) -> None:
        if not stream.published:
            edge = self.edges.get(stream.name)
            if edge is not None:  # a player came or went: the linger counts from the
                edge.idle_since = None  # next look that finds none
            return
        if not self.active or stream.node or "://" in stream.name:
            return  # a URI's reading (vod-live://) is every node's own, from its media/
        if stream.status in ("UNPUBLISHED", "FAILED"):
            self.lost.discard(stream.media_session_id)
            lease = self.held.get(stream.name)
            assert self.media is not None
            if lease is not None and self.media.find(stream.name) is None:
                with contextlib.suppress(ClusterDown):
                    await self._release(stream.name, lease)
        elif stream.status == "PUBLISHING" and stream.name not in self.held:
            with contextlib.suppress(ClusterDown):  # a pull, a shared VOD source
                await self._keep(stream)

    async def _keep(self, stream: StreamInfo) -> None:
        """Lease a local stream's name (again); another node holding it: stop claiming."""
        lease = await self._claim(stream.name, stream.media_session_id)
        if lease is not None and not self._ours(lease):
            self.lost.add(stream.media_session_id)
            log.warning("cluster: %r is leased by node %s now: this node stops claiming "
                        "it (its local stream goes on, unlisted)",
                        printable(stream.name, 100), printable(lease.node))

    # --- heartbeat -------------------------------------------------------------------------

    async def _beating(self) -> None:
        """The heartbeat every third of the TTL; between two, the edge copies' players
        are looked at every LINGER_CHECK seconds (a copy closes on time)."""
        beat = time.monotonic()
        while True:
            await asyncio.sleep(min(LINGER_CHECK, self.ttl / 3))
            if time.monotonic() - beat < self.ttl / 3 - 0.01:
                self._linger()
                continue
            beat = time.monotonic()
            try:
                await self._heartbeat()
            except Exception:  # the heartbeat must go on, whatever one beat met
                log.exception("cluster: heartbeat")

    def _load(self) -> dict[str, Any]:
        assert self.media is not None
        published = [s for s in self.media.published() if not s.node]
        then, cpu_then, last = self._cpu
        now, cpu_now = time.monotonic(), time.process_time()
        if now - then >= 0.5:
            last = round(100 * (cpu_now - cpu_then) / (now - then), 1)
            self._cpu = (now, cpu_now, last)
        return {"streams": len(published),
                "players": sum(self.media.players(s.name) for s in self.media.published()),
                "edges": len(self.edges), "cpu": last}

    async def _heartbeat(self) -> None:
        """Register this node, renew (or claim again) its leases, release the leases of
        names no longer published here, look after the edge copies."""
        assert self.redis is not None and self.media is not None
        record = {"node": self.node_id, "instance": self.instance, "ws": self.ws_url,
                  "http": self.http_url, "at": time.time(), **self._load()}
        try:
            await self._call(self.redis.set(self._key("node", self.node_id), json.dumps(record),
                                            px=int(self.ttl * 1000)))
            await self._renew()
            await self._follow()
        except ClusterDown:
            pass
        self._linger()

    async def _renew(self) -> None:
        assert self.media is not None
        local = {s.name: s for s in self.media.published()
                 if not s.node and "://" not in s.name}
        for name, held in list(self.held.items()):
            if name not in local:
                await self._release(name, held)
        for name, stream in local.items():
            if stream.media_session_id in self.lost:
                continue
            lease = self.held.get(name)
            if lease is None:
                await self._keep(stream)
                continue
            renewed = await self._call(self._scripts["renew"](
                keys=[self._key("stream", name)],
                args=[self.node_id, self.instance, lease.epoch, int(self.ttl * 1000)]))
            if renewed != 1:  # gone (Redis restarted, or expired): claim again
                self.held.pop(name, None)
                await self._keep(stream)

    async def _follow(self) -> None:
        """Edge pulls whose lease changed (expired, or another node took the name)
        reconnect now."""
        assert self.redis is not None
        edges = [(name, edge) for name, edge in self.edges.items()
                 if edge.link.status == ACTIVE]
        if not edges:
            return
        raws = await self._call(self.redis.mget([self._key("stream", n) for n, _ in edges]))
        for (_, edge), raw in zip(edges, raws, strict=True):
            lease = Lease.decode(raw)
            followed = edge.link.following
            if lease is None or (lease.node, lease.instance, lease.epoch) != (
                    followed.node, followed.instance, followed.epoch):
                edge.link.refollow.set()

    def _linger(self) -> None:
        """Edge copies whose last player left cluster_edge_linger ago are closed."""
        assert self.media is not None and self.settings is not None
        now = time.monotonic()
        linger = self.settings.value("cluster_edge_linger")
        for name, edge in list(self.edges.items()):
            if edge.link.ended:
                del self.edges[name]
                continue
            if self.media.players(name):
                edge.idle_since = None
            elif edge.idle_since is None:
                edge.idle_since = now
            elif now - edge.idle_since >= linger:
                del self.edges[name]
                log.info("cluster: %r: no player here for %.0f s, its copy closes",
                         printable(name, 100), linger)
                asyncio.get_running_loop().create_task(edge.link.terminate(Info.PUBLISHER_STOP))

    # --- play anywhere -----------------------------------------------------------------------

    @hookimpl
    async def before_play(self, session: SessionInfo, stream: StreamInfo) -> None:
        """A stream published on another node: wait for this node's copy of it (one pull
        for every player), cluster_play_wait at most; the core then plays it, or
        answers Stream not found."""
        if not self.active or session.node or "://" in stream.name:
            return
        assert self.media is not None and self.settings is not None
        if self.media.find(stream.name) is not None:
            return
        edge = self.edges.get(stream.name)
        if edge is None or edge.link.ended:
            try:
                lease = await self.lease_of(stream.name)
            except ClusterDown:
                return
            if lease is None or lease.node == self.node_id:
                return
            edge = self.edges.get(stream.name)  # another player's request started one
            if edge is None or edge.link.ended:
                edge = self.edges[stream.name] = Edge(EdgePull(self, stream.name, lease))
                log.info("cluster: %r is published on node %s: pulled here for its players",
                         printable(stream.name, 100), printable(lease.node))
                edge.link.start()
        edge.idle_since = None  # a player on its way
        await edge.link.first_outcome(self.settings.value("cluster_play_wait"))

    # --- the whole cluster's REST API ------------------------------------------------------

    async def nodes(self) -> list[dict[str, Any]]:
        """Every node's heartbeat record (this node's first). Raises ClusterDown."""
        assert self.redis is not None
        redis = self.redis

        async def scan() -> list[Any]:
            keys: list[Any] = []
            async for key in redis.scan_iter(match=self._key("node", "*"), count=500):
                keys.append(key)
                if len(keys) >= MAX_NODES:
                    break
            return list(await redis.mget(keys)) if keys else []

        found = []
        for raw in await self._call(scan()):
            with contextlib.suppress(ValueError, TypeError):
                record = json.loads(raw)
                if isinstance(record, dict) and isinstance(record.get("node"), str):
                    found.append(record)
        found.sort(key=lambda r: (r["node"] != self.node_id, r["node"]))
        return found

    async def across(self, path: str, body: Any) -> tuple[list[tuple[str, int, Any]], list[str]]:
        others = [n for n in await self.nodes() if n["node"] != self.node_id]
        answers = await asyncio.gather(*(self._ask(n, path, body) for n in others))
        answered = [a for a in answers if a is not None]
        missing = [n["node"] for n, a in zip(others, answers, strict=True) if a is None]
        return answered, missing

    async def _ask(self, node: dict[str, Any], path: str,
                   body: Any) -> tuple[str, int, Any] | None:
        assert self.http is not None
        url = f"{str(node.get('http', '')).rstrip('/')}{path}"
        headers = {NODE_HEADER: node_credential(self.secret, self.node_id)}
        try:
            async with self.http.post(url, json=body if body is not None else {},
                                      headers=headers, allow_redirects=False) as response:
                answer = await response.json(content_type=None)
                return str(node["node"]), response.status, answer
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as error:
            log.warning("cluster: node %s did not answer %s: %s", printable(node["node"]),
                        path, printable(str(error) or type(error).__name__))
            return None

    @hookimpl
    def register_rest_routes(self, settings: Settings, home: Home) -> list[web.RouteDef]:
        return rest_routes([(NODES, self.find_all)])

    async def find_all(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        if not self.active:
            raise RestError(404, "this server is not a cluster node (cluster_redis_url)")
        try:
            nodes = await self.nodes()
        except ClusterDown as error:
            raise RestError(503, str(error)) from None
        now = time.time()
        return [{**{k: v for k, v in n.items() if k != "instance"},
                 "self": n["node"] == self.node_id,
                 "age": round(max(0.0, now - float(n.get("at") or now)), 1)} for n in nodes]

    @hookimpl
    def prometheus_metrics(self) -> list[Metric]:
        if not self.active:
            return []
        up = GaugeMetricFamily("hookcast_cluster_redis_up",
                               "1 while the cluster's Redis answers this node")
        up.add_metric([], 1 if self.up else 0)
        held = GaugeMetricFamily("hookcast_cluster_leases", "Stream names this node leases")
        held.add_metric([], len(self.held))
        edges = GaugeMetricFamily("hookcast_cluster_edges",
                                  "Streams of other nodes copied here for local players")
        edges.add_metric([], len(self.edges))
        return [up, held, edges]


def _default_node_id(server: ServerInfo) -> str:
    node = f"{socket.gethostname()}:{server.ws_port}"
    return f"{node}/w{server.worker}" if server.worker is not None else node


def _advertised(server: ServerInfo) -> tuple[str, str]:
    settings = server.settings
    host = settings.ip or "127.0.0.1"
    if server.worker is not None:  # the public ports lead to any worker: its own ones
        host, ws_port, http_port = "127.0.0.1", server.internal_ws_port, server.internal_http_port
    else:
        ws_port, http_port = server.ws_port, server.http_port
    if ":" in host:
        host = f"[{host}]"
    ws = settings.value("cluster_advertise_ws") or f"ws://{host}:{ws_port}"
    http = settings.value("cluster_advertise_http") or f"http://{host}:{http_port}"
    return ws, http.rstrip("/")


def _without_password(url: str) -> str:
    try:
        parsed = URL(url)
    except ValueError:
        return "(unreadable URL)"
    return str(parsed.with_password("***")) if parsed.password else url


def hookcast_plugin() -> ClusterPlugin:
    return ClusterPlugin()
