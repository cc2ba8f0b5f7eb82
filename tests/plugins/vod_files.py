"""Media files made for the VOD tests with PyAV, whose pictures say which frame they are,
and a player-side sink that decodes what a player receives."""

from __future__ import annotations

import asyncio
import math
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

FPS = 30
STEP = 110  # picture n: luma 16 + 2 * (n % STEP), blue 32 + 12 * (n // STEP % 16)
CYCLE = STEP * 16  # pictures are numbered modulo this
VIDEO_ENCODERS = {"h264": "libx264", "vp8": "libvpx", "hevc": "libx265", "mpeg4": "mpeg4"}
AUDIO_ENCODERS = {"aac": "aac", "opus": "libopus"}


def make_media(path: Path, video: str | None = "h264", audio: str | None = "aac",
               seconds: float = 10, gop: int = FPS, bframes: bool = False) -> Path:
    """A file of flat pictures that say their number (modulo CYCLE), and a 440 Hz tone."""
    container_format = {"mp4": "mp4", "webm": "webm", "mkv": "matroska"}[path.suffix[1:]]
    with av.open(str(path), "w", format=container_format) as out:
        vstream = astream = None
        if video is not None:
            vstream = out.add_stream(VIDEO_ENCODERS[video], rate=FPS)
            vstream.width, vstream.height, vstream.pix_fmt = 320, 240, "yuv420p"
            options = {"g": str(gop)}
            if video == "h264":
                options.update({"bf": "3" if bframes else "0", "preset": "veryfast"})
            if video == "hevc":
                options = {"x265-params": f"keyint={gop}:log-level=error"}
            vstream.options = options
        if audio is not None:
            astream = out.add_stream(AUDIO_ENCODERS[audio], rate=48000)
            astream.layout = "stereo"
        frames = int(seconds * FPS)
        samples = 0
        frame_size = 1024 if audio == "aac" else 960
        for number in range(frames):
            if vstream is not None:
                picture = av.VideoFrame(320, 240, "yuv420p")
                values = (16 + 2 * (number % STEP), 32 + 12 * (number // STEP % 16), 128)
                for value, plane in zip(values, picture.planes, strict=True):
                    plane.update(bytes([value]) * plane.buffer_size)
                picture.pts = number
                for packet in vstream.encode(picture):
                    out.mux(packet)
            while astream is not None and samples < (number + 1) * 48000 / FPS:
                sound = av.AudioFrame(format="s16", layout="stereo", samples=frame_size)
                tone = b"".join(struct.pack("<hh", v, v) for v in (
                    int(8000 * math.sin(2 * math.pi * 440 * (samples + n) / 48000))
                    for n in range(frame_size)))
                sound.planes[0].update(tone)
                sound.sample_rate, sound.pts = 48000, samples
                for packet in astream.encode(sound):
                    out.mux(packet)
                samples += frame_size
        for stream in (vstream, astream):
            if stream is not None:
                for packet in stream.encode(None):
                    out.mux(packet)
    return path


def _mean(plane: Any) -> float:
    data = bytes(plane)
    sample = b"".join(data[row * plane.line_size + 4:row * plane.line_size + plane.width - 4]
                      for row in range(4, plane.height - 4, 8))
    return sum(sample) / len(sample)


def picture_number(frame: av.VideoFrame) -> int:
    low = round((_mean(frame.planes[0]) - 16) / 2) % STEP
    high = round((_mean(frame.planes[1]) - 32) / 12) % 16
    return high * STEP + low


@dataclass
class Received:
    """What one player got: (arrival, picture number) per decoded picture, audio frames."""

    pictures: list[tuple[float, int]] = field(default_factory=list)
    audio_frames: int = 0
    audio_times: list[int] = field(default_factory=list)  # each audio packet's RTP time
    video_codec: str = ""
    errors: int = 0


async def receive(tracks: list[MediaStreamTrack], got: Received) -> None:
    """Decode a player's tracks (relayed av.Packet) until they end."""
    async def one(track: MediaStreamTrack) -> None:
        decoder: Any = None
        try:
            while True:
                packet = await track.recv()
                codec = packet.opaque.codec if packet.opaque is not None else ""
                if decoder is None:
                    name = {"video/h264": "h264", "video/vp8": "vp8", "audio/opus": "opus"}
                    decoder = av.CodecContext.create(name[codec], "r")
                    if track.kind == "video":
                        got.video_codec = codec
                if track.kind == "audio" and packet.pts is not None:
                    got.audio_times.append(int(packet.pts))
                try:
                    frames = decoder.decode(packet)
                except av.error.FFmpegError:
                    got.errors += 1
                    continue
                for frame in frames:
                    if track.kind == "video":
                        got.pictures.append((time.monotonic(), picture_number(frame)))
                    else:
                        got.audio_frames += 1
        except MediaStreamError:
            pass

    await asyncio.gather(*(one(track) for track in tracks))


def numbers(got: Received) -> list[int]:
    return [number for _, number in got.pictures]
