"""The core's own HTTP routes (the REST API grows here in later modules)."""

from __future__ import annotations

import time

from aiohttp import web

from hookcast.keys import BUS, STARTED_AT, WORKER
from hookcast.version import __version__


async def health(request: web.Request) -> web.Response:
    """``GET /rest-api/health``: version, uptime and plugin count, for readiness checks;
    a worker of ``hookcast serve --workers N`` adds its index (``worker``)."""
    app = request.app
    answer: dict[str, object] = {
        "status": "ok",
        "version": __version__,
        "uptime": round(time.time() - app[STARTED_AT], 3),
        "plugins": len(app[BUS].plugins()),
    }
    worker = app.get(WORKER)
    if worker is not None:
        answer["worker"] = worker
    return web.json_response(answer)


def core_routes() -> list[web.RouteDef]:
    return [web.get("/rest-api/health", health)]
