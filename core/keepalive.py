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
from typing import TYPE_CHECKING, Any

from core.streams import Status, Stream

if TYPE_CHECKING:
    from core.engine import Engine

log = logging.getLogger(__name__)

LIVE = (Status.PUBLISHING, Status.PLAYING)
TICK = 0.005  # seconds: calls due within one tick go out together


class KeepAlive:
    def __init__(self, engine: Engine, interval: float, max_in_flight: int = 1000) -> None:
        self.engine = engine
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
            streams = [s for s in self.engine.registry if s.status in LIVE]
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
        verdict = await self.engine.bus.on_stream_keep_alive(stream.snapshot())
        if verdict is not None and stream.status in LIVE:
            self.terminated += 1
            log.info("keep-alive: %s %s terminated: %s", stream.name,
                     stream.media_session_id, verdict.reason)
            await self.engine.terminate([stream], verdict.reason)
