"""Recording files on disk: making one final, and reading what one holds.

``finalize`` rewrites a file as a complete one, copying packets (``-c copy``, nothing
decoded): a fragmented MP4 becomes a plain MP4 with its index at the front (a browser
seeks at once), a WebM cut short by a crash gets its duration and cues. Packets a crash
left broken, without time, or out of order are skipped. Both run off the event loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import av

MUXERS = {".mp4": "mp4", ".webm": "webm", ".mkv": "matroska"}
CONTENT_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".mkv": "video/x-matroska"}
CODEC_NAMES = {"h264": "H264", "vp8": "VP8", "aac": "AAC", "opus": "opus"}


@dataclass(frozen=True)
class Probe:
    """What a recording file holds."""

    duration: float
    video_codec: str
    audio_codec: str
    width: int
    height: int


def finalize(path: Path) -> None:
    """Rewrite ``path`` in place as a complete, seekable file (atomic replace)."""
    muxer = MUXERS[path.suffix.lower()]
    temporary = path.with_name(f".{path.name}.final")
    options = {"movflags": "faststart"} if muxer == "mp4" else {}
    try:
        with av.open(str(path)) as source, av.open(str(temporary), "w", format=muxer,
                                                    options=options) as target:
            _copy(source, target)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _copy(source: Any, target: Any) -> None:
    streams = {s.index: target.add_stream_from_template(s) for s in source.streams
               if s.type in ("audio", "video")}
    if not streams:
        raise ValueError("no audio or video in the file")
    last: dict[int, int] = {}
    for packet in source.demux(*[source.streams[i] for i in streams]):
        index = packet.stream.index
        if packet.dts is None or packet.is_corrupt:
            continue
        if index in last and packet.dts <= last[index]:
            continue
        last[index] = packet.dts
        packet.stream = streams[index]
        target.mux(packet)


def probe(source: Path | IO[bytes]) -> Probe:
    """Duration and codecs of a recording file, given by path or open (reads its header,
    and its packets' times when the container states no duration)."""
    opened = av.open(str(source)) if isinstance(source, Path) else av.open(source, "r")
    with opened as container:
        video: Any = next((s for s in container.streams if s.type == "video"), None)
        audio: Any = next((s for s in container.streams if s.type == "audio"), None)
        duration = container.duration / av.time_base if container.duration else 0.0
        if not duration:
            duration = _duration_from_packets(container)
        return Probe(
            duration=round(duration, 3),
            video_codec=CODEC_NAMES.get(video.codec_context.name, video.codec_context.name)
            if video else "",
            audio_codec=CODEC_NAMES.get(audio.codec_context.name, audio.codec_context.name)
            if audio else "",
            width=video.codec_context.width if video else 0,
            height=video.codec_context.height if video else 0,
        )


def _duration_from_packets(container: Any) -> float:
    end = 0.0
    for packet in container.demux():
        if packet.pts is not None and packet.time_base is not None:
            end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    return end
