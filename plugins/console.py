"""The web console on the HTTP port: dashboard, publish, play, records, media, plugins and
hooks pages, rendered with jinja2; no build step, nothing fetched from elsewhere.

Everything it shows and does goes through the REST API, in-process
(``hookcast.rest_call``): the console can do exactly what the API can, no more.

- ``/`` (dashboard) is live: ``/console/events`` (server-sent events) sends a snapshot
  of streams (with metrics), sessions, recordings, pulls and VOD readings once a second,
  made once for every viewer, with each stream's bitrate over the last minute.
- Actions are ``POST /console/api/<group>/<method>`` with the REST method's JSON body.
- Access: the REST API's networks and auth. With ``rest_api_user`` the browser asks for
  Basic credentials; with ``rest_api_token`` pages answer a sign-in form, whose token
  (checked) becomes a session cookie (an HMAC of the token, ``HttpOnly``,
  ``SameSite=Strict``); wrong tokens are slowed per client address
  (``_console_signin``), never for everyone. Cross-site requests are refused (403).
- ``/console/static/`` is public (``hookcast.PublicFiles``: CORS ``*``, so other sites'
  pages may import ``wcs.js``); nothing else of the console is.
- ``/play?name=X`` plays X at once (``&wait=1``: tries again until it is published).
- Cross-site request forgery: every action must carry ``X-CSRF-Token`` equal to the
  ``hookcast_csrf`` cookie (``SameSite=Strict``) the pages set and embed: another site
  can neither read nor send it (403 otherwise).
- Every value is escaped: jinja2 autoescaping on the server, ``textContent`` in the
  pages' scripts.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from hookcast import (
    PublicFiles,
    RestError,
    ServerInfo,
    Settings,
    __version__,
    check_access,
    hookimpl,
    request_host,
    rest_authorized,
    rest_call,
)
from hookcast.plugins._console_signin import SignInThrottle, TooMany

log = logging.getLogger(__name__)

FILES = Path(__file__).resolve().parent / "console_files"
PAGES = (  # path, label, template
    ("/", "Dashboard", "dashboard.html"),
    ("/publish", "Publish", "publish.html"),
    ("/play", "Play", "play.html"),
    ("/records", "Records", "records.html"),
    ("/media", "Media", "media.html"),
    ("/plugins", "Plugins", "plugins.html"),
    ("/hooks", "Hooks", "hooks.html"),
)
CSRF_COOKIE = "hookcast_csrf"
CSRF_HEADER = "X-CSRF-Token"
SESSION_COOKIE = "hookcast_console"
#: seconds between two snapshots of the dashboard
TICK = 1.0
#: snapshots of bitrate kept per stream (a minute)
HISTORY = 60
#: dashboards watching at once; more are refused (503)
MAX_WATCHERS = 32
#: seconds a slow dashboard gets to take one snapshot before it is dropped
SEND_TIMEOUT = 5.0
#: seconds a console sign-in lasts
SESSION_SECONDS = 12 * 3600
#: the largest body an action or a sign-in may send
MAX_BODY = 64 * 1024
#: what the dashboard's actions may call (the REST methods that change state, and reads)
ACTIONS = frozenset({
    "stream/terminate", "connection/terminate", "stream/startRecording",
    "stream/stopRecording", "vod/startup", "vod/terminate", "pull/pull", "pull/push",
    "pull/terminate", "records/delete", "records/find_all", "media/find_all",
    "hooks/outbox/find_all", "hooks/outbox/retry", "hooks/outbox/delete",
})
#: the Hooks page counts at most this many outbox rows of each status ("1000+" past it)
OUTBOX_COUNTED = 1000
#: and lists at most this many pending (oldest first) and dead (newest first) rows
OUTBOX_LISTED = 100
OUTBOX_STATUSES = ("pending", "dead", "delivered")


class Console:
    def __init__(self) -> None:
        self.server: ServerInfo | None = None
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(FILES / "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["utc"] = utc
        self.snapshot: dict[str, Any] = {}
        self.event = b""
        self.history: dict[str, deque[int]] = {}
        self._tick = asyncio.Condition()
        self._sampler: asyncio.Task[None] | None = None
        self._app: web.Application | None = None
        self.watchers = 0
        self.closing = False
        self.signin = SignInThrottle()

    # --- hooks ----------------------------------------------------------------------

    @hookimpl
    def after_server_start(self, server: ServerInfo) -> None:
        self.server = server

    @hookimpl
    async def before_server_stop(self) -> None:
        self.closing = True
        async with self._tick:  # every dashboard's stream ends
            self._tick.notify_all()
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)

    @hookimpl
    def register_rest_routes(self) -> list[web.AbstractRouteDef]:
        routes: list[web.AbstractRouteDef] = [web.get(path, self.page) for path, _, _ in PAGES]
        return [
            *routes,
            *PublicFiles("/console/static/", FILES / "static").routes(),
            web.get("/console/events", self.events),
            # a method may have a slash of its own (hooks/outbox/retry)
            web.post("/console/api/{group}/{method:.+}", self.action),
            web.post("/console/login", self.login),
        ]

    # --- access ---------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        if self.server is None:
            raise web.HTTPServiceUnavailable(text="starting")
        return self.server.settings

    def _secret(self) -> str:
        s = self.settings
        return s.rest_api_token or (f"{s.rest_api_user}:{s.rest_api_password}"
                                    if s.rest_api_user else "")

    def _session_value(self, expires: int) -> str:
        """``<expiry>.<HMAC of it, keyed by the REST API's secret>``: valid until then,
        and no longer once the token or password changes."""
        mac = hmac.new(self._secret().encode(), f"hookcast console {expires}".encode(),
                       hashlib.sha256).hexdigest()
        return f"{expires}.{mac}"

    def _signed_in(self, request: web.Request) -> bool:
        cookie = request.cookies.get(SESSION_COOKIE, "")
        expires, _, _ = cookie.partition(".")
        if not self._secret() or not expires.isdigit() or int(expires) < time.time():
            return False
        return hmac.compare_digest(cookie, self._session_value(int(expires)))

    def _check(self, request: web.Request) -> None:
        check_access(request, self.settings, authenticated=self._signed_in(request))

    def _check_csrf(self, request: web.Request) -> None:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        header = request.headers.get(CSRF_HEADER, "")
        if not cookie or not hmac.compare_digest(cookie, header):
            raise RestError(403, f"{CSRF_HEADER}: missing or wrong (the console's pages send "
                                 "it; other sites cannot)", CSRF_HEADER)

    # --- pages ----------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        try:
            self._check(request)
        except RestError as error:
            return self._refused_page(request, error)
        app = request.app
        template = next(t for path, _, t in PAGES if path == request.path)
        data: dict[str, Any] = {}
        if request.path == "/play":  # /play?name=X plays X at once (&wait=1: until it comes)
            data["name"] = request.query.get("name", "stream1")
            data["wait"] = request.query.get("wait") in ("1", "true", "on")
            data["whep"] = request.query.get("whep") in ("1", "true", "on")
        elif request.path == "/records":
            data["records"] = (await rest_call(app, "/rest-api/records/find_all"))[1] or []
        elif request.path == "/media":
            data["files"] = (await rest_call(app, "/rest-api/media/find_all"))[1] or []
        elif request.path == "/plugins":
            data["plugins"] = (await rest_call(app, "/rest-api/plugins/find_all"))[1]
        elif request.path == "/hooks":
            status, hooks = await rest_call(app, "/rest-api/hooks/find_all")
            data["hooks"] = hooks if status == 200 else None
            data["outbox"] = await outbox_view(app) if status == 200 else None
        return self._render(request, template, **data)

    def _render(self, request: web.Request, template: str, status: int = 200,
                **data: Any) -> web.Response:
        assert self.server is not None
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        html = self.templates.get_template(template).render(
            nav=[(path, label) for path, label, _ in PAGES], current=request.path,
            page=template.removesuffix(".html"), version=__version__, csrf=csrf,
            ws_port=self.server.ws_port, wss_port=self._wss_port(request), **data)
        response = web.Response(text=html, content_type="text/html", status=status)
        response.set_cookie(CSRF_COOKIE, csrf, samesite="Strict", path="/",
                            secure=request.secure)
        host = request_host(request) or "localhost"
        host = f"[{host}]" if ":" in host else host
        sockets = f"ws://{host}:{self.server.ws_port}"
        if self._wss_port(request):
            sockets += f" wss://{host}:{self._wss_port(request)}"
        response.headers.update({
            # only this server: pages, scripts, media, its REST API and signalling ports
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
            f"media-src 'self' blob:; connect-src 'self' {sockets}; script-src 'self'; "
            "style-src 'self'; frame-ancestors 'none'; form-action 'self'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store",
        })
        return response

    def _wss_port(self, request: web.Request) -> int:
        return self.settings.wss_port if self.settings.tls_certificate else 0

    def _refused_page(self, request: web.Request, error: RestError) -> web.Response:
        if error.status != 401:
            return web.Response(status=error.status, text=error.message)
        if self.settings.rest_api_token:  # a token cannot be asked by the browser: a form
            return self._render(request, "login.html", status=401)
        return web.Response(status=401, text="authorization required",
                            headers={"WWW-Authenticate": 'Basic realm="hookcast"'})

    async def login(self, request: web.Request) -> web.Response:
        """``{"token"}`` from the sign-in form: a session cookie if it is the token.
        Each client address's attempts are taken one at a time, a wrong one costing it
        half a second (``_console_signin``): at most two guesses a second per address,
        however many it sends at once, while other addresses sign in at once."""
        try:
            check_access(request, self.settings, authenticated=True)  # networks, origins
            self._check_csrf(request)
            body = await json_body(request)
        except RestError as error:
            return web.json_response(error.body(), status=error.status)
        token = body.get("token") if isinstance(body, dict) else None
        try:
            async with self.signin.turn(request.remote):
                if not isinstance(token, str) or not rest_authorized(self.settings,
                                                                     f"Bearer {token}"):
                    await self.signin.wrong()
                    return web.json_response({"status": 401, "message": "wrong token"},
                                             status=401)
        except TooMany as error:
            return web.json_response({"status": error.status, "message": error.message},
                                     status=error.status, headers={"Retry-After": "5"})
        expires = int(time.time() + SESSION_SECONDS)
        response = web.json_response({"signedIn": True})
        response.set_cookie(SESSION_COOKIE, self._session_value(expires), httponly=True,
                            samesite="Strict", path="/", secure=request.secure,
                            max_age=SESSION_SECONDS)
        return response

    # --- actions --------------------------------------------------------------------

    async def action(self, request: web.Request) -> web.Response:
        name = f"{request.match_info['group']}/{request.match_info['method']}"
        try:
            self._check(request)
            self._check_csrf(request)
            if name not in ACTIONS:
                raise RestError(404, f"{name} is not a console action")
            body = await json_body(request)
        except RestError as error:
            return web.json_response(error.body(), status=error.status)
        status, answer = await rest_call(request.app, f"/rest-api/{name}", body)
        return web.json_response(answer, status=status)

    # --- the live dashboard ---------------------------------------------------------

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: one ``snapshot`` a second until the page goes away."""
        try:
            self._check(request)
            if self.closing:
                raise RestError(503, "the server is stopping")
            if self.watchers >= MAX_WATCHERS:
                raise RestError(503, f"{MAX_WATCHERS} dashboards are open")
        except RestError as error:
            return web.json_response(error.body(), status=error.status)
        self._app = request.app
        if self._sampler is None or self._sampler.done():
            self._sampler = asyncio.create_task(self._sample(), name="console sampler")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-store"})
        await response.prepare(request)
        self.watchers += 1
        try:
            seen = b""
            while True:
                event = await self._next(seen)
                if event is None:  # the server stops
                    break
                seen = event
                await asyncio.wait_for(response.write(event), SEND_TIMEOUT)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self.watchers -= 1
        return response

    async def _next(self, seen: bytes) -> bytes | None:
        """The first snapshot event that is not ``seen``; None once the server stops."""
        async with self._tick:
            await self._tick.wait_for(
                lambda: self.closing or (self.event is not seen and bool(self.event)))
            return None if self.closing else self.event

    async def _sample(self) -> None:
        """Build the snapshot once a TICK while anyone watches (stops when nobody does)."""
        idle = 0
        while idle < 5:
            started = time.monotonic()
            try:
                snapshot = await self._take()
            except Exception:
                log.exception("console: a snapshot failed")
                snapshot = {"time": time.time(), "error": "snapshot failed"}
            data = json.dumps(snapshot, separators=(",", ":"))
            async with self._tick:
                self.snapshot = snapshot
                self.event = f"data: {data}\n\n".encode()  # encoded once for every viewer
                self._tick.notify_all()
            idle = idle + 1 if self.watchers == 0 else 0
            await asyncio.sleep(max(0.0, TICK - (time.monotonic() - started)))

    async def _take(self) -> dict[str, Any]:
        app = self._app
        assert app is not None

        async def listed(path: str, body: Any = None) -> list[Any]:
            status, answer = await rest_call(app, path, body)
            return answer if status == 200 and isinstance(answer, list) else []

        streams = await listed("/rest-api/stream/find", {"display": ["metrics"]})
        live = set()
        for stream in streams:
            metrics = stream.get("metrics") or {}
            rate = int(metrics.get("VIDEO_RATE", 0)) + int(metrics.get("AUDIO_RATE", 0))
            key = stream["mediaSessionId"]
            live.add(key)
            self.history.setdefault(key, deque(maxlen=HISTORY)).append(rate)
            stream["bitrateHistory"] = list(self.history[key])
        for gone in set(self.history) - live:
            del self.history[gone]
        return {
            "time": time.time(), "streams": streams,
            "sessions": await listed("/rest-api/connection/find_all"),
            "recordings": await listed("/rest-api/recorder/find_all"),
            "pulls": await listed("/rest-api/pull/find_all"),
            "vod": await listed("/rest-api/vod/find_all"),
            "nodes": await listed("/rest-api/cluster/find_all"),
        }


