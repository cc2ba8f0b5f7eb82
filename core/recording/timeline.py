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
    video, the first audio packet) starts the recording. Packets are held (at most
    MAX_HELD) until the tracks are tied together and the start is known, so audio
    captured after the first keyframe but arriving before it is kept."""

    def __init__(self, kinds: frozenset[str]) -> None:
        self.kinds = kinds
        self._offsets: dict[str, float] = {}
        self._held: list[Arrived] = []
        self._start: float | None = None  # capture time (on the arrival clock) of t=0
        self.synced = False

    def feed(self, packet: Arrived) -> Iterator[Timed]:
        offset = packet.arrival - packet.rtp / packet.rate
        if self.synced and self._start is not None:
            anchor = self._offsets.get(packet.kind)
            if anchor is None or abs(offset - anchor) > DISCONTINUITY:
                self._offsets[packet.kind] = anchor = offset  # a new track, or a restart
            yield from self._timed(packet, anchor)
            return
        if not self.synced or packet.kind not in self._offsets:
            self._offsets[packet.kind] = min(offset, self._offsets.get(packet.kind, offset))
        self._held.append(packet)
        if not self.synced:
            self.synced = packet.arrival - self._held[0].arrival >= SYNC_WINDOW
        if len(self._held) >= MAX_HELD:  # bounded whatever arrives: keep the newest
            self.synced = True
            del self._held[:len(self._held) - MAX_HELD // 2]
        if self.synced:
            yield from self._release()

    def drain(self) -> Iterator[Timed]:
        """The packets still held back (the recording stops before it is tied together
        or started), timed with what is known."""
        self.synced = True
        yield from self._release()

    def _release(self) -> Iterator[Timed]:
        """Once synced: find the start among the held packets, then time them all."""
        if self._start is None:
            starts = [self._capture(p) for p in self._held if self._starts(p)]
            if not starts:
                return
            self._start = min(starts)
        held, self._held = self._held, []
        for packet in held:
            yield from self._timed(packet, self._offsets[packet.kind])

    def _capture(self, packet: Arrived) -> float:
        return packet.rtp / packet.rate + self._offsets[packet.kind]

    def _timed(self, packet: Arrived, offset: float) -> Iterator[Timed]:
        assert self._start is not None
        seconds = packet.rtp / packet.rate + offset - self._start
        if seconds < 0:
            return  # captured before the recording's first picture
        yield Timed(packet.kind, packet.data, packet.rate, packet.keyframe, seconds)

    def _starts(self, packet: Arrived) -> bool:
        if "video" in self.kinds:
            return packet.kind == "video" and packet.keyframe
        return True
