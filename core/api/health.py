"""The core's own HTTP routes (the REST API grows here in later modules)."""

from __future__ import annotations

import time

from aiohttp import web

from hookcast.keys import BUS, STARTED_AT
from hookcast.version import __version__


async def health(request: web.Request) -> web.Response:
    """``GET /rest-api/health``: version, uptime and plugin count, for readiness checks."""
    app = request.app
    return web.json_response({
        "status": "ok",
        "version": __version__,
        "uptime": round(time.time() - app[STARTED_AT], 3),
        "plugins": len(app[BUS].plugins()),
    })


def core_routes() -> list[web.RouteDef]:
    return [web.get("/rest-api/health", health)]
