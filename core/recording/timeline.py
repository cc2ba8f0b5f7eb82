"""Recording time: every track's RTP time mapped onto one clock that starts at 0.

Each track's packets carry its own RTP time (unwrapped by aiortc, starting near 0 at its
first packet), so audio and video times cannot be compared as they are. They are tied
together through arrival: a track's offset is ``arrival - rtp_time`` at its smallest,
the packet that waited least between capture and arrival (a large keyframe's last
packet arrives late; the small frames after it show the true offset). The first
``SYNC_WINDOW`` seconds are held back to find that minimum, then every packet's time
is its RTP time plus its track's offset, minus the start of the recording (its first
video keyframe, or its first audio packet without video). RTP time goes on across lost
packets; a jump of more than ``DISCONTINUITY`` seconds against arrival (a publisher
restart) re-anchors that track.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

SYNC_WINDOW = 0.5  # seconds held back at the start to tie the tracks together
DISCONTINUITY = 3.0  # seconds: RTP time this far from arrival is a new timeline
MAX_HELD = 400  # packets held at most while syncing (bounded, whatever arrives)


@dataclass(frozen=True, slots=True)
class Timed:
    """One packet on the recording clock: ``seconds`` from the start of the recording;
    ``rate`` is its track's clock (90000 video, the codec's rate for audio)."""

    kind: str
    data: bytes
    rate: int
    keyframe: bool
    seconds: float


@dataclass(frozen=True, slots=True)
class Arrived:
    """One packet as the relay delivered it."""

    kind: str
    data: bytes
    rtp: int  # RTP time (unwrapped) in 1/rate
    rate: int
    keyframe: bool
    arrival: float  # monotonic seconds


class Timeline:
    """Feeds arriving packets, yields them timed; the first video keyframe (or, with no
    video, the first audio packet) starts the recording."""

    def __init__(self, kinds: frozenset[str]) -> None:
        self.kinds = kinds
        self._offsets: dict[str, float] = {}
        self._held: list[Arrived] = []
        self._start: float | None = None  # capture time (on the arrival clock) of t=0
        self.synced = False

    def feed(self, packet: Arrived) -> Iterator[Timed]:
        offset = packet.arrival - packet.rtp / packet.rate
        if not self.synced:
            yield from self._hold(packet, offset)
            return
        anchor = self._offsets.get(packet.kind)
        if anchor is None or abs(offset - anchor) > DISCONTINUITY:
            self._offsets[packet.kind] = anchor = offset  # a new track, or a restart
        yield from self._timed(packet, anchor)

    def drain(self) -> Iterator[Timed]:
        """The packets still held back (the recording stops within its first
        ``SYNC_WINDOW``), timed with what is known."""
        if not self.synced:
            self.synced = True
            held, self._held = self._held, []
            for earlier in held:
                yield from self._timed(earlier, self._offsets[earlier.kind])

    def _hold(self, packet: Arrived, offset: float) -> Iterator[Timed]:
        self._offsets[packet.kind] = min(offset, self._offsets.get(packet.kind, offset))
        self._held.append(packet)
        first = self._held[0].arrival
        if packet.arrival - first < SYNC_WINDOW and len(self._held) < MAX_HELD:
            return
        self.synced = True
        held, self._held = self._held, []
        for earlier in held:
            yield from self._timed(earlier, self._offsets[earlier.kind])

    def _timed(self, packet: Arrived, offset: float) -> Iterator[Timed]:
        capture = packet.rtp / packet.rate + offset
        if self._start is None:
            if not self._starts(packet):
                return
            self._start = capture
        seconds = capture - self._start
        if seconds < 0:
            return  # captured before the recording's first picture
        yield Timed(packet.kind, packet.data, packet.rate, packet.keyframe, seconds)

    def _starts(self, packet: Arrived) -> bool:
        if "video" in self.kinds:
            return packet.kind == "video" and packet.keyframe
        return True
