"""The router: which broadcast each published name is, and which broadcast each playing
stream is attached to.

It knows broadcasts, sources and sinks only as ``hookcast.engine.broadcast`` describes
them: it never asks what kind of source feeds a name or what kind of sink plays it.
"""

from __future__ import annotations

from collections.abc import Iterator

from hookcast.engine.broadcast import Broadcast, Sink
from hookcast.engine.streams import Stream


class Router:
    """Published names -> broadcasts (listed ones); playing streams -> their broadcast."""

    def __init__(self) -> None:
        self.broadcasts: dict[str, Broadcast] = {}
        self._playing: dict[str, Broadcast] = {}

    def get(self, name: str) -> Broadcast | None:
        return self.broadcasts.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.broadcasts

    def __iter__(self) -> Iterator[Broadcast]:
        return iter(list(self.broadcasts.values()))

    def publish(self, broadcast: Broadcast) -> None:
        """List ``broadcast`` under its name (the stream registry has reserved it)."""
        self.broadcasts[broadcast.name] = broadcast

    def unpublish(self, broadcast: Broadcast) -> bool:
        """Unlist it; False if another broadcast (or none) has the name now."""
        if self.broadcasts.get(broadcast.name) is not broadcast:
            return False
        del self.broadcasts[broadcast.name]
        return True

    def attach(self, broadcast: Broadcast, stream: Stream, sink: Sink) -> None:
        """``stream`` (a player, a push) plays ``broadcast`` through ``sink``."""
        broadcast.attach(stream.media_session_id, sink)
        self._playing[stream.media_session_id] = broadcast

    def detach(self, stream: Stream) -> Broadcast | None:
        """``stream`` no longer plays: the broadcast it played, if any."""
        broadcast = self._playing.pop(stream.media_session_id, None)
        if broadcast is not None:
            broadcast.detach(stream.media_session_id)
        return broadcast

    def playing(self, stream: Stream) -> Broadcast | None:
        """The broadcast ``stream`` plays (a private one included)."""
        return self._playing.get(stream.media_session_id)

    def private(self) -> list[tuple[str, Broadcast]]:
        """Each private broadcast (a player's own reading) with its player's mediaSessionId."""
        return [(key, b) for key, b in self._playing.items() if not b.listed]
