"""Fixtures for running ``hookcast`` as a user does: real subprocesses, real ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from hookcast.config.home import Home
from tests.served import Served, configure


@pytest.fixture
def serving(home: Home) -> Iterator[Callable[..., Served]]:
    """Start ``hookcast serve`` on free ports (extra properties allowed); killed at the end."""
    started: list[Served] = []

    def start(**properties: str) -> Served:
        configure(home, **properties)
        served = Served.start(home)
        started.append(served)
        return served

    yield start
    for served in started:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait()
