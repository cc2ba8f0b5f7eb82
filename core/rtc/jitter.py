"""RelayJitterBuffer: frame assembly for a relay that forwards frames it never decodes.

aiortc's own JitterBuffer (aiortc/jitterbuffer.py) only groups packets by RTP timestamp:
it never checks the marker bit, may emit a truncated frame when it overflows, and lets
one lost packet block output until `capacity` newer packets arrive (about 1.7 s at
300 pkt/s with the 1.16 capacity of 512). A decoder notices broken frames; a relay
forwarding encoded frames would not. This class keeps aiortc's private contract

    JitterBuffer(capacity, prefetch=0, is_video=False)
    add(packet) -> (pli_flag, frame or None)       frame has .data and .timestamp

(read by RTCRtpReceiver.__init__ and _handle_rtp_packet; compat.check_compat guards it)
and adds guarantees a relay needs. It reads RtpPacket.sequence_number, .timestamp,
.marker and ._data (the depayloaded bytes aiortc sets just before calling add()).

Video guarantees:
  * A frame is emitted only when its packets are contiguous from a proven frame start
    (the packet after the previous frame's marker packet, after an RTP timestamp
    change, or one whose bytes begin a keyframe: the very first packet of a stream is
    one) up to its marker packet (or the last packet before a timestamp change).
    Until the first proven start is seen, packets are discarded.
  * When a gap blocks output, the buffer waits at most `max_wait` seconds (measured
    from when the gap was first seen, restarted whenever a frame is emitted) or until
    `capacity` packets are held, then skips to the next proven frame start and returns
    pli_flag=True. Frames larger than `capacity` packets can never be emitted.
  * Every frame carries `complete`: False on the first frame after anything was
    discarded (start of stream, skipped gap, reset), meaning the decoder's reference
    chain is broken and a relay must wait for the next keyframe.
  * At most one frame is returned per add(); frames that became ready together are
    returned by the following calls.

Audio (is_video=False): every packet newer than the last one emitted is emitted at
once (`prefetch` is ignored, nothing ever waits); late and duplicate packets are
dropped; `complete` is False when sequence numbers were skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hookcast.rtc.bitstream import begins_keyframe

DEFAULT_MAX_WAIT = 0.25
MAX_MISORDER = 100  # as aiortc: a packet this far behind means the stream restarted
_HALF = 0x8000


def seq_delta(seq: int, base: int) -> int:
    """Distance from base forward to seq, modulo 2**16 (>= 0x8000 means seq is older)."""
    return (seq - base) & 0xFFFF


@dataclass(slots=True)
class RelayJitterFrame:
    """One assembled frame; aiortc rewrites `timestamp` through its TimestampMapper.

    complete: True when nothing was discarded between the previous emitted frame and
        this one. arrival: clock() when the frame's last needed packet was added.
    """

    data: bytes
    timestamp: int
    complete: bool = True
    arrival: float = 0.0


@dataclass(slots=True)
class JitterStats:
    """Plain counters, cheap to update on every packet."""

    frames: int = 0
    skips: int = 0
    resets: int = 0
    packets_dropped: int = 0


class RelayJitterBuffer:
    """Drop-in replacement for aiortc.jitterbuffer.JitterBuffer (see module docstring)."""

    def __init__(
        self,
        capacity: int,
        prefetch: int = 0,
        is_video: bool = False,
        *,
        max_wait: float = DEFAULT_MAX_WAIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity <= 0 or capacity & (capacity - 1):
            raise ValueError(f"capacity must be a power of 2, got {capacity}")
        self._capacity = capacity
        self._is_video = is_video
        self._max_wait = max_wait
        self._clock = clock
        self.stats = JitterStats()
        self._packets: dict[int, Any] = {}
        self._base: int | None = None  # next frame's first seq (synced) / oldest kept seq
        self._synced = False
        self._frontier = 0  # first missing delta from base
        self._end: int | None = None  # delta of the current frame's last packet, if known
        self._frame_ts: int | None = None
        self._stalled_since: float | None = None
        self._complete_next = False

    @property
    def capacity(self) -> int:
        return self._capacity

    def add(self, packet: Any) -> tuple[bool, RelayJitterFrame | None]:
        """Add one depayloaded RTP packet; return (pli_flag, frame or None).

        pli_flag is True when this call discarded data that cannot be delivered (a
        skipped gap, a sequence reset, or the packets before the first proven start),
        so aiortc sends a PLI to the publisher.
        """
        now = self._clock()
        if not self._is_video:
            return False, self._add_audio(packet, now)
        pli = False
        if self._base is None:
            self._restart(packet.sequence_number)
        else:
            keep, pli = self._admit(packet)
            if not keep:
                return False, None
        self._packets[packet.sequence_number] = packet
        if not self._synced:
            pli = self._try_sync(packet) or pli
            if not self._synced:
                return pli, None
        frame = self._next_frame(now)
        if frame is None and self._stalled(now):
            self._skip()
            return True, self._next_frame(now) if self._synced else None
        return pli, frame

    # -- audio --------------------------------------------------------------------

    def _add_audio(self, packet: Any, now: float) -> RelayJitterFrame | None:
        seq = packet.sequence_number
        complete = True
        if self._base is not None:
            delta = seq_delta(seq, self._base)
            if delta >= _HALF and 0x10000 - delta < MAX_MISORDER:
                self.stats.packets_dropped += 1
                return None
            complete = delta == 0
        self._base = (seq + 1) & 0xFFFF
        if not packet._data:  # padding only
            return None
        self.stats.frames += 1
        return RelayJitterFrame(packet._data, packet.timestamp, complete, now)

    # -- video: admission and (re)synchronisation ------------------------------------

    def _restart(self, seq: int) -> None:
        """Forget everything; wait for a proven frame start at or after seq."""
        self._packets.clear()
        self._base = seq
        self._synced = False
        self._frontier = 0
        self._end = None
        self._frame_ts = None
        self._stalled_since = None
        self._complete_next = False

    def _admit(self, packet: Any) -> tuple[bool, bool]:
        """Return (keep, reset): drop late or duplicate packets; reset on a seq jump."""
        assert self._base is not None
        seq = packet.sequence_number
        delta = seq_delta(seq, self._base)
        if (delta >= _HALF and 0x10000 - delta < MAX_MISORDER) or seq in self._packets:
            self.stats.packets_dropped += 1
            return False, False
        if delta >= self._capacity and delta < _HALF and self._synced:
            self._skip()  # a gap holds the window: move past it, as a stall would
            if seq_delta(seq, self._base) < self._capacity:
                return True, True
        if seq_delta(seq, self._base) >= self._capacity:  # a jump: the stream restarted
            self.stats.resets += 1
            self.stats.packets_dropped += len(self._packets)
            self._restart(seq)
            return True, True
        return True, False

    def _try_sync(self, packet: Any) -> bool:
        """While unsynced, look for a proven frame start next to `packet`.

        Return True when packets were discarded to reach it (the caller flags PLI).
        """
        seq = packet.sequence_number
        before = self._packets.get((seq - 1) & 0xFFFF)
        after = self._packets.get((seq + 1) & 0xFFFF)
        data = getattr(packet, "_data", b"")
        if (before is not None and before.timestamp != packet.timestamp) or (
                before is None and isinstance(data, bytes) and begins_keyframe(data)):
            start = seq  # the earliest start this packet can prove
        elif packet.marker or (after is not None and after.timestamp != packet.timestamp):
            start = (seq + 1) & 0xFFFF
        else:
            if len(self._packets) >= self._capacity:
                self.stats.packets_dropped += len(self._packets)
                self._restart(seq)
            return False
        return self._sync_at(start) > 0

    def _sync_at(self, start: int) -> int:
        """Make `start` the next frame's first seq; drop older packets; return how many."""
        stale = [s for s in self._packets if seq_delta(s, start) >= _HALF]
        for seq in stale:
            del self._packets[seq]
        self.stats.packets_dropped += len(stale)
        self._base = start
        self._synced = True
        self._frontier = 0
        self._end = None
        self._frame_ts = None
        return len(stale)

    # -- video: assembly, stalls and skips --------------------------------------------

    def _advance(self) -> None:
        """Move the frontier over contiguous packets and find the current frame's end."""
        assert self._base is not None
        while self._end is None:
            packet = self._packets.get((self._base + self._frontier) & 0xFFFF)
            if packet is None:
                return
            if self._frontier == 0:
                self._frame_ts = packet.timestamp
            elif packet.timestamp != self._frame_ts:
                self._end = self._frontier - 1
                return
            if packet.marker:
                self._end = self._frontier
            self._frontier += 1

    def _next_frame(self, now: float) -> RelayJitterFrame | None:
        """Pop the frame at base if all its packets are here; empty frames are dropped."""
        assert self._base is not None
        while True:
            self._advance()
            if self._end is None:
                return None
            count = self._end + 1
            packets = [self._packets.pop((self._base + i) & 0xFFFF) for i in range(count)]
            self._base = (self._base + count) & 0xFFFF
            self._frontier = 0
            self._end = None
            self._stalled_since = None
            data = b"".join(p._data for p in packets)
            if data:  # padding-only packets make empty "frames"
                break
        frame = RelayJitterFrame(data, packets[0].timestamp, self._complete_next, now)
        self._complete_next = True
        self.stats.frames += 1
        return frame

    def _stalled(self, now: float) -> bool:
        """True when a gap has blocked output for max_wait, or capacity is reached."""
        if len(self._packets) >= self._capacity:
            return True
        if len(self._packets) <= self._frontier:  # nothing beyond the frontier: no gap
            self._stalled_since = None
            return False
        if self._stalled_since is None:
            self._stalled_since = now
            return False
        return now - self._stalled_since >= self._max_wait

    def _skip(self) -> None:
        """Drop the blocked frame and resume at the next proven frame start, if any."""
        assert self._base is not None
        self.stats.skips += 1
        hole = (self._base + self._frontier) & 0xFFFF
        self._sync_at(hole)  # drops the partial frame in front of the hole
        start = self._find_start(hole)
        if start is None:
            self._synced = False  # _try_sync finds the start as packets arrive
        else:
            self._sync_at(start)
        self._stalled_since = None
        self._complete_next = False

    def _find_start(self, base: int) -> int | None:
        """Lowest seq after `base` proven to start a frame by the packets held."""
        span = max((seq_delta(s, base) for s in self._packets), default=-1)
        previous = self._packets.get(base)
        for delta in range(1, span + 2):
            seq = (base + delta) & 0xFFFF
            current = self._packets.get(seq)
            if previous is not None and (
                previous.marker or (current is not None and current.timestamp != previous.timestamp)
            ):
                return seq
            previous = current
        return None
