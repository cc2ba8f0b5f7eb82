"""Per-stream media counters for ``/rest-api/stream/metrics``, with WCS's key names.

Counters come from the relay (frames, bytes, keyframes, drops, keyframe requests) and
the peer connection (NACKs). Rates (fps, bitrate) come from a sampler the engine runs
once a second, so nothing on the per-packet path does any extra work.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hookcast.engine.streams import Stream
from hookcast.rtc.peer import PlayerLeg, PublisherLeg

KINDS = ("video", "audio")
Leg = PublisherLeg | PlayerLeg


@dataclass
class _Sample:
    at: float
    frames: int
    bytes: int


class RateMeter:
    """Frames and bits per second of each (stream, kind), from samples one second apart."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], _Sample] = {}
        self.rates: dict[tuple[str, str], tuple[float, int]] = {}

    def sample(self, key: tuple[str, str], frames: int, size: int, now: float) -> None:
        last = self._last.get(key)
        self._last[key] = _Sample(now, frames, size)
        if last is not None and now > last.at:
            elapsed = now - last.at
            fps = (frames - last.frames) / elapsed
            bitrate = int((size - last.bytes) * 8 / elapsed)
            self.rates[key] = (round(fps, 1), bitrate)

    def forget(self, media_session_id: str) -> None:
        for kind in KINDS:
            self._last.pop((media_session_id, kind), None)
            self.rates.pop((media_session_id, kind), None)

    def sample_leg(self, media_session_id: str, leg: PublisherLeg | PlayerLeg) -> None:
        now = time.monotonic()
        for kind, (frames, size) in _totals(leg).items():
            self.sample((media_session_id, kind), frames, size, now)


class Meters:
    """Every stream's rates, sampled once a second from the live legs, and the relay's
    packet totals (players that ended are kept in the totals, which never go down)."""

    def __init__(self, legs: Callable[[], Iterable[tuple[str, Leg]]]) -> None:
        self.rates = RateMeter()
        self._legs = legs
        self._ended: Counter[tuple[str, str]] = Counter()
        self._sampler: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._sampler is None:
            self._sampler = asyncio.create_task(self._sample(), name="rate sampler")

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)

    async def _sample(self) -> None:
        while True:
            self._sample_once()  # a function of its own: no leg stays referenced while asleep
            await asyncio.sleep(1.0)

    def _sample_once(self) -> None:
        for media_session_id, leg in list(self._legs()):
            self.rates.sample_leg(media_session_id, leg)

    def ended(self, media_session_id: str, leg: Leg | None) -> None:
        """A stream ended: forget its rates, keep its player's packets in the totals."""
        self.rates.forget(media_session_id)
        if isinstance(leg, PlayerLeg):
            _add_player_counts(self._ended, leg)

    def relay_counts(self) -> Counter[tuple[str, str]]:
        """So far, by (kind, result): frames forwarded to and dropped for players, packets
        players NACKed (nacked) and packets the forwarding path sent them again
        (retransmitted)."""
        counts = Counter(self._ended)
        for _, leg in self._legs():
            if isinstance(leg, PlayerLeg):
                _add_player_counts(counts, leg)
        return counts

    def relay_paths(self) -> Counter[tuple[str, str]]:
        """Players' tracks now sent on the dedicated path ("fast") or by aiortc's own
        senders ("aiortc": before they connect, over TURN, relay_fast_path=false), by
        (kind, path)."""
        paths: Counter[tuple[str, str]] = Counter()
        for _, leg in self._legs():
            if isinstance(leg, PlayerLeg):  # a push's leg too (its peer connection is its own)
                for subscriber in leg.subscribers:
                    paths[(subscriber.kind, "fast" if subscriber.fast else "aiortc")] += 1
        return paths


