"""Building and running the server: two aiohttp applications and their listeners.

The HTTP application (port ``http.port``) owns every shared resource (settings, the
hook bus, plugins, applications) and opens and closes them in its cleanup context.
The WebSocket application (port ``ws.port``) serves signalling on ``/`` and
``/websocket`` (any path) and shares those resources. Shutdown goes sinks, sources,
sockets: every player, push and recording ends, then every publisher and media source
(their clients are told), then the signalling sockets close, then the HTTP side and
its cleanup contexts in reverse (the catalogue of records/, the media catalogue, plugin
reloads, the engine's last work and every recording file made final).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from hookcast.api.guard import open_to_loopback_only
from hookcast.api.health import core_routes
from hookcast.api.prometheus import make_registry, prometheus_routes
from hookcast.api.records import record_routes
from hookcast.api.rest import RestHandler, rest_middleware, rest_routes
from hookcast.api.webroot import overlap, web_root
from hookcast.bus import HookBus
from hookcast.config.apps import load_applications
from hookcast.config.home import Home, media_folder
from hookcast.config.settings import Settings, media_address_problem
from hookcast.config.watch import FolderWatcher
from hookcast.engine.engine import Engine
from hookcast.events import ServerInfo
from hookcast.keys import (
    APPLICATIONS,
    BUS,
    ENGINE,
    HOME,
    LOADER,
    MEDIA,
    PLUGIN_HANDLERS,
    PLUGIN_METHODS,
    PROMETHEUS,
    RECORDS_CATALOGUE,
    SETTINGS,
    STARTED_AT,
    WORKER,
)
from hookcast.loader import PluginLoader
from hookcast.media.catalogue import Catalogue
from hookcast.recording.catalogue import RecordsCatalogue
from hookcast.recording.files import CONTENT_TYPES
from hookcast.rtc import aiortc as compat
from hookcast.signalling.session import signalling_routes
from hookcast.version import __version__

log = logging.getLogger(__name__)

#: seconds the HTTP and WebSocket runners wait for their handlers at shutdown
SHUTDOWN_BACKSTOP = 30.0
#: where a worker's internal ports listen (the nodes of one host call each other there)
INTERNAL_HOST = "127.0.0.1"


class StartupError(Exception):
    """The server cannot start; the message says why and names the property or plugin."""


def create_http_app(home: Home, settings: Settings, worker: int | None = None) -> web.Application:
    """The HTTP application with its shared resources, plugins loaded and routes added;
    ``worker``: which worker of ``hookcast serve --workers N`` it serves (None: alone)."""
    home.ensure()
    app = web.Application()
    app[SETTINGS] = settings
    app[WORKER] = worker
    app[HOME] = home
    app[STARTED_AT] = time.time()
    app[APPLICATIONS] = load_applications(home.apps_file)
    bus = HookBus(timeout=settings.plugin_hook_timeout)
    app[BUS] = bus
    loader = PluginLoader(bus, home.plugins, settings.disabled_plugins)
    loader.load_all()
    app[LOADER] = loader
    app[SETTINGS] = settings = plugin_settings(bus, settings)
    compat.install()
    compat.use_host_addresses(settings.ip or None)
    app[ENGINE] = Engine(settings, bus, home.records,
                         lambda uri, loop: bus.media_source_for_uri(uri, home, loop))
    app[PROMETHEUS] = make_registry(app[ENGINE], bus)
    app[PLUGIN_METHODS] = []
    app[PLUGIN_HANDLERS] = {}
    app.middlewares.append(rest_middleware)
    app.add_routes(core_routes())
    app.add_routes(rest_routes())
    app.add_routes(record_routes())
    app.add_routes(prometheus_routes())
    _add_plugin_routes(app, bus, settings, home)
    _add_web_root(app, home, settings)
    app[MEDIA] = Catalogue(media_folder(home.root, settings.media_dir))
    app[RECORDS_CATALOGUE] = RecordsCatalogue(home.records, CONTENT_TYPES)
    app.cleanup_ctx.append(_engine_ctx)
    app.cleanup_ctx.append(_plugin_reload_ctx)
    app.cleanup_ctx.append(_media_ctx)
    app.cleanup_ctx.append(_records_ctx)
    return app


def plugin_settings(bus: HookBus, settings: Settings) -> Settings:
    """``settings`` with the loaded plugins' properties resolved; unknown properties
    logged. Raises StartupError (two plugins declare one property) or ConfigError (a
    bad value)."""
    try:
        declared = bus.plugin_properties()
    except ValueError as error:
        raise StartupError(str(error)) from error
    resolved, warnings = settings.with_plugins(declared)
    for warning in warnings:
        log.warning("%s", warning)
    return resolved


async def _engine_ctx(app: web.Application) -> AsyncIterator[None]:
    """The engine's background work (rate sampler, keep-alive, idle sources, memory) from
    the start; at the end, after its streams ended (Server.stop), its last operations
    and every recording file made final."""
    engine = app[ENGINE]
    engine.start()
    yield
    await engine.close()


async def _media_ctx(app: web.Application) -> AsyncIterator[None]:
    """The media catalogue: read at start, watched while the server runs."""
    await app[MEDIA].start()
    yield
    await app[MEDIA].close()


async def _records_ctx(app: web.Application) -> AsyncIterator[None]:
    """The catalogue of records/: built in the background from the start, watched
    while the server runs."""
    await app[RECORDS_CATALOGUE].start()
    yield
    await app[RECORDS_CATALOGUE].close()


def _add_plugin_routes(app: web.Application, bus: HookBus, settings: Settings, home: Home) -> None:
    try:
        contributions = bus.register_rest_routes(settings, home)
    except Exception as error:
        raise StartupError(f"a plugin failed in register_rest_routes: {error!r}") from error
    taken = {(route.method, route.resource.canonical) for route in app.router.routes()
             if route.resource is not None}
    for plugin, routes in contributions:
        routes = list(routes)
        for route in routes:
            if isinstance(route, web.RouteDef) and (route.method, route.path) in taken:
                raise StartupError(
                    f"plugin {plugin}: cannot add its REST routes: "
                    f"{route.method} {route.path} is already served"
                )
        try:
            app.add_routes(routes)
        except (RuntimeError, ValueError, TypeError) as error:
            raise StartupError(f"plugin {plugin}: cannot add its REST routes: {error}") from error
        taken |= {(r.method, r.path) for r in routes if isinstance(r, web.RouteDef)}
        for route in routes:
            served = getattr(getattr(route, "handler", None), "__self__", None)
            if isinstance(route, web.RouteDef) and route.method == "POST" \
                    and isinstance(served, RestHandler):
                app[PLUGIN_METHODS].append(served.method)
                app[PLUGIN_HANDLERS][served.method.path] = served


def _add_web_root(app: web.Application, home: Home, settings: Settings) -> None:
    """``web_root_dir`` at ``web_root_path``, after every other route: a path that
    another route already serves (or lies in) stops the start, naming the property."""
    root = web_root(home, settings)
    if root is None:
        return
    taken = overlap(root.prefix, app)
    if taken is not None:
        raise StartupError(f"web_root_path={root.prefix}: {taken} is already served there; "
                           "choose another path")
    app.add_routes(root.routes())
    missing = "" if root.folder.is_dir() else " (missing: create it to serve pages)"
    log.info("web root %s served at %s%s", root.folder, root.prefix, missing)


async def _plugin_reload_ctx(app: web.Application) -> AsyncIterator[None]:
    watcher = None
    if app[SETTINGS].plugin_reload:
        loader = app[LOADER]

        def changed(path: object) -> None:
            task = asyncio.get_running_loop().create_task(loader.reload_dropin(path))  # type: ignore[arg-type]
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        reloads: set[asyncio.Task[object]] = set()
        watcher = FolderWatcher(app[HOME].plugins, "*.py", changed)
        watcher.start()
    yield
    if watcher is not None:
        await watcher.stop()


def create_ws_app(http_app: web.Application) -> web.Application:
    """The signalling application; it shares the HTTP application's resources."""
    app = web.Application()
    app[SETTINGS] = http_app[SETTINGS]
    app[HOME] = http_app[HOME]
    app[BUS] = http_app[BUS]
    app[APPLICATIONS] = http_app[APPLICATIONS]
    app[STARTED_AT] = http_app[STARTED_AT]
    app[ENGINE] = http_app[ENGINE]
    app.add_routes(signalling_routes())
    return app


