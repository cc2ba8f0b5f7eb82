"""The built-in echo application: ``POST /apps/EchoApp/<method>`` answers with its body.

``defaultApp`` in conf/apps.json points here, so REST hooks work out of the box:
every hook is accepted unchanged, as WCS's own EchoApp does.
"""

from __future__ import annotations

import json

from aiohttp import web

from hookcast import hookimpl


async def echo(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return web.json_response(
            {"error": "the request body must be a JSON object"}, status=400
        )
    return web.json_response(body)


@hookimpl
def register_rest_routes() -> list[web.RouteDef]:
    return [web.post("/apps/EchoApp/{method}", echo)]
