"""Pre-encoded clips for benchmarks: encode once, send many times without an encoder.

A publisher that encodes 640x480 video in Python costs most of a core; twenty of them
do not fit on this machine. These clips are encoded once with PyAV (VP8 or H.264 at the
requested bitrate, a keyframe every 2 s, plus Opus audio) and replayed by ``ClipTrack``,
which hands aiortc's sender the encoded packets (``av.Packet``: aiortc only packetises
them), paced at real time and looped with continuous timestamps.

    python bench/clips.py VP8 /tmp/clip-vp8.pickle 1500000     # build one by hand
"""

from __future__ import annotations

import asyncio
import math
import pickle
import struct
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
from aiortc.mediastreams import MediaStreamTrack
from loadgen import TextureVideoTrack

SECONDS = 10
FPS = 30
GOP = 60
ENCODERS = {"VP8": ("libvpx", {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}),
            "H264": ("libx264", {"preset": "ultrafast", "tune": "zerolatency",
                                 "profile": "baseline"})}
#: one packet: (data, pts in the track's clock, keyframe)
Clip = dict[str, list[tuple[bytes, int, bool]]]


def build(codec: str, bitrate: int) -> Clip:
    name, options = ENCODERS[codec]
    video = av.CodecContext.create(name, "w")
    video.width, video.height, video.pix_fmt = 640, 480, "yuv420p"
    video.time_base, video.framerate = Fraction(1, 90000), Fraction(FPS)
    video.bit_rate, video.gop_size, video.options = bitrate, GOP, options
    texture = TextureVideoTrack()
    packets: list[tuple[bytes, int, bool]] = []
    for index in range(SECONDS * FPS):
        frame = _frame(texture, index)
        packets += [(bytes(p), index * 3000, bool(p.is_keyframe)) for p in video.encode(frame)]
    packets += [(bytes(p), len(packets) * 3000, bool(p.is_keyframe)) for p in video.encode(None)]
    return {"video": packets, "audio": _opus()}


def _frame(texture: TextureVideoTrack, index: int) -> av.VideoFrame:
    frame = texture.picture()
    frame.pts, frame.time_base = index * 3000, Fraction(1, 90000)
    return frame


def _opus() -> list[tuple[bytes, int, bool]]:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "stereo", "s16"
    encoder.bit_rate = 64000
    packets = []
    for index in range(SECONDS * 50):
        tone = b"".join(struct.pack("<hh", v, v) for v in (
            int(6000 * math.sin(2 * math.pi * 440 * (index * 960 + n) / 48000))
            for n in range(960)))
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.planes[0].update(tone)
        frame.sample_rate, frame.pts, frame.time_base = 48000, index * 960, Fraction(1, 48000)
        packets += [(bytes(p), index * 960, True) for p in encoder.encode(frame)]
    return packets


def load(codec: str, bitrate: int, cache: Path) -> Clip:
    """The clip for ``codec``/``bitrate``, built once and kept in ``cache``."""
    path = cache / f"clip-{codec}-{bitrate}.pickle"
    if not path.exists():
        path.write_bytes(pickle.dumps(build(codec, bitrate)))
    clip: Clip = pickle.loads(path.read_bytes())
    return clip


class ClipTrack(MediaStreamTrack):
    """Replays one kind of a clip as encoded packets at real time, looped."""

    def __init__(self, kind: str, packets: list[tuple[bytes, int, bool]], start: float) -> None:
        super().__init__()
        self.kind = kind
        self.packets = packets
        self.rate = 90000 if kind == "video" else 48000
        self.length = SECONDS * self.rate
        self.start = start
        self.index = 0
        self.sent = 0

    async def recv(self) -> av.Packet:
        loop, at = divmod(self.index, len(self.packets))
        data, pts, keyframe = self.packets[at]
        self.index += 1
        pts += loop * self.length
        await asyncio.sleep(max(0.0, self.start + pts / self.rate - time.time()))
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = Fraction(1, self.rate)
        packet.is_keyframe = keyframe
        self.sent += 1
        return packet


if __name__ == "__main__":
    codec, out, bitrate = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    clip = build(codec, bitrate)
    out.write_bytes(pickle.dumps(clip))
    size = sum(len(d) for d, _, _ in clip["video"]) * 8 / SECONDS / 1e6
    print(f"{codec}: {len(clip['video'])} frames, {size:.2f} Mb/s; "
          f"{len(clip['audio'])} Opus packets")
