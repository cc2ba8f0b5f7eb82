"""Publisher tracks for recording tests: a picture that flashes and a tone that beeps at
the same instants of one shared clock, so their offset in a file can be measured; and
a capture of the H.264 a publisher's encoder produced."""

from __future__ import annotations

import array
import asyncio
import math
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from typing import Any

import av
from aiortc.codecs import h264
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

FPS = 30
BEEP_FRAMES = 3  # 60 ms of tone at every whole second
DARK, BRIGHT = 16, 235


class FlashVideoTrack(VideoStreamTrack):
    """30 fps; the frame due at each whole second of ``epoch`` is bright, others dark."""

    def __init__(self, epoch: float, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.epoch, self.width, self.height = epoch, width, height
        self.index = 0
        self.sent = 0

    async def recv(self) -> av.VideoFrame:
        index = self.index
        self.index += 1
        await asyncio.sleep(max(0.0, self.epoch + index / FPS - time.time()))
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        luma = BRIGHT if index % FPS == 0 else DARK
        for number, plane in enumerate(frame.planes):
            plane.update(bytes([luma if number == 0 else 128]) * plane.buffer_size)
        frame.pts, frame.time_base = index * 3000, Fraction(1, 90000)
        self.sent += 1
        return frame


class BeepAudioTrack(AudioStreamTrack):
    """20 ms stereo frames; the first BEEP_FRAMES of each whole second carry a 1 kHz tone."""

    def __init__(self, epoch: float) -> None:
        super().__init__()
        self.epoch = epoch
        self.index = 0
        samples = [int(12000 * math.sin(2 * math.pi * 1000 * n / 48000)) for n in range(960)]
        self.tone = b"".join(struct.pack("<hh", s, s) for s in samples)
        self.silence = bytes(len(self.tone))

    async def recv(self) -> av.AudioFrame:
        index = self.index
        self.index += 1
        await asyncio.sleep(max(0.0, self.epoch + index * 0.02 - time.time()))
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.planes[0].update(self.tone if index % 50 < BEEP_FRAMES else self.silence)
        frame.sample_rate, frame.pts, frame.time_base = 48000, index * 960, Fraction(1, 48000)
        return frame


def flashes_and_beeps(path: str) -> tuple[list[float], list[float]]:
    """Times (s) of bright pictures and of tone onsets in a recorded file."""
    flashes: list[float] = []
    onsets: list[float] = []
    loud_until = -1.0
    with av.open(path) as container:
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                luma = bytes(frame.planes[0])[::97]
                if sum(luma) / len(luma) > 128:
                    flashes.append(float(frame.time))
            else:
                onset = _onset(frame)
                if onset is not None and float(frame.time) > loud_until:
                    onsets.append(float(frame.time) + onset)
                if onset is not None:
                    loud_until = float(frame.time) + frame.samples / frame.sample_rate + 0.3
    return flashes, onsets


def _onset(frame: av.AudioFrame) -> float | None:
    """Seconds into ``frame`` of its first loud sample, or None."""
    fmt = frame.format.name
    plane = bytes(frame.planes[0])
    samples: Any = array.array("f", plane) if fmt.startswith("flt") else array.array("h", plane)
    limit = 0.1 if fmt.startswith("flt") else 3000
    step = len(samples) // frame.samples if frame.samples else 1
    for number, value in enumerate(samples[::max(step, 1)]):
        if abs(value) > limit:
            return number / frame.sample_rate
    return None


@contextmanager
def captured_h264() -> Iterator[list[list[bytes]]]:
    """Every frame aiortc's H.264 encoder produces in this process, as its NAL units."""
    frames: list[list[bytes]] = []
    original = h264.H264Encoder._encode_frame

    def capture(self: Any, frame: av.VideoFrame, force_keyframe: bool) -> Iterator[bytes]:
        nals = list(original(self, frame, force_keyframe))
        frames.append(nals)
        yield from nals

    h264.H264Encoder._encode_frame = capture  # type: ignore[method-assign]
    try:
        yield frames
    finally:
        h264.H264Encoder._encode_frame = original  # type: ignore[method-assign]


def slices(nals: list[bytes]) -> bytes:
    """The coded picture of one frame: its slice NAL units (types 1 and 5) joined."""
    return b"".join(n for n in nals if n and n[0] & 0x1F in (1, 5))


def recorded_h264(path: str) -> list[bytes]:
    """The coded picture of every video sample of an MP4, from its length-prefixed NALs."""
    pictures = []
    with av.open(path) as container:
        for packet in container.demux(container.streams.video[0]):
            data = bytes(packet)
            if not data:
                continue
            nals, at = [], 0
            while at + 4 <= len(data):
                size = int.from_bytes(data[at:at + 4], "big")
                nals.append(data[at + 4:at + 4 + size])
                at += 4 + size
            pictures.append(slices(nals))
    return pictures
