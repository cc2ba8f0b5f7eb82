"""One recording file, written from one thread (never the event loop).

The file is crash-safe: fragmented MP4 cut every second whatever the keyframes
(``frag_duration``) and WebM/Matroska clusters of at most a second, each flushed as it
is written (``flush_packets``), so after ``kill -9`` the file on disk plays up to about
a second before the kill. ``max_interleave_delta`` keeps FFmpeg from holding one track's
packets while waiting for the other (a muted microphone).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from hookcast.recording.formats import Format
from hookcast.recording.transcode import RATE, AudioTranscoder, add_audio_stream

CRASH_SAFE: dict[str, dict[str, str]] = {
    "mp4": {"movflags": "frag_keyframe+empty_moov+default_base_moof+delay_moov",
            "frag_duration": "1000000", "flush_packets": "1", "max_interleave_delta": "500000"},
    "webm": {"cluster_time_limit": "1000", "flush_packets": "1",
             "max_interleave_delta": "500000"},
    "matroska": {"cluster_time_limit": "1000", "flush_packets": "1",
                 "max_interleave_delta": "500000"},
}
VIDEO_RATE = 90000
#: the time bases packets carry, made once (a Fraction per packet costs)
TIME_BASES = {rate: Fraction(1, rate) for rate in (VIDEO_RATE, RATE, 8000)}


class Muxer:
    """Writes video packets as they are and audio as it is or transcoded.

    ``write`` takes times already rebased to the start of the file, in the track's own
    clock (90 kHz video, the codec's rate for audio); a packet whose time does not move
    forward is dropped (muxers refuse it) and counted.
    """

    def __init__(self, path: Path, fmt: Format, size: tuple[int, int] | None) -> None:
        self.path = path
        self.format = fmt
        self.container: Any = av.open(str(path), "w", format=fmt.muxer,
                                      options=CRASH_SAFE[fmt.muxer])
        self.video: Any = None
        self.audio: Any = None
        self.transcoder: AudioTranscoder | None = None
        self.audio_rate = RATE
        if fmt.video is not None:
            width, height = size or (640, 480)
            self.video = self.container.add_mux_stream(fmt.video, width=width, height=height)
            self.video.time_base = Fraction(1, VIDEO_RATE)
        if fmt.audio_out is not None and fmt.audio_in is not None:
            layout = "stereo" if fmt.audio_in == "opus" else "mono"
            self.audio = add_audio_stream(self.container, fmt.audio_out, layout)
            if not fmt.audio_passthrough:
                self.transcoder = AudioTranscoder(fmt.audio_in, self.audio, fmt.audio_out)
        self._last = {"video": -1, "audio": -1}
        self._video_delta = VIDEO_RATE // 30
        self.dropped = 0
        #: seconds of media written (the later of the two tracks' ends)
        self.duration = 0.0

    def write(self, kind: str, data: bytes, pts: int, keyframe: bool) -> None:
        if pts <= self._last[kind]:
            self.dropped += 1
            return
        if kind == "video" and self.video is not None:
            if self._last["video"] >= 0:
                self._video_delta = pts - self._last["video"]
            self._last["video"] = pts
            self._mux(self.video, data, pts, VIDEO_RATE, keyframe, self._video_delta)
            self.duration = max(self.duration, (pts + self._video_delta) / VIDEO_RATE)
        elif kind == "audio" and self.audio is not None:
            self._last["audio"] = pts
            if self.transcoder is None:
                self._mux(self.audio, data, pts, RATE, True, 960)
                self.duration = max(self.duration, (pts + 960) / RATE)
            else:
                for packet in self.transcoder.encode(data, pts):
                    self.container.mux(packet)
                self.duration = max(self.duration, pts / self.transcoder.rate)

    def _mux(self, stream: Any, data: bytes, pts: int, rate: int, keyframe: bool,
             duration: int) -> None:
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = TIME_BASES.get(rate) or Fraction(1, rate)
        packet.is_keyframe = keyframe
        packet.duration = duration
        packet.stream = stream
        self.container.mux(packet)

    def close(self) -> None:
        """Flush the audio encoder and close the file (which writes its trailer)."""
        try:
            if self.transcoder is not None:
                for packet in self.transcoder.flush():
                    self.container.mux(packet)
        finally:
            self.container.close()