async def outbox_view(app: web.Application) -> dict[str, Any]:
    """What the Hooks page shows of the REST-hook outbox (hooks/outbox/find_all): rows by
    application and status (counted up to OUTBOX_COUNTED), the pending rows oldest
    first and the dead ones newest first (OUTBOX_LISTED of each)."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for status in OUTBOX_STATUSES:
        code, found = await rest_call(app, "/rest-api/hooks/outbox/find_all",
                                      {"status": status, "limit": OUTBOX_COUNTED})
        rows[status] = found if code == 200 and isinstance(found, list) else []
    apps = sorted({row["appKey"] for found in rows.values() for row in found})
    return {
        "counts": {key: {s: sum(r["appKey"] == key for r in rows[s]) for s in OUTBOX_STATUSES}
                   for key in apps},
        "totals": {s: f"{len(rows[s])}{'+' if len(rows[s]) >= OUTBOX_COUNTED else ''}"
                   for s in OUTBOX_STATUSES},
        "pending": rows["pending"][::-1][:OUTBOX_LISTED],
        "dead": rows["dead"][:OUTBOX_LISTED],
    }


def utc(millis: int) -> str:
    """Epoch milliseconds as an ISO 8601 UTC time (the pages' scripts show it in the
    reader's own time)."""
    moment = datetime.fromtimestamp(millis / 1000, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


async def json_body(request: web.Request) -> Any:
    """The request's JSON body: declared JSON (415), at most MAX_BODY bytes, valid and
    nested at most as deep as the REST API takes (400)."""
    if request.content_type != "application/json":
        raise RestError(415, "Content-Type: expected application/json", "Content-Type")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise RestError(413, f"request body: over {MAX_BODY} bytes", "body")
    try:
        return json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError):
        raise RestError(400, "request body: invalid JSON, or nested too deep", "body") from None


def hookcast_plugin() -> Console:
    return Console()