@dataclass(frozen=True)
class Listener:
    """One configured listener, named by the property that sets its port."""

    label: str
    prop: str
    scheme: str
    port: int
    detail: str


class Server:
    """Starts both applications on their ports and stops them in order.

    A worker of ``hookcast serve --workers N`` (``worker``, its index) shares the public
    ports with the other workers (``SO_REUSEPORT``: the kernel spreads connections) and
    listens on two loopback ports of its own too, its *internal* ports, where the other
    nodes reach this very process."""

    def __init__(self, home: Home, settings: Settings, worker: int | None = None) -> None:
        self.home = home
        self.settings = settings
        self.worker = worker
        self.tls = _tls_context(home, settings)
        problem = media_address_problem(settings.ip)
        if problem is not None:
            raise StartupError(problem)
        self.http_app = create_http_app(home, settings, worker)
        self.settings = self.http_app[SETTINGS]  # with the plugins' properties
        self.ws_app = create_ws_app(self.http_app)
        # a backstop: sessions close within ws_send_timeout and plugins within their
        # timeouts; a handler still running after this is cancelled
        access: dict[str, Any] = {} if settings.access_log else {"access_log": None}
        self._http_runner = web.AppRunner(self.http_app, handle_signals=False,
                                          shutdown_timeout=SHUTDOWN_BACKSTOP, **access)
        self._ws_runner = web.AppRunner(self.ws_app, handle_signals=False,
                                        shutdown_timeout=SHUTDOWN_BACKSTOP, **access)
        self.http_port = 0
        self.ws_port = 0
        self.https_port = 0
        self.wss_port = 0
        self.internal_http_port = 0
        self.internal_ws_port = 0
        self._started = False
        self.info: ServerInfo | None = None

    @property
    def bus(self) -> HookBus:
        return self.http_app[BUS]

    async def start(self) -> None:
        """Listen on every port; raises StartupError (after cleaning up) if one is taken."""
        self._started = True
        await self._http_runner.setup()
        await self._ws_runner.setup()
        s = self.settings
        self.http_port = await self._listen(
            self._http_runner,
            Listener("HTTP", "http.port", "http", s.http_port, "REST API, /metrics"),
        )
        self.ws_port = await self._listen(
            self._ws_runner,
            Listener("WebSocket", "ws.port", "ws", s.ws_port, "signalling, any path"),
        )
        if self.tls is not None:
            self.https_port = await self._listen(
                self._http_runner,
                Listener("HTTPS", "https.port", "https", s.https_port, "the same over TLS"),
            )
            self.wss_port = await self._listen(
                self._ws_runner,
                Listener("WebSocket TLS", "wss.port", "wss", s.wss_port, "signalling over TLS"),
            )
        if self.worker is not None:
            await self._listen_internal()
        info = ServerInfo(
            version=__version__,
            home=self.home.root,
            settings=s,
            ws_port=self.ws_port,
            http_port=self.http_port,
            started_at=self.http_app[STARTED_AT],
            media=self.http_app[ENGINE].media,
            internal_ws_port=self.internal_ws_port,
            internal_http_port=self.internal_http_port,
            worker=self.worker,
        )
        self.info = info
        _warn_if_open(s)
        _say_media_addresses(s)
        engine = self.http_app[ENGINE]
        await self.bus.after_server_start(info)
        # recordings a crash cut short: made final and announced, in the background
        engine.spawn(engine.recordings.recover())

    async def _listen_internal(self) -> None:
        """A worker's own ports, on loopback: what other nodes call this process on."""
        detail = f"worker {self.worker}'s own, for the other nodes"
        self.internal_http_port = await self._listen(
            self._http_runner, Listener("internal HTTP", "http.port", "http", 0, detail),
            host=INTERNAL_HOST,
        )
        self.internal_ws_port = await self._listen(
            self._ws_runner, Listener("internal WebSocket", "ws.port", "ws", 0, detail),
            host=INTERNAL_HOST,
        )

    async def _listen(self, runner: web.AppRunner, listener: Listener,
                      host: str | None = None) -> int:
        """Listen on ``listener``'s port (a public one, shared with the other workers when
        this is one) or, given ``host``, on a port of this process alone."""
        shared = host is None and self.worker is not None
        host = host or self.settings.bind_address
        tls = self.tls if listener.scheme in ("https", "wss") else None
        site = web.TCPSite(runner, host, listener.port, ssl_context=tls, reuse_address=True,
                           reuse_port=shared or None)
        before = set(runner.addresses)
        try:
            await site.start()
        except OSError as error:
            reason = "address already in use" if error.errno == errno.EADDRINUSE else str(error)
            raise StartupError(
                f"cannot listen on {host}:{listener.port} ({listener.prop}): {reason}"
            ) from error
        port = next(int(address[1]) for address in runner.addresses if address not in before)
        log.info(
            "%s listening on %s://%s:%d (%s)", listener.label, listener.scheme, host, port,
            listener.detail,
        )
        return port

    async def stop(self) -> None:
        """Tell plugins, then close signalling, then HTTP and the shared resources."""
        if not self._started:
            return
        self._started = False
        if self.info is not None:
            await self.bus.before_server_stop(self.info)
        engine = self.http_app[ENGINE]
        # sinks, then sources (their clients are told), then sockets
        await engine.end_streams()
        await asyncio.gather(*(s.close("Server shutdown") for s in list(engine.sessions.values())))
        await self._ws_runner.cleanup()
        await engine.close()  # its last operations; every recording file final and announced
        if self.info is not None:
            await self.bus.after_server_stop(self.info)
        # the cleanup contexts, in reverse: the engine (closed already), plugin reloads, media/
        await self._http_runner.cleanup()
        log.info("stopped")


