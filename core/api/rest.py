"""The REST API on the HTTP port: ``/rest-api/<group>/<method>``, JSON in and out.

Every method accepts POST with a JSON body and GET without one (the WCS Web SDK's
REST helper sends GET when it has no body). Errors are JSON bodies naming the field
and what was expected; an unknown method is a 404 listing the known ones.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from hookcast.api import guard, media, records
from hookcast.api.openapi import openapi_document
from hookcast.api.schema import METHODS, Method, RestError
from hookcast.engine.streams import Info
from hookcast.keys import BUS, ENGINE, LOADER, PLUGIN_HANDLERS, PLUGIN_METHODS, SETTINGS
from hookcast.nodes import Cluster, ClusterDown
from hookcast.untrusted import MAX_DEPTH, json_depth, printable

App = web.Application
Args = dict[str, Any]
Handler = Callable[[App, Method, Args], Awaitable[web.Response]]


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
    **records.HANDLERS,
    **media.HANDLERS,
}


async def _body(request: web.Request, method: Method) -> Any:
    """The decoded JSON body: None for GET; required (``{}`` at least) by methods that
    change state; declared ``application/json`` whenever there is one."""
    raw = b"" if request.method == "GET" else await request.read()
    if not raw.strip():
        if method.changes_state:
            raise RestError(400, f"request body: required ({method.path} takes a JSON object; "
                                 "{} means no filter)", "body", "JSON object")
        return None
    guard.require_json(request)
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        message = f"request body: invalid JSON ({error})"
        raise RestError(400, message, "body", "JSON object") from None
    except RecursionError:
        body = None
        depth = MAX_DEPTH + 1
    else:
        depth = json_depth(body)
    if depth > MAX_DEPTH:
        raise RestError(400, f"request body: nested deeper than {MAX_DEPTH} levels",
                        "body", "JSON object")
    return body


#: the methods a clustered server answers for the whole cluster: "merge" gathers every
#: node's entries (each names its node), "first" is answered by the node that has the
#: stream (asked in turn when this one has not)
CLUSTER_WIDE = {
    "/rest-api/stream/find_all": "merge",
    "/rest-api/stream/find": "merge",
    "/rest-api/stream/terminate": "merge",
    "/rest-api/stream/metrics": "first",
    "/rest-api/stream/startRecording": "first",
    "/rest-api/stream/stopRecording": "first",
    "/rest-api/recorder/startup": "first",
    "/rest-api/recorder/terminate": "first",
}
#: the header of a cluster-wide answer naming the nodes that did not answer in time
UNREACHABLE = "X-Hookcast-Unreachable-Nodes"


async def dispatch(request: web.Request) -> web.Response:
    method = METHODS[request.path]
    body = await _body(request, method)
    cluster = request.app[ENGINE].media.cluster
    if cluster is None or request.path not in CLUSTER_WIDE or guard.node_of_request(request):
        return await HANDLERS[request.path](request.app, method, method.parse(body))
    return await _cluster_wide(request.app, cluster, method, body)


async def _answer(app: App, method: Method, body: Any) -> tuple[int, Any]:
    """This node's answer to ``method``: (status, decoded JSON)."""
    try:
        response = await HANDLERS[method.path](app, method, method.parse(body))
    except RestError as error:
        if error.status != 404:
            raise
        return 404, error.body()
    raw = response.body
    return response.status, json.loads(raw) if isinstance(raw, bytes | str) and raw else None


async def _cluster_wide(app: App, cluster: Cluster, method: Method, body: Any) -> web.Response:
    """Answer for every node: this one's answer, then the others' (asked in parallel;
    with "first", only when this node has no such stream)."""
    here = await _answer(app, method, body)
    kind = CLUSTER_WIDE[method.path]
    if kind == "first" and here[0] != 404:
        return _json(here[1], here[0])
    try:
        others, unreachable = await cluster.across(method.path, body)
    except ClusterDown:  # logged once by the cluster; the header says it
        others, unreachable = [], ["(the cluster's directory)"]
    headers = {UNREACHABLE: ", ".join(printable(n) for n in unreachable)} if unreachable else {}
    if kind == "first":
        answered = next(((s, a) for _, s, a in others if s != 404), here)
        return web.json_response(answered[1], status=answered[0], headers=headers)
    merged: list[Any] = []
    for node, status, answer in [(cluster.node_id, *here), *others]:
        if status != 200:
            continue
        if method.path.endswith("/terminate") and isinstance(answer, dict):
            merged.extend(answer.get("terminated") or ())
        elif isinstance(answer, list):
            merged.extend({**entry, "node": node} for entry in answer if isinstance(entry, dict))
    if not merged:
        not_found = RestError(404, method.not_found or "Not found").body()
        return web.json_response(not_found, status=404, headers=headers)
    answer = {"terminated": merged} if method.path.endswith("/terminate") else merged
    return web.json_response(answer, headers=headers)