def _add_player_counts(counts: Counter[tuple[str, str]], leg: PlayerLeg) -> None:
    for subscriber in leg.subscribers:
        counts[(subscriber.kind, "forwarded")] += subscriber.counters.forwarded
        counts[(subscriber.kind, "dropped")] += subscriber.counters.dropped
        counts[(subscriber.kind, "retransmitted")] += subscriber.counters.retransmits
    for kind, asked in leg.nacks.items():
        counts[(kind, "nacked")] += asked


def _totals(leg: PublisherLeg | PlayerLeg) -> dict[str, tuple[int, int]]:
    """(frames, bytes) so far per kind: received from a publisher, sent to a player."""
    if isinstance(leg, PublisherLeg):
        return {k: (t.counters.packets, t.counters.bytes) for k, t in leg.tracks.items()}
    return {s.kind: (s.counters.forwarded, s.counters.bytes) for s in leg.subscribers}


def stream_metrics(
    stream: Stream, leg: PublisherLeg | PlayerLeg | None, meter: RateMeter
) -> dict[str, int | float | str]:
    """The flat WCS metrics map of one stream (VIDEO_WIDTH, VIDEO_FPS, AUDIO_RATE, ...).

    ``*_RATE`` is in bits per second; ``*_CODEC`` is the RTP payload type, as in WCS,
    and ``*_CODEC_NAME`` its name. hookcast adds ``*_FRAMES``, ``*_BYTES`` and, for
    players, ``*_DROPPED`` (frames a slow player skipped).
    """
    metrics: dict[str, int | float | str] = {
        "VIDEO_WIDTH": stream.width, "VIDEO_HEIGHT": stream.height,
        "VIDEO_CODEC_NAME": stream.video_codec, "AUDIO_CODEC_NAME": stream.audio_codec,
    }
    if leg is None:
        return metrics
    for kind, prefix in (("video", "VIDEO"), ("audio", "AUDIO")):
        fps, bitrate = meter.rates.get((stream.media_session_id, kind), (0.0, 0))
        metrics[f"{prefix}_FPS"] = fps
        metrics[f"{prefix}_RATE"] = bitrate
        metrics[f"{prefix}_NACK"] = leg.nacks[kind]
        metrics[f"{prefix}_CODEC"] = leg.payload_types.get(kind, -1)
    if isinstance(leg, PublisherLeg):
        metrics.update(_publisher_counters(leg))
    else:
        metrics.update(_player_counters(leg))
    return metrics


def _publisher_counters(leg: PublisherLeg) -> dict[str, int | float]:
    out: dict[str, int | float] = {}
    video = leg.tracks.get("video")
    if video is not None:
        c = video.counters
        out.update({
            "VIDEO_FRAMES": c.packets, "VIDEO_BYTES": c.bytes, "VIDEO_K_FRAMES": c.keyframes,
            "VIDEO_P_FRAMES": c.packets - c.keyframes, "VIDEO_B_FRAMES": 0,
            "VIDEO_GOP_SIZE": round(c.packets / c.keyframes, 1) if c.keyframes else 0,
            "VIDEO_PLI": video.stats().get("plis_sent", 0), "VIDEO_LOST": c.discontinuities,
        })
    audio = leg.tracks.get("audio")
    if audio is not None:
        c = audio.counters
        out.update({"AUDIO_FRAMES": c.packets, "AUDIO_BYTES": c.bytes,
                    "AUDIO_LOST": c.discontinuities})
    return out


def _player_counters(leg: PlayerLeg) -> dict[str, int | float]:
    out: dict[str, int | float] = {}
    for subscriber in leg.subscribers:
        prefix = "VIDEO" if subscriber.kind == "video" else "AUDIO"
        c = subscriber.counters
        out.update({
            f"{prefix}_FRAMES": c.forwarded, f"{prefix}_BYTES": c.bytes,
            f"{prefix}_DROPPED": c.dropped,
        })
        if subscriber.kind == "video":
            out["VIDEO_PLI"] = c.keyframe_requests
    return out
