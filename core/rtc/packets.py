"""Encoded frames as av.Packet, and the FrameMeta each one carries in `packet.opaque`.

Everything downstream of the receiver (relay, recorder) sees av.Packet objects built
here. They are shared by every subscriber and must be treated as immutable: anything
that needs to change one (PyAV's mux() rebases its time) takes `copy_packet()` first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, TypeAlias

import av

from hookcast.rtc.bitstream import NOT_A_KEYFRAME, PictureInfo, inspect_h264, inspect_vp8

EncodedPacket: TypeAlias = "av.Packet[Any]"  # one encoded frame, FrameMeta in .opaque

_INSPECTORS = {"video/vp8": inspect_vp8, "video/h264": inspect_h264}
_AUDIO = PictureInfo(keyframe=True)


@dataclass(frozen=True, slots=True)
class FrameMeta:
    """What the relay knows about one encoded frame; immutable, stored in packet.opaque.

    codec: lower-case MIME type of the negotiated codec, e.g. "video/vp8", "audio/opus".
    keyframe: video: decodable on its own (see bitstream.PictureInfo); audio: always True.
    complete: False when frames were discarded right before this one (start of stream,
        a skipped gap): the decoder's reference chain is broken, so video must wait for
        the next keyframe. Audio: False when packets were lost; never gates anything.
    arrival: time.monotonic() when the frame's last packet arrived.
    width, height: picture size when the frame states it (VP8 keyframes, H.264 frames
        carrying an SPS), else None.
    parameter_sets: H.264 only: the frame carries SPS and PPS (True for VP8 keyframes).
    """

    codec: str
    keyframe: bool
    complete: bool
    arrival: float
    width: int | None = None
    height: int | None = None
    parameter_sets: bool = False


def inspect_frame(mime: str, data: bytes) -> PictureInfo:
    """Keyframe and size of one frame of codec `mime`; audio frames count as keyframes.

    A video codec without an inspector never yields a keyframe, so a relay gating on
    keyframes forwards none of it (aiortc negotiates only VP8 and H.264 video).
    """
    if mime.startswith("audio/"):
        return _AUDIO
    inspector = _INSPECTORS.get(mime)
    return NOT_A_KEYFRAME if inspector is None else inspector(data)


def make_packet(
    mime: str,
    clock_rate: int,
    data: bytes,
    timestamp: int,
    *,
    complete: bool = True,
    arrival: float | None = None,
) -> EncodedPacket:
    """Build the relayed av.Packet for one frame.

    pts = dts = timestamp (already rebased to start near 0), time_base 1/clock_rate,
    is_keyframe from the bitstream, opaque = FrameMeta.
    """
    mime = mime.lower()
    info = inspect_frame(mime, data)
    packet = av.Packet(data)
    packet.pts = packet.dts = timestamp
    packet.time_base = Fraction(1, clock_rate)
    packet.is_keyframe = info.keyframe
    packet.opaque = FrameMeta(
        codec=mime,
        keyframe=info.keyframe,
        complete=complete,
        arrival=time.monotonic() if arrival is None else arrival,
        width=info.width,
        height=info.height,
        parameter_sets=info.has_parameter_sets,
    )
    return packet


def meta_of(packet: EncodedPacket) -> FrameMeta:
    """The FrameMeta of a relayed packet; raises TypeError for any other packet."""
    meta = packet.opaque
    if not isinstance(meta, FrameMeta):
        raise TypeError(f"packet carries no FrameMeta (opaque={meta!r})")
    return meta


def copy_packet(packet: EncodedPacket) -> EncodedPacket:
    """An independent copy (same bytes, timing, keyframe flag and meta) safe to mutate."""
    copy = av.Packet(bytes(packet))
    copy.pts = packet.pts
    copy.dts = packet.dts
    copy.time_base = packet.time_base
    copy.is_keyframe = packet.is_keyframe
    copy.opaque = packet.opaque
    return copy
