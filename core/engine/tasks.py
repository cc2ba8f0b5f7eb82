"""Background operations an owner starts, logs and waits for at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

log = logging.getLogger(__name__)


class Tasks:
    """A set of owned tasks: each one's exception is logged, never lost."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._tasks: set[asyncio.Future[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coroutine: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", self.what, exc_info=task.exception())

    async def wait(self) -> None:
        """Return once every task, including those started meanwhile, has finished.

        Only unfinished tasks are waited for: a task that has just finished stays in
        the set until its done callback runs on the loop, and gathering it alone would
        complete at once (eagerly, since Python 3.12) without ever yielding to the loop:
        a busy loop that blocks it for good."""
        while pending := [task for task in self._tasks if not task.done()]:
            await asyncio.wait(pending)
        await asyncio.sleep(0)  # the done callbacks (which log failures) run
