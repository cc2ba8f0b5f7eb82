"""Stream keep-alive: ``on_stream_keep_alive`` for every live stream, once per interval.

Enabled by ``keep_alive_streaming_sessions_enabled``. The calls for one interval are
spread evenly across it (5,000 streams every 10 s is one call every 2 ms, not a burst
of 5,000), each in its own task, so a slow backend delays nobody. A plugin answering
``Terminate`` stops that stream only. Overflow policy: at most ``max_in_flight``
keep-alives wait for their plugins at once; a stream whose turn comes while that many
are pending is skipped for this round and counted in ``skipped``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from hookcast.bus import HookBus
from hookcast.engine.streams import Status, Stream

log = logging.getLogger(__name__)

LIVE = (Status.PUBLISHING, Status.PLAYING)
TICK = 0.005  # seconds: calls due within one tick go out together


#: stops the given streams with a reason (the engine's ``terminate``)
Terminator = Callable[[list[Stream], str], Awaitable[None]]


class KeepAlive:
    """Calls ``on_stream_keep_alive`` for each of ``streams()`` once per ``interval``."""

    def __init__(
        self, streams: Callable[[], Iterable[Stream]], bus: HookBus, terminate: Terminator,
        interval: float, max_in_flight: int = 1000,
    ) -> None:
        self.streams = streams
        self.bus = bus
        self.terminate = terminate
        self.interval = interval
        self.max_in_flight = max_in_flight
        self.sent = 0
        self.skipped = 0
        self.terminated = 0
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="stream keep-alive")

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._in_flight) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            streams = [s for s in self.streams() if s.status in LIVE]
            gap = self.interval / max(len(streams), 1)
            for index, stream in enumerate(streams):
                due = started + index * gap
                if due - loop.time() > TICK:
                    await asyncio.sleep(due - loop.time())
                self._send(stream)
            await asyncio.sleep(max(0.0, started + self.interval - loop.time()))

    def _send(self, stream: Stream) -> None:
        if stream.status not in LIVE:
            return
        if len(self._in_flight) >= self.max_in_flight:
            self.skipped += 1
            return
        task = asyncio.create_task(self._one(stream))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _one(self, stream: Stream) -> None:
        self.sent += 1
        verdict = await self.bus.on_stream_keep_alive(stream.snapshot())
        if verdict is not None and stream.status in LIVE:
            self.terminated += 1
            log.info("keep-alive: %s %s terminated: %s", stream.name,
                     stream.media_session_id, verdict.reason)
            await self.terminate([stream], verdict.reason)
