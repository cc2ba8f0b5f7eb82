"""Which hooks the core itself called during this test run.

Every ``HookBus`` method named after a hook is wrapped for the session; a call counts
when the calling module is hookcast's own (the engine, signalling, the server, the
API), not a test calling the bus directly. tests/core/test_hookspecs.py then requires
every hook to have been called by the core in some real-server test.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any

from hookcast import hookspecs
from hookcast.bus import HookBus

CALLED_BY_CORE: set[str] = set()


def _observed(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith("hookcast.") and not caller.startswith("hookcast.bus"):
            CALLED_BY_CORE.add(name)
        return method(*args, **kwargs)
    return call


def observe() -> Iterator[None]:
    originals = {name: getattr(HookBus, name) for name in hookspecs.KINDS}
    for name, method in originals.items():
        setattr(HookBus, name, _observed(name, method))
    try:
        yield
    finally:
        for name, method in originals.items():
            setattr(HookBus, name, method)
