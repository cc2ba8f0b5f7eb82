"""The console's sign-in back-off: wrong tokens cost time to the address that sends them,
never to anyone else.

Each client address has its own queue: its attempts are taken one at a time, and a wrong
one holds the queue for ``penalty`` seconds (0.5) before it is answered, so one address
gets at most two guesses a second however many it sends at once. The operator signing in
from another address meanwhile is answered at once.

Bounded: at most ``max_waiting`` attempts of one address wait (more are refused with
429 at once), and an address is remembered only while it has attempts waiting (its
queue is all there is), at most ``max_addresses`` of them (more get 503). An IPv6
client counts by its /64, the share one host usually gets. The address is the
connection's peer: never a header such as ``X-Forwarded-For``, which any client writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

#: seconds a wrong token holds its address's queue
PENALTY = 0.5
#: attempts of one address that may wait at once
MAX_WAITING = 8
#: addresses with attempts waiting at once
MAX_ADDRESSES = 4096


class TooMany(Exception):
    """An attempt refused without being checked: ``status`` (429 or 503) and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Queue:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0


def client_key(remote: str | None) -> str:
    """Whose attempts queue together: the IPv4 address, the IPv6 /64, or the text."""
    text = (remote or "").split("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


class SignInThrottle:
    """One queue per client address (see the module)."""

    def __init__(self, penalty: float = PENALTY, max_waiting: int = MAX_WAITING,
                 max_addresses: int = MAX_ADDRESSES) -> None:
        self.penalty = penalty
        self.max_waiting = max_waiting
        self.max_addresses = max_addresses
        self._queues: dict[str, _Queue] = {}

    @property
    def addresses(self) -> int:
        """Addresses remembered now: those with attempts waiting."""
        return len(self._queues)

    @contextlib.asynccontextmanager
    async def turn(self, remote: str | None) -> AsyncIterator[None]:
        """Wait for this address's turn; the body checks one attempt (and calls
        ``wrong()`` for a wrong one). Raises TooMany instead of waiting past the bounds."""
        key = client_key(remote)
        queue = self._queues.get(key)
        if queue is None:
            if len(self._queues) >= self.max_addresses:
                raise TooMany(503, "too many sign-ins at once; try again in a few seconds")
            queue = self._queues[key] = _Queue()
        if queue.waiting >= self.max_waiting:
            raise TooMany(429, "too many sign-in attempts from your address at once; "
                               "try again in a few seconds")
        queue.waiting += 1
        try:
            async with queue.lock:
                yield
        finally:
            queue.waiting -= 1
            if queue.waiting == 0:
                del self._queues[key]

    async def wrong(self) -> None:
        """A wrong attempt: hold the address's queue for ``penalty`` seconds."""
        await asyncio.sleep(self.penalty)
