"""Every client session of the server, and the door they come in by.

A session counts from the moment its socket opens, against three bounds:

- ``max_sessions``: sessions in all;
- ``max_sessions_per_address``: sessions from one client address (an IPv6 client is
  counted by its /64, which one host commonly holds whole);
- ``max_unidentified_sessions``: sockets that have not sent ``connection`` yet.

A socket that has not said who it is yet is the cheapest thing to let go, and a real
client says it within milliseconds of opening: when a bound is reached, the oldest
unidentified session (of that address, for the per-address bound) is dropped to make
room, and only when there is none the newcomer is refused. So sockets that never
identify themselves cannot lock anyone out, whatever their number, and sessions that
did identify are never dropped for a newcomer. A socket must identify itself within
``connection_timeout`` (SignallingSession closes it otherwise).
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter, OrderedDict
from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

from hookcast.config.settings import Settings
from hookcast.untrusted import LogBudget

log = logging.getLogger(__name__)


class Member(Protocol):
    """What the registry needs of a session."""

    @property
    def session_id(self) -> str: ...

    @property
    def remote(self) -> str: ...

    def evict(self, reason: str) -> None:
        """Let the session go at once (its socket is aborted); it then leaves itself."""


def address_key(remote: str) -> str:
    """The key a client address is counted under: the address, an IPv6 one by its /64."""
    try:
        address = ipaddress.ip_address(remote.split("%")[0])
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


M = TypeVar("M", bound=Member)


class Sessions(Generic[M]):
    """The sessions by id, counted per address, the unidentified ones oldest first."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._by_id: dict[str, M] = {}
        self._per_address: Counter[str] = Counter()
        self._unidentified: OrderedDict[str, M] = OrderedDict()
        #: sessions refused, by reason: max_sessions, max_sessions_per_address, invalid
        #: (a bad connection message), plugin
        self.refused: Counter[str] = Counter()
        #: unidentified sessions dropped, by reason: connection_timeout, room (for a newcomer)
        self.dropped: Counter[str] = Counter()
        self._door = LogBudget(log, "sessions")

    # --- the door -------------------------------------------------------------------

    def admit(self, session: M) -> str | None:
        """Register a new socket's session, dropping an unidentified one if that makes
        room; the reason it is refused (naming the property) otherwise."""
        key = address_key(session.remote)
        s = self.settings
        if self._per_address[key] >= s.max_sessions_per_address \
                and not self._make_room(key):
            return self._refuse(
                "max_sessions_per_address", session,
                f"too many sessions from {key}: it has {s.max_sessions_per_address} "
                "(max_sessions_per_address)")
        if len(self._by_id) >= s.max_sessions and not self._make_room(None):
            return self._refuse("max_sessions", session,
                                f"too many sessions: the server has {s.max_sessions} "
                                "(max_sessions)")
        if len(self._unidentified) >= s.max_unidentified_sessions:
            self._make_room(None)
        self._by_id[session.session_id] = session
        self._per_address[key] += 1
        self._unidentified[session.session_id] = session
        return None

    def identified(self, session: Member) -> None:
        """The session sent ``connection``: it is never dropped for a newcomer again."""
        self._unidentified.pop(session.session_id, None)

    def is_identified(self, session: Member) -> bool:
        return session.session_id not in self._unidentified

    def timed_out(self, session: Member) -> None:
        """An unidentified session is being closed for ``connection_timeout``."""
        self.dropped["connection_timeout"] += 1
        self._door.info("session %s from %s sent no connection within %g s "
                        "(connection_timeout); closing it", session.session_id,
                        session.remote, self.settings.connection_timeout)

    def remove(self, session: Member) -> None:
        """The session's socket closed."""
        if self._by_id.pop(session.session_id, None) is None:
            return
        self._unidentified.pop(session.session_id, None)
        key = address_key(session.remote)
        self._per_address[key] -= 1
        if self._per_address[key] <= 0:
            del self._per_address[key]

    def _make_room(self, key: str | None) -> bool:
        """Drop the oldest unidentified session (of address ``key``, or of anyone)."""
        victim = next((m for m in self._unidentified.values()
                       if key is None or address_key(m.remote) == key), None)
        if victim is None:
            return False
        self.dropped["room"] += 1
        self._door.info("session %s from %s dropped before it identified itself, to make "
                        "room for a new one", victim.session_id, victim.remote)
        self.remove(victim)
        victim.evict("dropped to make room: the session sent no connection message")
        return True

    def _refuse(self, reason: str, session: Member, sentence: str) -> str:
        self.refused[reason] += 1
        self._door.info("session from %s refused: %s", session.remote, sentence)
        return sentence

    # --- a read-only mapping of sessionId -> session --------------------------------

    def get(self, session_id: str) -> M | None:
        return self._by_id.get(session_id)

    def values(self) -> list[M]:
        return list(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._by_id

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def per_address(self, remote: str) -> int:
        return self._per_address[address_key(remote)]
