"""What tests of the forwarding path share: stand-ins for a player's socket (lossy, or
refusing with EAGAIN), and which path players' tracks took, read from /metrics as a
user would."""

from __future__ import annotations

import errno
import random
import re
from typing import Any

import aiohttp

from hookcast.server import Server


class Lossy:
    """A player's socket that drops a share of the datagrams it is asked to send
    (GSO sends are split and each segment is dropped or sent on its own)."""

    def __init__(self, sock: Any, rate: float) -> None:
        self.sock, self.rate = sock, rate
        self.random = random.Random(16)
        self.sent = self.dropped = 0

    def sendto(self, data: Any, address: Any) -> None:
        if self.random.random() < self.rate:
            self.dropped += 1
            return
        self.sent += 1
        self.sock.sendto(data, address)

    def sendmsg(self, buffers: list[Any], ancillary: list[Any], flags: int, address: Any) -> None:
        data = b"".join(bytes(b) for b in buffers)
        size = int.from_bytes(ancillary[0][2], "little")
        for start in range(0, len(data), size):
            self.sendto(data[start:start + size], address)


async def relay_paths(server: Server) -> dict[str, float]:
    """``hookcast_relay_players`` from /metrics: players' tracks by "kind/path"."""
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{server.http_port}/metrics") as response:
        text = await response.text()
    found = re.findall(r'^hookcast_relay_players\{kind="(\w+)",path="(\w+)"\} (\S+)$', text, re.M)
    return {f"{kind}/{path}": float(value) for kind, path, value in found}


class Refusing:
    """A player's socket that refuses every send with EAGAIN (full) while ``refusing``
    is set, and sends as the real one otherwise; ``refused`` counts refusals."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.refusing = False
        self.refused = 0

    def _refuse(self) -> None:
        if self.refusing:
            self.refused += 1
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    def sendto(self, data: Any, address: Any) -> None:
        self._refuse()
        self.sock.sendto(data, address)

    def sendmsg(self, buffers: list[Any], ancillary: list[Any], flags: int, address: Any) -> None:
        self._refuse()
        self.sock.sendmsg(buffers, ancillary, flags, address)
