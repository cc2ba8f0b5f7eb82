"""WCS REST hooks: POST JSON to ``<app url>/<method>`` for the methods an app enables.

The client picks the application with ``appKey`` in its ``connection`` message
(default ``defaultApp``); applications come from conf/apps.json, reloaded when it
changes. The backend's ``connect`` reply may carry ``restClientConfig`` (per method:
restExclude, clientExclude, restOnError LOG|FAIL, restPolicy NOTIFY|OVERWRITE|DISABLE,
restOverwrite), kept for that session.

- ``connect``: anything but 200 refuses the session.
- ``publishStream`` / ``playStream``: with restOnError FAIL anything but 200 fails the
  stream (``Restricted access``); with LOG the stream proceeds. OVERWRITE takes the
  ``restOverwrite`` fields (e.g. ``name``) from the reply.
- ``ConnectionStatusEvent``, ``StreamStatusEvent``, ``unPublishStream``, ``stopStream``:
  notifications; errors are logged.
- ``StreamKeepAliveEvent`` (to the apps of ``streaming_sessions_keep_alive_app_keys``):
  403 terminates that stream (``Terminated by keep-alive``); other errors terminate it
  only with restOnError FAIL.

One pooled HTTP client (at most ``MAX_CONNECTIONS`` requests at once, the rest wait in
its queue), each request bounded by ``rest_request_timeout``; every request is counted
by method and result in ``hookcast_rest_hook_requests_total`` on ``/metrics``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

import aiohttp
from prometheus_client.core import CounterMetricFamily

from hookcast import (
    Amend,
    Application,
    Applications,
    FolderWatcher,
    Refuse,
    ServerInfo,
    SessionInfo,
    StreamInfo,
    Terminate,
    hookimpl,
    load_applications,
    server_url,
    thaw,
)
from hookcast.plugins._rest_config import (
    DEFAULT,
    MethodConfig,
    encode,
    overwritten,
    parse_client_config,
    shape,
    signature_headers,
)

log = logging.getLogger("hookcast.rest_hooks")

REFUSED = "Restricted access"
MAX_CONNECTIONS = 100
MAX_REPLY = 1 << 20  # bytes of a backend's reply read at most
NO_TIMEOUT = 3600.0  # rest_request_timeout=0: no request timeout (bounded all the same)


class Reply:
    """A backend's answer: HTTP status (0 when it could not be reached) and JSON body."""

    def __init__(self, status: int, body: Any = None, error: str = "") -> None:
        self.status, self.body, self.error = status, body, error

    @property
    def ok(self) -> bool:
        return self.status == 200


