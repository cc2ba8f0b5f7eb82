"""Giving the memory a burst of ended streams and sessions held back to the system.

A peer connection is a web of reference cycles (aiortc's transports, transceivers and
their callbacks): when its stream ends, its memory waits for Python's cyclic garbage
collector, whose full collections come rarely once a server's heap is large, and then
glibc keeps the freed pages as its high-water mark. After a flood (measured: 300 sockets
asking for 9,600 streams that never connect) a server stayed 20-30 % larger than before
it, for good; a full collection followed by ``malloc_trim(0)`` brings it back to within
a few percent.

So after streams or sessions ended, ``HeapTrim`` collects and trims: at the next tick
(every ``interval`` s) after a burst of at least ``burst`` ends, otherwise at most once
every ``quiet`` s. A full collection holds the event loop (25-50 ms with 10,000 streams'
worth of objects), as Python's own full collections do: often enough to return a burst
at once, rarely enough that a steady trickle of ends costs one pause a minute. The trim
runs in a worker thread (it walks the C heap; it takes the allocator's lock, not the GIL).
Where the C library has no ``malloc_trim`` (musl, macOS) only the collection is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


class HeapTrim:
    """Collects cyclic garbage and trims the C heap in the background, after ends."""

    def __init__(self, interval: float = 5.0, burst: int = 50, quiet: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.burst = burst
        self.quiet = quiet
        self._clock = clock
        self._trim = _malloc_trim()
        self._ended = 0
        self._last = clock()
        self._task: asyncio.Task[None] | None = None
        #: collections done (hookcast_heap_trims_total)
        self.trims = 0

    def freed(self) -> None:
        """A stream or session ended: its memory is worth returning."""
        self._ended += 1

    @property
    def due(self) -> bool:
        return self._ended >= self.burst or (
            self._ended > 0 and self._clock() - self._last >= self.quiet)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="heap trim")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self.due:
                await self.collect()

    async def collect(self) -> None:
        """Collect cyclic garbage now, then give the free pages back."""
        self._ended, self._last = 0, self._clock()
        started = time.perf_counter()
        found = gc.collect()
        log.debug("heap: %d objects collected in %.1f ms", found,
                  (time.perf_counter() - started) * 1000)
        if self._trim is not None:
            await asyncio.to_thread(self._trim)
        self.trims += 1
