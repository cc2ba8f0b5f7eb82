"""WCS REST hooks: POST JSON to ``<app url>/<method>`` for the methods an app enables.

The client picks the application with ``appKey`` in its ``connection`` message
(default ``defaultApp``); applications come from conf/apps.json, reloaded when it
changes. A session's ``restClientConfig`` (per method: restExclude, clientExclude,
restOnError LOG|FAIL, restPolicy NOTIFY|OVERWRITE|DISABLE, restOverwrite) is its
application's own (apps.json; WCS's defaults where it says nothing) with the backend's
``connect`` reply over it field by field, kept for that session.

- ``connect``: the client's ``connection`` fields (less a ``restClientConfig`` of its
  own) with ``appKey``, ``sessionId``, ``remoteAddress`` and ``status``; anything but
  200 refuses the session.
- ``publishStream`` / ``playStream``: with restOnError FAIL anything but 200 fails the
  stream (``Restricted access``); with LOG the stream proceeds. OVERWRITE takes the
  ``restOverwrite`` fields (e.g. ``name``) from the reply.
- ``ConnectionStatusEvent``, ``StreamStatusEvent``, ``unPublishStream``, ``stopStream``:
  notifications; errors are logged.
- ``RecordingStatusEvent`` (hookcast's): a recording file ``STARTED`` or ``FINISHED``,
  with the stream object, ``fileName``, ``part``, ``duration``, ``size``, ``recovered``
  (a file a crash cut short, made final at the next start) and ``error``.
- ``StreamKeepAliveEvent``: sent for a stream to its own application (the stream's
  appKey), only when that application is listed in
  ``streaming_sessions_keep_alive_app_keys`` and enables the method. 403 terminates
  that stream (``Terminated by keep-alive``); other errors terminate it only with
  restOnError FAIL.

A reply is read whole (chunked or not) up to ``MAX_REPLY`` bytes; a longer one is an
error, as is any answer but 200: redirects are not followed (a 3xx is logged with its
Location), so a hook's body never goes anywhere but its application's URL.

One pooled HTTP client (at most ``MAX_CONNECTIONS`` requests at once, the rest wait in
its queue), each request bounded by ``rest_request_timeout``; every request is counted
by method and result in ``hookcast_rest_hook_requests_total`` on ``/metrics`` (ok,
http_3xx, http_4xx, http_5xx, too_large, timeout, unreachable).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hookcast import (
    Amend,
    Application,
    Applications,
    FolderWatcher,
    MethodConfig,
    RecordingInfo,
    Refuse,
    RestError,
    RestField,
    RestMethod,
    ServerInfo,
    SessionInfo,
    StreamInfo,
    Terminate,
    hookimpl,
    load_applications,
    printable,
    rest_routes,
    server_url,
    thaw,
)
from hookcast.plugins._outbox import DEAD, DELIVERED, PENDING, Outbox, Policy, Row, open_store
from hookcast.plugins._rest_config import (
    DEFAULT,
    MAX_REPLY,
    Reply,
    ReplyTooLarge,
    encode,
    overwritten,
    parse_json,
    read_reply,
    session_config,
    shape,
    signature_headers,
    standard_webhook_headers,
)
from hookcast.properties import Boolean, Integer, Property, Seconds, Text

log = logging.getLogger("hookcast.rest_hooks")

REFUSED = "Restricted access"
MAX_CONNECTIONS = 100
#: REST hook requests remembered for /rest-api/hooks/find_all (the console's Hooks page)
CALLS_KEPT = 200
HOOKS_FIND_ALL = RestMethod(
    "hooks", "find_all", "Applications with their enabled methods, and the last "
    f"{CALLS_KEPT} REST hook requests (newest first) with result and latency",
    get=True, answer_schema={
        "type": "object", "required": ["enabled", "applications", "calls"],
        "properties": {
            "enabled": {"type": "boolean"},
            "applications": {"type": "array", "items": {"type": "object"}},
            "calls": {"type": "array", "items": {
                "type": "object",
                "required": ["time", "appKey", "method", "url", "status", "result",
                             "latencyMs"],
                "properties": {"time": {"type": "integer"}, "appKey": {"type": "string"},
                               "method": {"type": "string"}, "url": {"type": "string"},
                               "status": {"type": "integer"}, "result": {"type": "string"},
                               "error": {"type": "string"},
                               "latencyMs": {"type": "number"}}}},
        }})
OUTBOX_ROW = {
    "type": "object",
    "required": ["id", "eventId", "appKey", "method", "url", "status", "attempts", "created"],
    "properties": {
        "id": {"type": "integer"}, "eventId": {"type": "string"},
        "appKey": {"type": "string"}, "method": {"type": "string"},
        "url": {"type": "string"}, "orderingKey": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "delivered", "dead"]},
        "attempts": {"type": "integer"},
        "created": {"type": "integer", "description": "epoch milliseconds"},
        "nextAttempt": {"type": "integer", "nullable": True,
                        "description": "epoch milliseconds (pending rows)"},
        "lastResult": {"type": "string"}, "size": {"type": "integer"},
    },
}
OUTBOX_STATUS = RestField("status", "status", "outbox_status",
                          "pending, delivered or dead (default: every status)")
OUTBOX_APP = RestField("appKey", "app", "string", "rows of this application only")
OUTBOX_DONE = RestField("status", "status", "outbox_done",
                        "every row of this status: delivered or dead (pending rows are "
                        "never deleted)")
OUTBOX_IDS = RestField("ids", "ids", "integers", "these rows (their id)")
OUTBOX_FIND = RestMethod(
    "hooks", "outbox/find_all", "REST-hook notifications in the outbox, newest first: "
    "pending, delivered and dead ones (200 at most, or limit)",
    (OUTBOX_STATUS, OUTBOX_APP, RestField("limit", "limit", "limit", "rows at most "
                                          "(default 200, at most 10000)")),
    answer_schema={"type": "array", "items": OUTBOX_ROW}, not_found="Not found", get=True)
OUTBOX_RETRY = RestMethod(
    "hooks", "outbox/retry", "Dead notifications (ids, or every dead one, of appKey if "
    "given) pending again, due now", (OUTBOX_IDS, OUTBOX_APP),
    answer_schema={"type": "object", "required": ["retried"], "properties": {
        "retried": {"type": "array", "items": {"type": "integer"}}}},
    not_found="Not found", changes_state=True)
OUTBOX_DELETE = RestMethod(
    "hooks", "outbox/delete", "Delete delivered or dead notifications (ids, or every one "
    "of status, of appKey if given; with neither, every delivered and dead one); pending "
    "ones are never deleted",
    (OUTBOX_IDS, OUTBOX_DONE, OUTBOX_APP),
    answer_schema={"type": "object", "required": ["deleted"], "properties": {
        "deleted": {"type": "integer"}}},
    not_found="Not found", changes_state=True)
NO_TIMEOUT = 3600.0  # rest_request_timeout=0: no request timeout (bounded all the same)
KEEP_ALIVE = "StreamKeepAliveEvent"


#: the properties this plugin reads (``settings.value(name)``)
PROPERTIES = [
    Property(
        "disable_rest_requests", False, Boolean(), "Send no REST hooks to applications"
    ),
    Property(
        "rest_request_timeout", 15, Integer(minimum=0, unit="s"),
        "Timeout of one REST hook request; 0 = no timeout",
    ),
    Property(
        "rest_hook_send_hash", False, Boolean(),
        "Sign REST hook bodies with rest_hook_secret_key (Authorization: WCS <hash>)",
        requires=("rest_hook_secret_key",),
    ),
    Property(
        "rest_hook_secret_key", "", Text(), "Secret key for signed REST hooks"
    ),
    Property(
        "rest_outbox_path", "state/outbox.db", Text(),
        "SQLite database of the REST-hook outbox (notifications not delivered yet, and "
        "dead ones), relative to the home; a worker of --workers N adds -w<N> (hookcast)",
    ),
    Property(
        "rest_retry_min_delay", 5.0, Seconds(minimum=0.05),
        "Wait before the first retry of a notification; it doubles with each failed "
        "attempt, with 20 % jitter (hookcast)",
    ),
    Property(
        "rest_retry_max_delay", 3600.0, Seconds(minimum=0.05),
        "Longest wait between two attempts of a notification (hookcast)",
    ),
    Property(
        "rest_retry_span", 86400.0, Seconds(minimum=1),
        "How long a notification is retried after it was made; then it is dead (kept for "
        "replay: /rest-api/hooks/outbox/retry) (hookcast)",
    ),
    Property(
        "rest_outbox_max_rows", 100_000, Integer(minimum=100, unit="rows"),
        "Rows the outbox keeps at most; past it the oldest delivered, then dead rows go, "
        "and only then the oldest pending ones (counted and logged) (hookcast)",
    ),
    Property(
        "rest_outbox_max_age", 604800.0, Seconds(minimum=60),
        "Delivered and dead rows older than this are deleted (hookcast)",
    ),
]


class RestHooks:
    def __init__(self) -> None:
        self.server: ServerInfo | None = None
        self.apps = Applications(())
        self.configs: dict[str, dict[str, MethodConfig]] = {}
        #: (method, result) -> requests; result: ok, http_4xx, http_5xx, timeout, unreachable
        self.counts: Counter[tuple[str, str]] = Counter()
        self._http: aiohttp.ClientSession | None = None
        self._local = ""
        self.outbox: Outbox | None = None
        self._watcher: FolderWatcher | None = None
        #: the last CALLS_KEPT requests (oldest dropped): what /hooks/find_all shows
        self.calls: deque[dict[str, Any]] = deque(maxlen=CALLS_KEPT)

    # --- lifecycle ----------------------------------------------------------------

    @hookimpl
    def plugin_properties(self) -> list[Property]:
        return PROPERTIES

    @hookimpl
    async def after_server_start(self, server: ServerInfo) -> None:
        self.server = server
        #: this server's own HTTP address, for applications given as a path (/apps/EchoApp)
        self._local = server_url(server.settings, server.http_port)
        timeout = server.settings.value("rest_request_timeout") or NO_TIMEOUT
        self.hookcast_timeout = timeout + 1.0  # the bus must not cut a request short
        self._load_apps()
        settings = server.settings
        path = Path(settings.value("rest_outbox_path"))
        path = path if path.is_absolute() else server.home / path
        if server.worker is not None:
            path = path.with_name(f"{path.stem}-w{server.worker}{path.suffix}")
        store = await asyncio.to_thread(open_store, path)
        self.outbox = Outbox(store, self._deliver, Policy(
            settings.value("rest_retry_min_delay"), settings.value("rest_retry_max_delay"),
            settings.value("rest_retry_span"), settings.value("rest_outbox_max_rows"),
            settings.value("rest_outbox_max_age")))
        await self.outbox.start()
        conf = server.home / "conf"
        self._watcher = FolderWatcher(conf, "apps.json", lambda _: self._load_apps())
        self._watcher.start()

    @hookimpl
    async def after_server_stop(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()
        if self.outbox is not None:
            await self.outbox.stop()
        if self._http is not None:
            await self._http.close()

    def _load_apps(self) -> None:
        assert self.server is not None
        path = self.server.home / "conf" / "apps.json"
        try:
            self.apps = load_applications(path)
            log.info("applications loaded: %s", ", ".join(a.app_key for a in self.apps.apps))
        except Exception as error:  # a bad edit keeps the last good applications
            log.error("%s not reloaded, previous applications kept: %s", path, error)

    @property
    def enabled(self) -> bool:
        return self.server is not None and not self.server.settings.value("disable_rest_requests")

    # --- sessions -----------------------------------------------------------------

    @hookimpl
    async def before_connect(self, session: SessionInfo) -> Refuse | Amend | None:
        """Keep the session's restClientConfig: its application's (apps.json), with the
        backend's ``connect`` reply over it field by field. Any answer but 200 to
        ``connect`` refuses the session. Another node of the cluster (``session.node``)
        is not a user: no REST hook is sent for it or its streams."""
        if not self.enabled or session.node:
            return None
        app = self.apps.by_key(session.app_key)
        if app is None:
            return Refuse(f"{REFUSED}: unknown appKey {session.app_key}")
        configs = self.configs[session.session_id] = dict(app.rest_client_config)
        fields: dict[str, Any] = {}
        own = configs.get("connect", DEFAULT)
        if "connect" in app.methods and own.policy != "DISABLE":
            reply = await self._post(app, "connect", _connection(session, "PENDING"), own)
            if not reply.ok:
                return Refuse(f"{REFUSED}: connect answered {reply.answer}")
            configs = self.configs[session.session_id] = session_config(
                app.rest_client_config, reply.body, _ignored(app, session))
            fields = overwritten(reply.body, configs.get("connect", DEFAULT))
        client_exclude = {
            m: sorted(c.client_exclude) for m, c in configs.items() if c.client_exclude
        }
        if client_exclude:
            fields["clientExclude"] = client_exclude
        return Amend(fields) if fields else None

    @hookimpl
    async def after_session_connect(self, session: SessionInfo) -> None:
        if session.node:
            return
        await self._notify(session.app_key, session.session_id, "ConnectionStatusEvent",
                           _connection(session, "ESTABLISHED"), f"session/{session.session_id}")

    @hookimpl
    async def after_session_disconnect(self, session: SessionInfo) -> None:
        if session.status == "DISCONNECTED" and not session.node:  # not refused at connect
            await self._notify(session.app_key, session.session_id, "ConnectionStatusEvent",
                               _connection(session, "DISCONNECTED"),
                               f"session/{session.session_id}")
        self.configs.pop(session.session_id, None)

    # --- streams --------------------------------------------------------------------

    @hookimpl
    async def before_publish(
        self, session: SessionInfo, stream: StreamInfo
    ) -> Refuse | Amend | None:
        return await self._invoke(session, stream, "publishStream")

    @hookimpl
    async def before_play(
        self, session: SessionInfo, stream: StreamInfo
    ) -> Refuse | Amend | None:
        return await self._invoke(session, stream, "playStream")

    async def _invoke(
        self, session: SessionInfo, stream: StreamInfo, method: str
    ) -> Refuse | Amend | None:
        target = self._target(session.app_key, session.session_id, method)
        if target is None or session.node:
            return None
        app, config = target
        reply = await self._post(app, method, stream.to_wcs(with_sdp=True), config)
        if not reply.ok:
            return Refuse(REFUSED) if config.on_error == "FAIL" else None
        fields = overwritten(reply.body, config)
        amend = {_ATTRIBUTES[k]: v for k, v in fields.items() if k in _ATTRIBUTES}
        return Amend(amend) if amend else None

    @hookimpl
    async def after_stream_status(self, stream: StreamInfo) -> None:
        if stream.status in ("NEW", "PENDING") or stream.node:
            return
        methods = ["StreamStatusEvent"]
        if stream.info == "Stopped by user":
            methods.insert(0, "unPublishStream" if stream.published else "stopStream")
        for method in methods:
            await self._notify(stream.app_key, stream.session_id, method, stream.to_wcs(),
                               f"stream/{stream.media_session_id}")

    @hookimpl
    async def on_stream_keep_alive(self, stream: StreamInfo) -> Terminate | None:
        """To the stream's own application only, and only when it is listed in
        ``streaming_sessions_keep_alive_app_keys``: another application's backend never
        hears of (or ends) this stream."""
        target = self._target(stream.app_key, stream.session_id, KEEP_ALIVE)
        if target is None or stream.node or not self._keeps_alive(stream.app_key):
            return None
        app, config = target
        reply = await self._post(app, KEEP_ALIVE, stream.to_wcs(), config)
        if reply.status == 403 or (not reply.ok and config.on_error == "FAIL"):
            return Terminate()
        return None

    @hookimpl
    async def on_record_started(self, recording: RecordingInfo) -> None:
        await self._recording_event(recording, "STARTED")

    @hookimpl
    async def on_record_finished(self, recording: RecordingInfo) -> None:
        await self._recording_event(recording, "FINISHED")

    async def _recording_event(self, recording: RecordingInfo, status: str) -> None:
        """``RecordingStatusEvent`` (hookcast's): the stream object, the file and how it
        went, so a backend learns of finished files without a shell script."""
        stream = recording.stream
        payload = {
            **stream.to_wcs(), "status": status, "fileName": recording.file_name,
            "part": recording.part, "duration": recording.duration, "size": recording.size,
            "recovered": recording.recovered, "error": recording.error,
        }
        await self._notify(stream.app_key, stream.session_id, "RecordingStatusEvent", payload,
                           f"stream/{stream.media_session_id}")

    def _keeps_alive(self, app_key: str) -> bool:
        assert self.server is not None
        return app_key in self.server.settings.streaming_sessions_keep_alive_app_keys

    @hookimpl
    def prometheus_metrics(self) -> list[Metric]:
        family = CounterMetricFamily(
            "hookcast_rest_hook_requests", "REST hook requests to applications, by result",
            labels=["method", "result"],
        )
        for (method, result), count in sorted(self.counts.items()):
            family.add_metric([method, result], count)
        if self.outbox is None:
            return [family]
        outbox = self.outbox
        depth = GaugeMetricFamily("hookcast_rest_outbox_depth",
                                  "Notifications in the REST-hook outbox, by status",
                                  labels=["status"])
        depth.add_metric([PENDING], outbox.pending_count)
        depth.add_metric([DEAD], outbox.dead_count)
        oldest = GaugeMetricFamily("hookcast_rest_outbox_oldest_seconds",
                                   "Age of the oldest pending notification (0: none)")
        oldest.add_metric([], outbox.oldest_age())
        deliveries = CounterMetricFamily("hookcast_rest_outbox_deliveries",
                                         "Delivery attempts from the outbox, by result",
                                         labels=["result"])
        for result, count in sorted(outbox.results.items()):
            deliveries.add_metric([result], count)
        dropped = CounterMetricFamily("hookcast_rest_outbox_dropped",
                                      "Pending notifications dropped by rest_outbox_max_rows")
        dropped.add_metric([], outbox.dropped)
        return [family, depth, oldest, deliveries, dropped]

    @hookimpl
    def register_rest_routes(self) -> list[web.RouteDef]:
        return rest_routes([(HOOKS_FIND_ALL, self.find_all), (OUTBOX_FIND, self.outbox_find),
                            (OUTBOX_RETRY, self.outbox_retry),
                            (OUTBOX_DELETE, self.outbox_delete)])

    def _outbox(self) -> Outbox:
        if self.outbox is None:
            raise RestError(503, "the REST-hook outbox is not running")
        return self.outbox

    async def outbox_find(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        status = args.get("status")
        if status not in (None, PENDING, DELIVERED, DEAD):
            raise RestError(400, "status: expected pending, delivered or dead", "status")
        limit = args.get("limit", 200)
        if not 1 <= limit <= 10_000:
            raise RestError(400, "limit: expected 1 to 10000", "limit")
        rows = await self._outbox().find(status, args.get("app"), limit)
        if not rows:
            raise RestError(404, "Not found")
        return [row.entry() for row in rows]

    async def outbox_retry(self, args: dict[str, Any]) -> dict[str, Any]:
        retried = await self._outbox().retry(args.get("ids"), args.get("app"))
        if not retried:
            raise RestError(404, "Not found")
        return {"retried": [row.id for row in retried]}

    async def outbox_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        status = args.get("status")
        if status not in (None, DELIVERED, DEAD):
            raise RestError(400, "status: expected delivered or dead (pending rows are "
                                 "never deleted)", "status")
        deleted = await self._outbox().delete(args.get("ids"), status, args.get("app"))
        if not deleted:
            raise RestError(404, "Not found")
        return {"deleted": deleted}

    async def find_all(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"enabled": self.enabled, "applications": self.apps.to_json()["apps"],
                "calls": list(reversed(self.calls))}

    # --- sending --------------------------------------------------------------------

    def _config(self, app: Application, session_id: str, method: str) -> MethodConfig:
        """The session's entry for ``method``: kept at connect, or (a session that began
        before this plugin heard of it) its application's."""
        configs = self.configs.get(session_id)
        return (app.rest_client_config if configs is None else configs).get(method, DEFAULT)

    def _target(
        self, app_key: str, session_id: str, method: str
    ) -> tuple[Application, MethodConfig] | None:
        """The application ``method`` goes to for this session and its restClientConfig
        entry; None when hooks are off, the app is unknown, does not enable ``method``,
        or the session's config DISABLEs it."""
        app = self.apps.by_key(app_key) if self.enabled else None
        if app is None or method not in app.methods:
            return None
        config = self._config(app, session_id, method)
        return None if config.policy == "DISABLE" else (app, config)

    async def _notify(
        self, app_key: str, session_id: str, method: str, payload: dict[str, Any], key: str
    ) -> None:
        """A notification: into the outbox (returns once it is written; delivered in
        order per ``key``, retried), or, for a method whose restPolicy is OVERWRITE or
        whose restOnError is FAIL, sent now as admission calls are."""
        target = self._target(app_key, session_id, method)
        if target is None:
            return
        app, config = target
        if self.outbox is None or config.policy == "OVERWRITE" or config.on_error == "FAIL":
            await self._post(app, method, payload, config)
            return
        await self.outbox.add(app.app_key, method, app.method_url(method, self._local),
                              f"{app.app_key}/{key}", encode(shape(payload, config)))

    async def _deliver(self, row: Row) -> tuple[int, str, str]:
        """Send one outbox row: (status, result, detail)."""
        assert self.server is not None
        settings = self.server.settings
        secret = settings.value("rest_hook_secret_key")
        headers = {
            "Content-Type": "application/json;charset=UTF-8", "Accept": "application/json",
            **signature_headers(row.body, secret, settings.value("rest_hook_send_hash")),
            **standard_webhook_headers(row.event_id, row.body, secret),
        }
        started = time.monotonic()
        try:
            reply = await self._send(row.url, row.body, headers)
        except TimeoutError:
            reply = Reply(0, error="timeout", result="timeout")
        except (aiohttp.ClientError, OSError) as error:
            reason = f"{type(error).__name__}: {error}".rstrip(": ")
            reply = Reply(0, error=reason, result="unreachable")
        self.counts[(row.method, reply.result)] += 1
        self.calls.append({
            "time": int(time.time() * 1000), "appKey": row.app, "method": row.method,
            "url": row.url, "status": reply.status, "result": reply.result,
            "error": reply.error, "latencyMs": round(1000 * (time.monotonic() - started), 1),
            "eventId": row.event_id, "attempt": row.attempts + 1,
        })
        return reply.status, reply.result, reply.describe()

    async def _post(self, app: Application, method: str, payload: Mapping[str, Any],
                    config: MethodConfig) -> Reply:
        assert self.server is not None
        settings = self.server.settings
        body = encode(shape(payload, config))
        headers = {
            "Content-Type": "application/json;charset=UTF-8", "Accept": "application/json",
            **signature_headers(body, settings.value("rest_hook_secret_key"),
                                settings.value("rest_hook_send_hash")),
        }
        url = app.method_url(method, self._local)
        started = time.monotonic()
        try:
            reply = await self._send(url, body, headers)
        except TimeoutError:
            reply = Reply(0, error="timeout", result="timeout")
        except (aiohttp.ClientError, OSError) as error:
            reason = f"{type(error).__name__}: {error}".rstrip(": ")
            reply = Reply(0, error=reason, result="unreachable")
        self.counts[(method, reply.result)] += 1
        self.calls.append({
            "time": int(time.time() * 1000), "appKey": app.app_key, "method": method,
            "url": url, "status": reply.status, "result": reply.result,
            "error": reply.error, "latencyMs": round(1000 * (time.monotonic() - started), 1),
        })
        if not reply.ok:
            log.warning("%s %s: %s", method, url, reply.describe())
        return reply

    async def _send(self, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        """One POST, never redirected: only a 200 reply's body is read (whole, up to
        MAX_REPLY bytes)."""
        client = self._client()
        async with client.post(url, data=body, headers=headers, allow_redirects=False) as response:
            status = response.status
            if status != 200:
                moved = 300 <= status < 400
                return Reply(status, result=f"http_{str(status)[0]}xx",
                             location=response.headers.get("Location", "") if moved else "")
            try:
                raw = await read_reply(response)
            except ReplyTooLarge:
                return Reply(status, error=f"a reply over {MAX_REPLY} bytes", result="too_large")
        return Reply(status, parse_json(raw))

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None:
            assert self.server is not None
            seconds = self.server.settings.value("rest_request_timeout") or NO_TIMEOUT
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
                timeout=aiohttp.ClientTimeout(total=seconds),
            )
        return self._http


