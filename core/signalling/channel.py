"""A client's WebSocket with every write and close bounded in time.

A client that stops reading fills its TCP window, then the server's socket buffer,
then aiohttp's: from there every write waits for a drain that never comes. Each send
and each close here waits at most ``timeout`` seconds (``ws_send_timeout``); past it the
connection is aborted, which ends the session's read loop as a disconnect, and every
later send fails at once. Nothing the client does can hold a REST call, a shutdown or
another client.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

log = logging.getLogger(__name__)


class Channel:
    """Bounded sends and close on one WebSocket; ``drop()`` aborts the connection."""

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None,
                 timeout: float, name: str) -> None:
        self.ws = ws
        self.timeout = timeout
        self.name = name
        self._transport = transport
        self._lock = asyncio.Lock()
        self.dropped = False

    @property
    def closed(self) -> bool:
        return self.dropped or self.ws.closed

    async def send(self, text: str) -> None:
        """Write one text frame; ConnectionError once the socket is closed or dropped."""
        if self.closed:
            raise ConnectionError("the WebSocket is closed")
        try:
            async with asyncio.timeout(self.timeout):
                async with self._lock:
                    await self.ws.send_str(text)
        except TimeoutError:
            self.drop(f"a message waited {self.timeout:g} s (ws_send_timeout) to be written")
            raise ConnectionError("the client stopped reading its WebSocket") from None
        except asyncio.CancelledError:
            if _cancelling():
                raise
            raise ConnectionError("the client stopped reading its WebSocket") from None

    async def close(self, code: int, reason: str) -> None:
        """Close the WebSocket (close handshake), aborting it when that takes too long."""
        if self.dropped:
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self.ws.close(code=code, message=reason.encode()[:120])
        except TimeoutError:
            self.drop(f"closing took more than {self.timeout:g} s (ws_send_timeout)")
        except asyncio.CancelledError:
            if _cancelling():
                raise

    def drop(self, why: str, quiet: bool = False) -> None:
        """Abort the connection at once (no close handshake): the client is gone. Logged
        as a warning unless ``quiet`` (the caller says it in its own words)."""
        if self.dropped:
            return
        self.dropped = True
        if not quiet:
            log.warning("session %s: dropped: %s", self.name, why)
        if self._transport is not None:
            self._transport.abort()


def _cancelling() -> bool:
    """True if this task is being cancelled. A CancelledError while it is not came from
    aiohttp, whose writers share one drain future: a writer whose timeout expired
    cancelled that future under the others. The connection is being dropped then, and
    the caller carries on as after a drop."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
