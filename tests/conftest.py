"""Shared fixtures: a server home in a temporary folder and a real running server."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from core.home import Home
from core.server import Server
from core.settings import Settings, parse_properties
from tests.backend import backend  # noqa: F401  (the fixture, for every test)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    """An empty server home with conf/ and plugins/ folders."""
    for folder in ("conf", "plugins", "media", "records", "hooks"):
        (tmp_path / folder).mkdir()
    return Home(tmp_path)


def write_plugin(home: Home, name: str, source: str) -> Path:
    """Drop a plugin file into the home's plugins/ folder."""
    path = home.plugins / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def make_settings(**properties: str) -> Settings:
    """Settings for an in-process server: loopback, free ports, fast hook timeout."""
    raw = {"bind_address": "127.0.0.1", "ip": "127.0.0.1", "ws.port": "0", "http.port": "0"}
    raw.update(properties)
    settings, _ = parse_properties(raw, "test")
    return settings


@pytest.fixture
async def start_server() -> AsyncIterator[Callable[..., object]]:
    """Start real servers (ephemeral ports on 127.0.0.1); all are stopped at the end."""
    servers: list[Server] = []

    async def start(home: Home, **properties: str) -> Server:
        server = Server(home, make_settings(**properties))
        servers.append(server)
        await server.start()
        return server

    yield start
    for server in reversed(servers):
        await server.stop()


@pytest.fixture
async def connect_client() -> AsyncIterator[Callable[..., Any]]:
    """``await connect_client(server, **fields)``: a connected WcsClient, closed at the end."""
    from core.client import WcsClient

    opened: list[WcsClient] = []

    async def connect(server: Server, **fields: Any) -> WcsClient:
        client = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
        opened.append(client)
        await client.connect(**fields)
        return client

    yield connect
    for client in opened:
        await client.close()
