"""The REST API on the HTTP port: ``/rest-api/<group>/<method>``, JSON in and out.

Every method accepts POST with a JSON body and GET without one (the WCS Web SDK's
REST helper sends GET when it has no body). Errors are JSON bodies naming the field
and what was expected; an unknown method is a 404 listing the known ones.
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hookcast.api.openapi import openapi_document
from hookcast.api.schema import METHODS, Method, RestError
from hookcast.config.settings import Settings
from hookcast.engine.streams import Info
from hookcast.keys import BUS, ENGINE, LOADER, SETTINGS

App = web.Application
Args = dict[str, Any]
Handler = Callable[[App, Method, Args], Awaitable[web.Response]]
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization",
}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _found(method: Method, items: list[Any]) -> web.Response:
    if not items:
        raise RestError(404, method.not_found or "Not found")
    return _json(items)


async def stream_find_all(app: App, method: Method, args: Args) -> web.Response:
    engine = app[ENGINE]
    if not len(engine.registry):
        raise RestError(404, method.not_found or "Not found")
    return web.Response(body=engine.registry.wcs_json(), content_type="application/json")


async def stream_find(app: App, method: Method, args: Args) -> web.Response:
    engine = app[ENGINE]
    display = args.pop("display", [])
    streams = engine.registry.find(**args)
    found = []
    for stream in streams:
        wcs = engine.refresh(stream).to_wcs()
        if "metrics" in display:
            wcs["metrics"] = engine.metrics(stream)
        found.append(wcs)
    return _found(method, found)


async def stream_terminate(app: App, method: Method, args: Args) -> web.Response:
    engine = app[ENGINE]
    streams = engine.registry.find(**args)
    if not streams:
        raise RestError(404, method.not_found or "Not found")
    await engine.terminate(streams, Info.REST_TERMINATE)
    return _json({"terminated": [s.media_session_id for s in streams]})


async def stream_metrics(app: App, method: Method, args: Args) -> web.Response:
    engine = app[ENGINE]
    stream = engine.registry.get(args["media_session_id"])
    if stream is None:
        raise RestError(404, method.not_found or "Not found")
    return _json(engine.metrics(stream))


async def connection_find_all(app: App, method: Method, args: Args) -> web.Response:
    engine = app[ENGINE]
    return _found(method, [session.to_wcs() for session in engine.sessions.values()])


async def connection_terminate(app: App, method: Method, args: Args) -> web.Response:
    engine = app[ENGINE]
    session = engine.sessions.get(args["session_id"])
    if session is None:
        raise RestError(404, method.not_found or "Not found")
    await session.terminate(Info.REST_TERMINATE)
    return _json({"terminated": [args["session_id"]]})


async def plugins_find_all(app: App, method: Method, args: Args) -> web.Response:
    loader = app[LOADER]
    return _json({
        "plugins": [{"name": r.name, "source": r.source, "hooks": list(r.hooks)}
                    for r in app[BUS].plugins()],
        "disabled": sorted(loader.disabled_found),
        "failures": [{"name": name, "problem": problem}
                     for name, problem in sorted(loader.failures.items())],
    })


HANDLERS: dict[str, Handler] = {
    "/rest-api/stream/find_all": stream_find_all,
    "/rest-api/stream/find": stream_find,
    "/rest-api/stream/terminate": stream_terminate,
    "/rest-api/stream/metrics": stream_metrics,
    "/rest-api/connection/find_all": connection_find_all,
    "/rest-api/connection/terminate": connection_terminate,
    "/rest-api/plugins/find_all": plugins_find_all,
}


async def _body(request: web.Request) -> Any:
    if request.method == "GET" or not request.can_read_body:
        return None
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        message = f"request body: invalid JSON ({error})"
        raise RestError(400, message, "body", "JSON object") from None


async def dispatch(request: web.Request) -> web.Response:
    method = METHODS[request.path]
    args = method.parse(await _body(request))
    return await HANDLERS[request.path](request.app, method, args)


async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_document())


def _authorized(settings: Settings, header: str) -> bool:
    """Bearer ``rest_api_token`` or Basic ``rest_api_user:rest_api_password``."""
    scheme, _, credentials = header.partition(" ")
    if settings.rest_api_token and scheme.lower() == "bearer":
        return hmac.compare_digest(_wire(credentials.strip()), settings.rest_api_token.encode())
    if settings.rest_api_user and scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(credentials).decode().partition(":")
        except ValueError:  # not base64 (binascii.Error), not UTF-8, not ASCII input
            return False
        user_ok = _same(user, settings.rest_api_user)
        return _same(password, settings.rest_api_password) and user_ok
    return False


def _wire(header_text: str) -> bytes:
    """The bytes a header value had on the wire (HTTP header text is read as latin-1),
    so a UTF-8 token compares as the UTF-8 bytes it was sent as."""
    try:
        return header_text.encode("latin-1")
    except UnicodeEncodeError:
        return header_text.encode("utf-8", "surrogateescape")


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of two texts, whatever characters they hold."""
    return hmac.compare_digest(given.encode(), expected.encode())


OPEN_PATHS = frozenset({"/rest-api/health", "/rest-api/openapi.json"})


@web.middleware
async def rest_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """CORS as WCS sends it, optional auth, and JSON errors for everything under /rest-api."""
    if not request.path.startswith(("/rest-api", "/metrics")):
        return await handler(request)
    if request.method == "OPTIONS":
        return web.Response(status=204, headers=CORS)
    settings = request.app[SETTINGS]
    try:
        needs_auth = bool(settings.rest_api_token or settings.rest_api_user)
        if needs_auth and request.path not in OPEN_PATHS:
            if not _authorized(settings, request.headers.get("Authorization", "")):
                raise RestError(401, "authorization required: Bearer token or Basic credentials")
        response = await handler(request)
    except RestError as error:
        response = _json(error.body(), status=error.status)
        if error.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer, Basic realm="hookcast"'
    except web.HTTPNotFound:
        known = ", ".join(sorted(METHODS))
        message = f"unknown method {request.path}; known: {known}"
        response = _json({"status": 404, "message": message}, status=404)
    except web.HTTPException as error:
        response = _json({"status": error.status, "message": error.reason}, status=error.status)
    response.headers.update(CORS)
    return response


def rest_routes() -> list[web.RouteDef]:
    routes = [web.get("/rest-api/openapi.json", openapi)]
    for path, method in METHODS.items():
        routes.append(web.post(path, dispatch))
        if method.get:
            routes.append(web.get(path, dispatch, allow_head=False))
    return routes
