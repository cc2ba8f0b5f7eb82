"""Shared fixtures: a server home in a temporary folder and a real running server."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aioice.ice
import pytest

from hookcast.bus import HookBus
from hookcast.config.home import Home
from hookcast.config.properties import Property
from hookcast.config.settings import Settings, parse_properties
from hookcast.loader import PluginLoader
from hookcast.rtc import aiortc as compat
from hookcast.server import Server
from tests import hook_coverage
from tests.backend import backend  # noqa: F401  (the fixture, for every test)


@pytest.fixture(scope="session", autouse=True)
def hooks_called_by_core() -> Iterator[None]:
    """Record which hooks the core calls in this run (tests/hook_coverage.py)."""
    yield from hook_coverage.observe()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``after_all`` run last (they read what the whole run observed)."""
    items.sort(key=lambda item: item.get_closest_marker("after_all") is not None)


def make_home(root: Path) -> Home:
    """An empty server home at ``root``: conf/, plugins/, media/, records/, hooks/."""
    for folder in ("conf", "plugins", "media", "records", "hooks"):
        (root / folder).mkdir(parents=True)
    return Home(root)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    """An empty server home with conf/ and plugins/ folders."""
    return make_home(tmp_path)


def write_plugin(home: Home, name: str, source: str) -> Path:
    """Drop a plugin file into the home's plugins/ folder."""
    path = home.plugins / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def builtin_properties() -> list[tuple[str, Property]]:
    """What the built-in plugins declare (plugin_properties), as a server resolves them."""
    bus = HookBus()
    PluginLoader(bus, Path("/nonexistent-plugins-folder")).load_all()
    return bus.plugin_properties()


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
    from hookcast.signalling.client import WcsClient

    opened: list[WcsClient] = []

    async def connect(server: Server, **fields: Any) -> WcsClient:
        client = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
        opened.append(client)
        await client.connect(**fields)
        return client

    yield connect
    for client in opened:
        await client.close()


@pytest.fixture
def loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """ICE gathers only 127.0.0.1 (aioice skips it otherwise): no traffic leaves the host."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
def relay_installed() -> Iterator[None]:
    """compat.install() for one test; aiortc's stock behaviour is restored after it."""
    compat.install()
    try:
        yield
    finally:
        compat.uninstall()
