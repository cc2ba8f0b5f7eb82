"""Fixtures for the relay tests: loopback-only ICE and the process-wide aiortc patch."""

from __future__ import annotations

from collections.abc import Iterator

import aioice.ice
import pytest

from core.rtc import compat


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
