from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from hookcast.config.home import Home


async def test_echo_app_answers_with_the_request_body(home: Home, start_server: Callable[..., Any]) -> None:
    server = await start_server(home)
    url = f"http://127.0.0.1:{server.http_port}/apps/EchoApp/publishStream"
    body = {"name": "cam", "published": True, "custom": {"k": [1, 2]}}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body) as response:
            assert response.status == 200
            assert await response.json() == body
        async with http.post(url, data=b"not json") as response:
            assert response.status == 400
            assert "must be a JSON object" in (await response.json())["error"]


async def test_echo_app_can_be_disabled(home: Home, start_server: Callable[..., Any]) -> None:
    server = await start_server(home, disabled_plugins="echo_app")
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{server.http_port}/apps/EchoApp/connect", json={}) as response:
            assert response.status == 404