async def openapi(request: web.Request) -> web.Response:
    methods = request.app[PLUGIN_METHODS]
    return _json(openapi_document(methods))


PluginHandler = Callable[[Args], Awaitable[Any]]


class RestHandler:
    """A plugin's REST method served like the core's: the guard, JSON body rules and
    ``method.parse`` validation before ``handler(args)``; its answer (JSON-able, or a
    response) is sent as JSON; a RestError becomes a JSON error naming the field."""

    def __init__(self, method: Method, handler: PluginHandler) -> None:
        self.method = method
        self.handler = handler

    async def handle(self, request: web.Request) -> web.StreamResponse:
        args = self.method.parse(await _body(request, self.method))
        answer = await self.handler(args)
        return answer if isinstance(answer, web.StreamResponse) else _json(answer)


async def call(app: App, path: str, body: Any = None) -> tuple[int, Any]:
    """Run a REST method (the core's or a plugin's) in-process, as POST ``body`` would
    (for the whole cluster, on a cluster node): its answer's HTTP status and decoded
    JSON. For plugins that show what the REST API says (the console) without an HTTP
    round trip; the caller checks access."""
    try:
        try:
            deep = json_depth(body) > MAX_DEPTH
        except RecursionError:
            deep = True
        if deep:
            raise RestError(400, f"request body: nested deeper than {MAX_DEPTH} levels",
                            "body", "JSON object")
        cluster = app[ENGINE].media.cluster
        if path in METHODS and cluster is not None and path in CLUSTER_WIDE:
            response = await _cluster_wide(app, cluster, METHODS[path], body)
        elif path in METHODS:
            method = METHODS[path]
            response = await HANDLERS[path](app, method, method.parse(body))
        elif path in app[PLUGIN_HANDLERS]:
            served = app[PLUGIN_HANDLERS][path]
            answer = await served.handler(served.method.parse(body))
            if not isinstance(answer, web.Response):
                return 200, answer
            response = answer
        else:
            return 404, {"status": 404, "message": f"unknown method {path}"}
    except RestError as error:
        return error.status, error.body()
    raw = response.body
    return response.status, json.loads(raw) if isinstance(raw, bytes | str) and raw else None


def plugin_rest_routes(methods: Iterable[tuple[Method, PluginHandler]]) -> list[web.RouteDef]:
    """Routes for ``register_rest_routes``: POST (and GET when ``method.get``) of each
    method under /rest-api, validated by its table and listed in /rest-api/openapi.json."""
    routes = []
    for method, handler in methods:
        if not method.path.startswith("/rest-api/"):
            raise ValueError(f"{method.path}: plugin REST methods live under /rest-api/")
        serve = RestHandler(method, handler).handle
        routes.append(web.post(method.path, serve))
        if method.get:
            routes.append(web.get(method.path, serve, allow_head=False))
    return routes


@web.middleware
async def rest_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The guard (networks, origins, auth: hookcast.api.guard) and JSON errors for
    everything under /rest-api and /metrics."""
    if not guard.privileged(request.path):
        return await handler(request)
    origin = None
    try:
        origin = guard.check(request, request.app[SETTINGS])
        if request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204,
                                                        headers={"Allow": guard.ALLOW_METHODS})
        else:
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
    if origin is not None:
        response.headers.update(guard.cors_headers(origin))
    return response


def rest_routes() -> list[web.RouteDef]:
    routes = [web.get("/rest-api/openapi.json", openapi)]
    for path, method in METHODS.items():
        routes.append(web.post(path, dispatch))
        if method.get:
            routes.append(web.get(path, dispatch, allow_head=False))
    return routes
