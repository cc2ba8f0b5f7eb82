"""Streams that are not connected yet, bounded.

A stream costs the server its work (admission hooks, a peer connection, ICE sockets,
about half a megabyte) from its request until its ICE and DTLS are up, and a client that
never completes ICE keeps it that long (``ice_connect_timeout``). So the streams between
request and connection are counted, and bounded:

- per session (``max_pending_streams_per_session``) and per client address
  (``max_pending_streams_per_address``, an IPv6 client by its /64): a request beyond
  the bound is refused at once, before any work is done for it;
- in all (``max_pending_streams``): the oldest pending stream is failed to make room, so
  many addresses together cannot lock new clients out either (a real client connects
  within a second or two; only streams that never connect grow old).

A stream leaves the count when it connects, fails or ends (``release``, idempotent).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass

from hookcast.config.settings import Settings
from hookcast.engine.sessions import address_key


@dataclass(frozen=True)
class _Entry:
    session: str
    address: str


class PendingStreams:
    """mediaSessionId -> who asked for it, oldest first, counted per session and address."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._per_session: Counter[str] = Counter()
        self._per_address: Counter[str] = Counter()
        #: requests refused or streams failed, by property
        self.refused: Counter[str] = Counter()

    def reserve(self, media_session_id: str, session_id: str,
                remote: str) -> tuple[str | None, str | None]:
        """Count a new request: (why it is refused, naming the property, or None;
        the mediaSessionId of the oldest pending stream to fail to make room, or None)."""
        s = self.settings
        key = address_key(remote)
        if self._per_session[session_id] >= s.max_pending_streams_per_session:
            return self._refuse("max_pending_streams_per_session",
                                f"this session has {s.max_pending_streams_per_session}"), None
        if self._per_address[key] >= s.max_pending_streams_per_address:
            return self._refuse("max_pending_streams_per_address",
                                f"{key} has {s.max_pending_streams_per_address}"), None
        oldest = None
        if len(self._entries) >= s.max_pending_streams:
            oldest = next(iter(self._entries))
            self.release(oldest)
            self.refused["max_pending_streams"] += 1
        self._entries[media_session_id] = _Entry(session_id, key)
        self._per_session[session_id] += 1
        self._per_address[key] += 1
        return None, oldest

    def release(self, media_session_id: str) -> None:
        """The stream connected, failed or ended (or was never admitted)."""
        entry = self._entries.pop(media_session_id, None)
        if entry is None:
            return
        for counter, key in ((self._per_session, entry.session),
                             (self._per_address, entry.address)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]

    def __contains__(self, media_session_id: object) -> bool:
        return media_session_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def _refuse(self, prop: str, detail: str) -> str:
        self.refused[prop] += 1
        return f"too many streams waiting to connect: {detail} ({prop})"


#: what a stream failed to make room for newer ones is told
MADE_ROOM = "too many streams waiting to connect: the oldest made room (max_pending_streams)"