def _warn_if_open(settings: Settings) -> None:
    """Say who may use the REST API and the console (they can stop every stream)."""
    if settings.rest_api_token or settings.rest_api_user:
        return
    if open_to_loopback_only(settings):
        log.info("the REST API and the console have no authentication: they answer clients "
                 "on this machine only; set rest_api_token (or rest_api_user/"
                 "rest_api_password) or rest_api_allowed_networks to open them")
        return
    try:
        if ipaddress.ip_address(settings.bind_address).is_loopback:
            return
    except ValueError:
        pass
    log.warning(
        "the REST API on %s:%d has no authentication: anyone in rest_api_allowed_networks "
        "(%s) can stop every stream; set rest_api_token (or rest_api_user/rest_api_password)",
        settings.bind_address, settings.http_port, ",".join(settings.rest_api_allowed_networks),
    )


def _say_media_addresses(settings: Settings) -> None:
    """Which addresses WebRTC media will use; a warning when there is none, for then no
    publisher or player can ever connect."""
    addresses = compat.media_addresses()
    if addresses:
        log.info("media (ICE host candidates) on %s%s", ", ".join(addresses),
                 "" if settings.ip else " (every address of this machine but loopback; "
                 "set ip to choose one)")
        return
    log.warning(
        "no address for media: with ip empty, WebRTC uses every address of this machine "
        "except loopback, and it has none, so no stream can connect; set ip=127.0.0.1 to "
        "try hookcast on this machine alone (see README, \"Trying it on one machine\")")


def _tls_context(home: Home, settings: Settings) -> ssl.SSLContext | None:
    """The server TLS context when a certificate is configured, else None."""
    if not settings.tls_certificate:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(
            home.resolve(settings.tls_certificate), home.resolve(settings.tls_private_key)
        )
    except (OSError, ssl.SSLError) as error:
        raise StartupError(
            f"tls_certificate={settings.tls_certificate}, "
            f"tls_private_key={settings.tls_private_key}: cannot load them: {error}"
        ) from error
    return context


async def serve(
    home: Home,
    settings: Settings,
    shutdown_trigger: Callable[[], Awaitable[None]],
    worker: int | None = None,
) -> None:
    """Run until ``shutdown_trigger`` returns, then stop gracefully; ``worker``: which
    worker of ``hookcast serve --workers N`` this process is (see Server). The trigger
    is armed before anything listens (a signal handler it installs is in place), so a
    trigger fired during the start stops the server once it has started."""
    stopping = asyncio.ensure_future(shutdown_trigger())
    await asyncio.sleep(0)  # the trigger runs up to its first wait
    try:
        server = Server(home, settings, worker)
        try:
            await server.start()
            await stopping
        finally:
            await server.stop()
    finally:
        stopping.cancel()
