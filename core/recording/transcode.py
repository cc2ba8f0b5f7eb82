"""Audio a container cannot take as it arrives, re-encoded (audio only, never video).

Opus (or G.711) -> AAC for MP4; G.711 -> Opus for WebM and Matroska. The resampler
re-chunks to the encoder's frame size and, with ``async``/``min_hard_comp``, fills a gap
left by lost packets with silence, so the audio stays continuous and in sync.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av

#: decoder name -> (sample rate, channel layout) of what arrives over RTP
INPUT = {"opus": (48000, "stereo"), "pcm_mulaw": (8000, "mono"), "pcm_alaw": (8000, "mono")}
#: output codec -> (encoder, sample format, frame size, bit rate)
OUTPUT = {"aac": ("aac", "fltp", 1024, 96000), "opus": ("libopus", "s16", 960, 64000)}
RATE = 48000


def add_audio_stream(container: Any, codec: str, layout: str) -> Any:
    """An audio stream of ``codec`` (aac, opus) at 48 kHz in ``container``."""
    encoder, sample_format, _, bit_rate = OUTPUT[codec]
    stream = container.add_stream(encoder, rate=RATE)
    context = stream.codec_context
    context.layout = layout
    context.format = sample_format
    context.bit_rate = bit_rate
    context.time_base = Fraction(1, RATE)
    if codec == "aac":  # FFmpeg's default (twoloop) coder costs ~3x more CPU for speech
        context.options = {"aac_coder": "fast"}
    return stream


class AudioTranscoder:
    """Decodes arriving audio packets and encodes them into ``stream``'s codec."""

    def __init__(self, decoder: str, stream: Any, output: str) -> None:
        rate, layout = INPUT[decoder]
        self.rate = rate
        self.time_base = Fraction(1, rate)
        context: Any = av.CodecContext.create(decoder, "r")  # an AudioCodecContext
        context.sample_rate = rate
        context.layout = layout
        self.decoder = context
        self.stream = stream
        _, sample_format, frame_size, _ = OUTPUT[output]
        self.resampler = av.AudioResampler(
            format=sample_format, layout=stream.codec_context.layout.name, rate=RATE,
            frame_size=frame_size, options={"async": "1", "min_hard_comp": "0.015"},
        )

    def encode(self, data: bytes, pts: int) -> Iterator[Any]:
        """The encoded packets (ready to mux) for one arriving packet at ``pts``
        (in 1/rate); a packet that does not decode yields nothing."""
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = self.time_base
        try:
            frames = self.decoder.decode(packet)
        except av.FFmpegError:
            return
        for frame in frames:
            frame.pts = pts
            frame.time_base = self.time_base
            for resampled in self.resampler.resample(frame):
                yield from self.stream.encode(resampled)

    def flush(self) -> Iterator[Any]:
        for resampled in self.resampler.resample(None):
            yield from self.stream.encode(resampled)
        yield from self.stream.encode(None)
