"""WebRTC pull and push between servers: WCS's ``/rest-api/pull/*``.

``/pull/pull`` plays a stream of another WCS-protocol server (hookcast or WCS) and
publishes it here; ``/pull/push`` publishes a local stream there. Frames travel encoded,
as they came (no decoding, the codec kept end to end); keyframe requests travel back to
the original publisher. The connections, their retries and statuses: ``_remote``.

Loops (a server pulling from itself, A pulling from B what B pulls from A) are refused:
every request carries, in its ``custom``, the streams it feeds (``hookcastHops``:
``"<serverId>/<name>"``; each hookcast names itself in ``getUserData``). A server
refuses to play a stream (FAILED, ``Loop detected``) when the requester feeds that very
stream, or when the stream is pulled from one the requester feeds.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from yarl import URL

from hookcast import (
    Home,
    Info,
    MediaCore,
    NotPublished,
    Refuse,
    RestError,
    RestField,
    RestMethod,
    ServerInfo,
    SessionInfo,
    Settings,
    StreamInfo,
    hookimpl,
    host_allowed,
    printable,
    rest_routes,
    stream_name_problem,
    thaw,
)
from hookcast.plugins._remote import (
    ENDED,
    FAILED,
    HOPS,
    MAX_HOPS,
    STOP_TIMEOUT,
    Link,
    Options,
    Pull,
    Push,
)
from hookcast.plugins._remote_errors import LOOP
from hookcast.properties import HostPatterns, Integer, Property, Seconds, Text

log = logging.getLogger(__name__)

#: seconds an ended pull or push stays listed (unless terminated earlier)
ENDED_KEPT = 600.0

URI = RestField("uri", "uri", "ws_uri", "the remote server's WebSocket: ws://host:8080 or "
                "wss://host:8443 (with or without /websocket)")
LOCAL = RestField("localStreamName", "local_name", "string", "the stream's name here")
REMOTE = RestField("remoteStreamName", "remote_name", "string",
                   "the stream's name on the remote server (default: localStreamName)")
APP_KEY = RestField("appKey", "app_key", "string",
                    "the application to connect to on the remote (default: defaultApp)")
CUSTOM = RestField("custom", "custom", "object",
                   "fields sent in the remote connection's and stream's custom")
VERIFY = RestField("tlsVerify", "verify_tls", "boolean",
                   "wss:// only: verify the remote's certificate (default: true)")
ENTRY = {
    "type": "object",
    "required": ["localStreamName", "remoteStreamName", "uri", "status", "direction"],
    "properties": {
        "localMediaSessionId": {"type": "string", "nullable": True},
        "remoteMediaSessionId": {"type": "string", "nullable": True},
        "localStreamName": {"type": "string"}, "remoteStreamName": {"type": "string"},
        "uri": {"type": "string"},
        "status": {"type": "string", "enum": ["NEW", "CONNECTING", "ACTIVE", "RETRYING",
                                              "FAILED", "FINISHED"]},
        "direction": {"type": "string", "enum": ["pull", "push"]},
        "error": {"type": "string", "description": "why the last attempt failed or it ended"},
        "retries": {"type": "integer", "description": "reconnections tried"},
        "createDate": {"type": "integer", "description": "epoch milliseconds"},
    },
}
ENTRIES = {"type": "array", "items": ENTRY}
TERMINATED = {"type": "object", "required": ["terminated"],
              "properties": {"terminated": ENTRIES}}
START_FIELDS = (URI, LOCAL, REMOTE, APP_KEY, CUSTOM, VERIFY)
PULL = RestMethod("pull", "pull", "Play a stream of another server and publish it here as "
                  "localStreamName (answers once the first attempt succeeded or failed)",
                  START_FIELDS, ("uri", "localStreamName"), answer_schema=ENTRY,
                  not_found="Not found", changes_state=True)
PUSH = RestMethod("pull", "push", "Publish the local stream localStreamName on another "
                  "server as remoteStreamName", START_FIELDS, ("uri", "localStreamName"),
                  answer_schema=ENTRY, not_found="Local stream not found", changes_state=True)
FIND_ALL = RestMethod("pull", "find_all", "Every pull and push, running or ended (ended "
                      "ones for 10 minutes or until terminated)", answer_schema=ENTRIES,
                      not_found="Not found", get=True)
TERMINATE = RestMethod("pull", "terminate", "Stop and forget the pulls and pushes of "
                       "localStreamName (and remoteStreamName, uri when given)",
                       (LOCAL, REMOTE, URI), ("localStreamName",), answer_schema=TERMINATED,
                       not_found="Not found", changes_state=True)


#: the properties this plugin reads (``settings.value(name)``)
PROPERTIES = [
    Property(
        "pull_retry_attempts", 10, Integer(minimum=0, unit="attempts"),
        "Reconnections a pull or push tries after its remote fails or drops, before it "
        "gives up (FAILED); 0: none (hookcast)",
    ),
    Property(
        "pull_retry_initial_delay", 1.0, Seconds(minimum=0.1),
        "Wait before the first reconnection; it doubles with each failed one (hookcast)",
    ),
    Property(
        "pull_retry_max_delay", 30.0, Seconds(minimum=0.1),
        "Longest wait between two reconnections (hookcast)",
    ),
    Property(
        "pull_connect_timeout", 15.0, Seconds(minimum=1),
        "Seconds a pull or push gets to connect to its remote, be accepted and have its "
        "media flowing; longer is a failed attempt (hookcast)",
    ),
    Property(
        "pull_tls_ca_file", "", Text(),
        "PEM file of extra certificate authorities trusted for wss:// pulls and pushes "
        "(beside the system's), relative to the home or absolute (hookcast)",
    ),
    Property(
        "pull_max", 100, Integer(minimum=1, unit="pulls and pushes"),
        "Pulls and pushes at once (ended ones listed by /pull/find_all count too, until "
        "terminated); beyond it REST answers 503 (hookcast)",
    ),
    Property(
        "pull_allowed_hosts", (), HostPatterns(),
        "Hosts pulls and pushes may connect to: names with * wildcards "
        "(media-*.example.com) and CIDR networks (10.0.0.0/8); an address in the URI "
        "matches the networks, a name the name patterns (it is not resolved to check); "
        "other URIs get 403; empty = any (hookcast)",
    ),
]


class PullPlugin:
    #: stopping every link at shutdown may take STOP_TIMEOUT (they stop in parallel)
    hookcast_timeout = STOP_TIMEOUT + 5

    def __init__(self) -> None:
        self.stopping = False
        self.media: MediaCore | None = None
        self.settings: Settings | None = None
        self.home: Path | None = None
        self._tls: ssl.SSLContext | None = None
        self.links: list[Link] = []
        self.outcomes: Counter[tuple[str, str]] = Counter()

    # --- hooks ----------------------------------------------------------------------

    @hookimpl
    def plugin_properties(self) -> list[Property]:
        return PROPERTIES

    @hookimpl
    def after_server_start(self, server: ServerInfo) -> None:
        self.media = server.media
        self.settings = server.settings
        self.home = server.home

    @hookimpl
    async def before_server_stop(self, server: ServerInfo) -> None:
        self.stopping = True
        await asyncio.gather(*(link.terminate(Info.SHUTDOWN) for link in self.links))

    @hookimpl
    def register_rest_routes(self, settings: Settings, home: Home) -> list[web.RouteDef]:
        return rest_routes([(PULL, self.pull), (PUSH, self.push),
                            (FIND_ALL, self.find_all), (TERMINATE, self.terminate)])

    @hookimpl
    def before_play(self, session: SessionInfo, stream: StreamInfo) -> Refuse | None:
        return self._loop_check(stream)

    @hookimpl
    def before_publish(self, session: SessionInfo, stream: StreamInfo) -> Refuse | None:
        return self._loop_check(stream)

    @hookimpl
    def prometheus_metrics(self) -> list[Metric]:
        links = GaugeMetricFamily("hookcast_pulls", "Pulls and pushes listed, by status",
                                  labels=["direction", "status"])
        for (direction, status), count in sorted(Counter(
                (link.direction, link.status) for link in self._listed()).items()):
            links.add_metric([direction, status], count)
        attempts = CounterMetricFamily(
            "hookcast_pull_attempts", "Ends of pull and push connections by outcome "
            "(refused, dropped, finished, failed)", labels=["direction", "outcome"])
        for (direction, outcome), count in sorted(self.outcomes.items()):
            attempts.add_metric([direction, outcome], count)
        return [links, attempts]

    # --- loops ----------------------------------------------------------------------

    def _loop_check(self, stream: StreamInfo) -> Refuse | None:
        """Refuse a request that would feed the stream it reads. What a request says it
        feeds only ever refuses that request: nothing of it is kept."""
        hops = stream.custom.get(HOPS)
        if self.media is None or not isinstance(hops, list | tuple):
            return None
        feeds = {str(hop) for hop in hops[:MAX_HOPS]}
        if f"{self.media.server_id}/{stream.name}" in feeds:
            return Refuse(f"{LOOP}: the requester feeds {stream.name!r} on this server")
        for link in self.links:
            if link.direction != "pull" or link.ended or link.local_name != stream.name:
                continue
            if link.upstream and link.upstream in feeds:
                return Refuse(f"{LOOP}: {stream.name!r} is pulled here from the stream "
                              "the requester feeds")
        return None

    # --- REST -----------------------------------------------------------------------

    def _ready(self) -> tuple[MediaCore, Settings]:
        if self.media is None or self.settings is None:
            raise RestError(503, "the server is starting")
        if self.stopping:
            raise RestError(503, "the server is stopping")
        return self.media, self.settings

    def _listed(self) -> list[Link]:
        now = time.time()
        self.links = [link for link in self.links
                      if link.ended_at is None or now - link.ended_at < ENDED_KEPT]
        return self.links

    def _room(self, settings: Settings) -> None:
        listed = self._listed()
        if len(listed) < settings.value("pull_max"):
            return
        ended = [link for link in listed if link.status in ENDED]
        if not ended:
            raise RestError(503, f"{len(listed)} pulls and pushes run (pull_max)")
        self._forget(min(ended, key=lambda link: link.ended_at or 0))

    def _count(self, direction: str, outcome: str) -> None:
        self.outcomes[(direction, outcome)] += 1

    async def _tls_context(self, settings: Settings) -> ssl.SSLContext | bool:
        """What verifies wss:// remotes: the system's authorities, plus those of
        pull_tls_ca_file (loaded once, off the event loop)."""
        if not settings.value("pull_tls_ca_file"):
            return True
        if self._tls is None:
            path = Path(settings.value("pull_tls_ca_file"))
            if not path.is_absolute() and self.home is not None:
                path = self.home / path

            def load() -> ssl.SSLContext:
                context = ssl.create_default_context()
                context.load_verify_locations(cafile=str(path))
                return context

            try:
                self._tls = await asyncio.to_thread(load)
            except (OSError, ssl.SSLError) as error:
                raise RestError(500, f"pull_tls_ca_file: cannot load {str(path)!r}: "
                                     f"{error}") from None
        return self._tls

    async def _new(self, kind: type[Link], args: dict[str, Any]) -> Link:
        media, settings = self._ready()
        local = args["local_name"]
        remote = args.get("remote_name") or local
        uri_problem(args["uri"])
        host = URL(args["uri"]).host or ""
        if not host_allowed(host, settings.value("pull_allowed_hosts")):
            raise RestError(403, f"uri: the host {printable(host)!r} is not in "
                                 "pull_allowed_hosts", "uri")
        problem = stream_name_problem(local, settings.max_stream_name_length)
        if problem:
            raise RestError(400, f"localStreamName: {problem}", "localStreamName")
        if "\x00" in remote or not remote.strip() or len(remote) > 4096:
            raise RestError(400, "remoteStreamName: must not be blank, hold NUL or be longer "
                                 "than 4096 characters", "remoteStreamName")
        custom = thaw(args.get("custom") or {})
        if HOPS in custom:
            raise RestError(400, f"custom.{HOPS}: set by the server, not by requests",
                            f"custom.{HOPS}")
        verify = args.get("verify_tls", True)
        options = Options(args.get("app_key") or "defaultApp", custom,
                          await self._tls_context(settings) if verify else False)
        self._room(settings)
        return kind(media, settings, args["uri"], local, remote, options, self._count)

    async def pull(self, args: dict[str, Any]) -> dict[str, Any]:
        link = await self._new(Pull, args)
        media = link.media
        taken = media.find(link.local_name) is not None or any(
            other.local_name == link.local_name and other.direction == "pull"
            and not other.ended for other in self.links)
        if taken:
            raise RestError(409, f"localStreamName: {link.local_name!r} is already in use "
                                 "here", "localStreamName")
        self.links.append(link)
        return await self._begin(link)

    async def push(self, args: dict[str, Any]) -> dict[str, Any]:
        link = await self._new(Push, args)
        assert isinstance(link, Push)
        same = [other for other in self.links if other.direction == "push" and not other.ended
                and (other.local_name, other.remote_name, other.uri)
                == (link.local_name, link.remote_name, link.uri)]
        if same:
            raise RestError(409, f"remoteStreamName: {link.local_name!r} is already pushed "
                                 f"to {printable(link.uri)} as {link.remote_name!r}",
                            "remoteStreamName")
        self.links.append(link)  # counted at once (pull_max) while it opens
        try:
            await link.open()
        except NotPublished:
            self._forget(link)
            raise RestError(404, f"localStreamName: no stream {link.local_name!r} is "
                                 "published here", "localStreamName") from None
        return await self._begin(link)

    def _forget(self, link: Link) -> None:
        if link in self.links:
            self.links.remove(link)

    async def _begin(self, link: Link) -> dict[str, Any]:
        link.start()
        assert self.settings is not None
        await link.first_outcome(self.settings.value("pull_connect_timeout") + 5)
        if link.status == FAILED and link.refused_field:
            self._forget(link)
            raise RestError(409, f"{link.direction} refused: {link.error}", link.refused_field)
        log.info("%s %s %s <-> %s: %s %s", link.direction, printable(link.uri),
                 printable(repr(link.local_name)), printable(repr(link.remote_name)),
                 link.status, link.error)
        return link.entry()

    async def find_all(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        found = [link.entry() for link in self._listed()]
        if not found:
            raise RestError(404, FIND_ALL.not_found or "Not found")
        return found

    async def terminate(self, args: dict[str, Any]) -> dict[str, Any]:
        chosen = [link for link in self._listed()
                  if link.local_name == args["local_name"]
                  and args.get("remote_name") in (None, link.remote_name)
                  and args.get("uri") in (None, link.uri)]
        if not chosen:
            raise RestError(404, TERMINATE.not_found or "Not found")
        await asyncio.gather(*(link.terminate() for link in chosen))
        for link in chosen:
            self._forget(link)
        return {"terminated": [link.entry() for link in chosen]}


def uri_problem(uri: str) -> None:
    """400 for a ws(s):// URL that cannot be connected to as it is."""
    try:
        url = URL(uri)
        port = url.port
    except ValueError as error:
        raise RestError(400, f"uri: {error}", "uri") from None
    if not url.host:
        raise RestError(400, "uri: names no host", "uri")
    if url.user is not None or url.password is not None:
        raise RestError(400, "uri: must not hold credentials (appKey and custom carry what "
                             "the remote needs)", "uri")
    if port is not None and not 0 < port < 65536:
        raise RestError(400, f"uri: port {port} is out of range", "uri")


def hookcast_plugin() -> PullPlugin:
    return PullPlugin()

