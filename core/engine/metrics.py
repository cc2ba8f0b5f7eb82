"""Per-stream media counters for ``/rest-api/stream/metrics``, with WCS's key names.

Counters come from the relay (frames, bytes, keyframes, drops, keyframe requests) and
the peer connection (NACKs). Rates (fps, bitrate) come from a sampler the engine runs
once a second, so nothing on the per-packet path does any extra work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hookcast.engine.streams import Stream
from hookcast.rtc.peer import PlayerLeg, PublisherLeg

KINDS = ("video", "audio")


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