#: reply fields (restOverwrite) a publish or play may take, by stream attribute
_ATTRIBUTES = {"name": "name", "custom": "custom", "record": "record",
               "hasAudio": "has_audio", "hasVideo": "has_video"}


def _connection(session: SessionInfo, status: str) -> dict[str, Any]:
    """The ``connect`` / ``ConnectionStatusEvent`` payload: what the client sent in its
    ``connection`` message, less a ``restClientConfig`` of its own (an echoing backend
    would hand the client its own rules), then the server's fields, which the client
    cannot set: ``appKey``, ``sessionId``, ``remoteAddress`` (the client's IP address as
    the server sees it) and ``status``."""
    client = {k: v for k, v in thaw(session.client).items() if k != "restClientConfig"}
    return {**client, "appKey": session.app_key, "sessionId": session.session_id,
            "remoteAddress": session.remote, "status": status}


def _ignored(app: Application, session: SessionInfo) -> Callable[[str], None]:
    """Logs a bad value in a backend's restClientConfig (ignored: the application's
    value or WCS's default stays)."""
    def report(problem: str) -> None:
        log.warning("%s: connect reply for session %s: restClientConfig.%s (ignored)",
                    app.app_key, session.session_id, printable(problem))
    return report


def hookcast_plugin() -> RestHooks:
    return RestHooks()