class RestHooks:
    def __init__(self) -> None:
        self.server: ServerInfo | None = None
        self.apps = Applications(())
        self.configs: dict[str, dict[str, MethodConfig]] = {}
        #: (method, result) -> requests; result: ok, http_4xx, http_5xx, timeout, unreachable
        self.counts: Counter[tuple[str, str]] = Counter()
        self._http: aiohttp.ClientSession | None = None
        self._local = ""
        self._watcher: FolderWatcher | None = None

    # --- lifecycle ----------------------------------------------------------------

    @hookimpl
    async def after_server_start(self, server: ServerInfo) -> None:
        self.server = server
        #: this server's own HTTP address, for applications given as a path (/apps/EchoApp)
        self._local = server_url(server.settings, server.http_port)
        timeout = server.settings.rest_request_timeout or NO_TIMEOUT
        self.hookcast_timeout = timeout + 1.0  # the bus must not cut a request short
        self._load_apps()
        conf = server.home / "conf"
        self._watcher = FolderWatcher(conf, "apps.json", lambda _: self._load_apps())
        self._watcher.start()

    @hookimpl
    async def after_server_stop(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()
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
        return self.server is not None and not self.server.settings.disable_rest_requests

    # --- sessions -----------------------------------------------------------------

    @hookimpl
    async def before_connect(self, session: SessionInfo) -> Refuse | Amend | None:
        if not self.enabled:
            return None
        app = self.apps.by_key(session.app_key)
        if app is None:
            return Refuse(f"{REFUSED}: unknown appKey {session.app_key}")
        if "connect" not in app.methods:
            return None
        payload = {**thaw(session.client), "appKey": session.app_key,
                   "sessionId": session.session_id, "status": "PENDING"}
        reply = await self._post(app, "connect", payload, DEFAULT)
        if not reply.ok:
            return Refuse(f"{REFUSED}: connect answered {reply.status or reply.error}")
        configs = self.configs[session.session_id] = parse_client_config(reply.body)
        client_exclude = {
            m: sorted(c.client_exclude) for m, c in configs.items() if c.client_exclude
        }
        fields = overwritten(reply.body, configs.get("connect", DEFAULT))
        if client_exclude:
            fields["clientExclude"] = client_exclude
        return Amend(fields) if fields else None

    @hookimpl
    async def after_session_connect(self, session: SessionInfo) -> None:
        await self._event(session, "ConnectionStatusEvent", _connection(session, "ESTABLISHED"))

    @hookimpl
    async def after_session_disconnect(self, session: SessionInfo) -> None:
        if session.status == "DISCONNECTED":  # not for a session refused at connect
            await self._event(
                session, "ConnectionStatusEvent", _connection(session, "DISCONNECTED")
            )
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
        app = self.apps.by_key(session.app_key) if self.enabled else None
        config = self._config(session.session_id, method)
        if app is None or method not in app.methods or config.policy == "DISABLE":
            return None
        reply = await self._post(app, method, stream.to_wcs(with_sdp=True), config)
        if not reply.ok:
            return Refuse(REFUSED) if config.on_error == "FAIL" else None
        fields = overwritten(reply.body, config)
        amend = {_ATTRIBUTES[k]: v for k, v in fields.items() if k in _ATTRIBUTES}
        return Amend(amend) if amend else None

    @hookimpl
    async def after_stream_status(self, stream: StreamInfo) -> None:
        if stream.status in ("NEW", "PENDING"):
            return
        if stream.info == "Stopped by user":
            method = "unPublishStream" if stream.published else "stopStream"
            await self._event_for_stream(stream, method)
        await self._event_for_stream(stream, "StreamStatusEvent")

    @hookimpl
    async def on_stream_keep_alive(self, stream: StreamInfo) -> Terminate | None:
        if not self.enabled:
            return None
        assert self.server is not None
        config = self._config(stream.session_id, "StreamKeepAliveEvent")
        for key in self.server.settings.streaming_sessions_keep_alive_app_keys:
            app = self.apps.by_key(key)
            if app is None or "StreamKeepAliveEvent" not in app.methods:
                continue
            reply = await self._post(app, "StreamKeepAliveEvent", stream.to_wcs(), config)
            if reply.status == 403 or (not reply.ok and config.on_error == "FAIL"):
                return Terminate()
        return None

    @hookimpl
    def prometheus_metrics(self) -> list[CounterMetricFamily]:
        family = CounterMetricFamily(
            "hookcast_rest_hook_requests", "REST hook requests to applications, by result",
            labels=["method", "result"],
        )
        for (method, result), count in sorted(self.counts.items()):
            family.add_metric([method, result], count)
        return [family]

    # --- sending --------------------------------------------------------------------

    def _config(self, session_id: str, method: str) -> MethodConfig:
        return self.configs.get(session_id, {}).get(method, DEFAULT)

    async def _event_for_stream(self, stream: StreamInfo, method: str) -> None:
        app = self.apps.by_key(stream.app_key) if self.enabled else None
        config = self._config(stream.session_id, method)
        if app is not None and method in app.methods and config.policy != "DISABLE":
            await self._post(app, method, stream.to_wcs(), config)

    async def _event(self, session: SessionInfo, method: str, payload: dict[str, Any]) -> None:
        app = self.apps.by_key(session.app_key) if self.enabled else None
        config = self._config(session.session_id, method)
        if app is not None and method in app.methods and config.policy != "DISABLE":
            await self._post(app, method, payload, config)

    async def _post(self, app: Application, method: str, payload: Mapping[str, Any],
                    config: MethodConfig) -> Reply:
        assert self.server is not None
        settings = self.server.settings
        body = encode(shape(payload, config))
        headers = {
            "Content-Type": "application/json;charset=UTF-8", "Accept": "application/json",
            **signature_headers(body, settings.rest_hook_secret_key, settings.rest_hook_send_hash),
        }
        url = app.method_url(method, self._local)
        try:
            async with self._client().post(url, data=body, headers=headers) as response:
                raw = await response.content.read(MAX_REPLY)
                reply = Reply(response.status, _json(raw))
            result = "ok" if reply.ok else f"http_{str(reply.status)[0]}xx"
        except TimeoutError:
            reply, result = Reply(0, error="timeout"), "timeout"
        except (aiohttp.ClientError, OSError) as error:
            reply = Reply(0, error=f"{type(error).__name__}: {error}".rstrip(": "))
            result = "unreachable"
        self.counts[(method, result)] += 1
        if not reply.ok:
            log.warning("%s %s: %s", method, url, reply.status or reply.error)
        return reply

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None:
            assert self.server is not None
            seconds = self.server.settings.rest_request_timeout or NO_TIMEOUT
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
                timeout=aiohttp.ClientTimeout(total=seconds),
            )
        return self._http


#: reply fields (restOverwrite) a publish or play may take, by stream attribute
_ATTRIBUTES = {"name": "name", "custom": "custom", "record": "record",
               "hasAudio": "has_audio", "hasVideo": "has_video"}


def _connection(session: SessionInfo, status: str) -> dict[str, Any]:
    return {**thaw(session.client), "appKey": session.app_key,
            "sessionId": session.session_id, "status": status}


def _json(raw: bytes) -> Any:
    """A reply body as JSON, or None when it is not (ValueError covers bad UTF-8 too)."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def hookcast_plugin() -> RestHooks:
    return RestHooks()

