"""Keyframe requests toward one publisher, and the task-cancellation helper."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)

PLI_INTERVAL = 0.5  # seconds between two keyframe requests to one publisher, at least

SendPli = Callable[[], Awaitable[Any] | None]


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait for it to finish; re-raise if *we* are being cancelled."""
    if task is None or task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


class KeyframeController:
    """Asks one publisher for keyframes: coalesced, rate-limited, repeated until seen.

    request() may be called any number of times from anywhere on the loop; the
    controller sends at most one PLI per `interval` seconds, and keeps sending one every
    `interval` until keyframe_seen() is called. `send_pli` failures are logged.
    """

    def __init__(
        self, send_pli: SendPli, *, interval: float = PLI_INTERVAL, name: str = ""
    ) -> None:
        self._send_pli = send_pli
        self._interval = interval
        self._name = name
        self._wanted = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.requests = 0
        self.plis_sent = 0

    @property
    def waiting(self) -> bool:
        """True from a request() until the next keyframe_seen()."""
        return self._wanted

    def start(self) -> None:
        """Start the sending task (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"keyframes {self._name}")

    def request(self) -> None:
        """Ask for a keyframe; coalesced with every other pending request."""
        self.requests += 1
        self._wanted = True
        self._wake.set()

    def keyframe_seen(self) -> None:
        """A keyframe went out: stop repeating PLIs."""
        self._wanted = False

    async def close(self) -> None:
        """Stop the sending task and wait for it."""
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._wanted:
                await self._send()
                await asyncio.sleep(self._interval)

    async def _send(self) -> None:
        try:
            sent = self._send_pli()
            if inspect.isawaitable(sent):  # a coroutine function, or a plain one
                await sent
            self.plis_sent += 1
        except Exception:
            logger.exception("keyframe request to %s failed", self._name)
