"""compat (aiortc internals), packets (FrameMeta) and bitstream (keyframes, sizes)."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Any

import aiortc
import av
import pytest
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    VideoStreamTrack,
    jitterbuffer,
    rtcrtpreceiver,
)
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket

from hookcast.rtc import aiortc as compat
from hookcast.rtc.bitstream import inspect_h264, inspect_vp8, iter_annexb_nals
from hookcast.rtc.jitter import RelayJitterBuffer, RelayJitterFrame
from hookcast.rtc.packets import copy_packet, meta_of

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=99)


def encode(
    codec: str, width: int, height: int, count: int = 3, pix_fmt: str = "yuv420p"
) -> list[bytes]:
    context: Any = av.CodecContext.create(codec, "w")
    context.width, context.height, context.pix_fmt = width, height, pix_fmt
    context.time_base = Fraction(1, 30)
    if codec == "libx264":
        context.options = {"tune": "zerolatency"}
    packets = []
    for index in range(count):
        frame = av.VideoFrame(width, height, pix_fmt)  # memory is not cleared: fill it
        for plane in frame.planes:
            plane.update(bytes([(40 + index * 8) % 256]) * plane.buffer_size)
        frame.pts = index
        packets += context.encode(frame)
    packets += context.encode(None)
    return [bytes(p) for p in packets]


def test_check_compat_accepts_the_installed_aiortc() -> None:
    compat.check_compat()
    assert compat.compat_problems() == []


def test_an_untested_version_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiortc, "__version__", "1.17.0")
    with pytest.raises(compat.AiortcCompatError, match=r"aiortc 1\.17\.0 is not a tested version"):
        compat.check_compat()
    assert issubclass(compat.AiortcCompatError, ImportError)


def test_a_changed_internal_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    async def handle_rtcp_packet(self: RTCRtpSender, packet: object) -> None:
        self.request_keyframe()  # type: ignore[attr-defined]  # a hypothetical rename

    class NewJitterBuffer:
        def __init__(self, capacity: int, is_video: bool = False) -> None: ...

    monkeypatch.setattr(RTCRtpSender, "_handle_rtcp_packet", handle_rtcp_packet)
    monkeypatch.setattr(jitterbuffer, "JitterBuffer", NewJitterBuffer)
    problems = compat.compat_problems()
    assert any("_send_keyframe" in p for p in problems)
    assert any(
        "JitterBuffer.__init__ takes ['self', 'capacity', 'is_video']" in p for p in problems
    )


def test_a_changed_receiver_internal_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the receive path reads of aiortc's receiver and of aioice is checked too."""
    from aioice.ice import StunProtocol
    from aiortc.rtcrtpreceiver import RTCRtpReceiver

    def init(self: RTCRtpReceiver, kind: str, transport: object) -> None:
        self._codecs = {}  # type: ignore[attr-defined]  # a hypothetical rename

    def datagram_received(self: StunProtocol, data: bytes, addr: object) -> None:
        self.receiver.on_data(data)  # type: ignore[attr-defined]

    monkeypatch.setattr(RTCRtpReceiver, "__init__", init)
    monkeypatch.setattr(StunProtocol, "datagram_received", datagram_received)
    problems = compat.compat_problems()
    assert any(p.startswith("RTCRtpReceiver.__init__ no longer sets codecs") for p in problems)
    assert any("aioice's StunProtocol/Connection" in p for p in problems)


def test_install_is_idempotent_and_uninstall_restores_aiortc() -> None:
    """Whatever state earlier tests left (servers install the patch process-wide),
    uninstall() gives back aiortc's own functions, as aiortc's modules define them."""
    import aiortc.codecs

    receiver_module: Any = rtcrtpreceiver
    stock_decoder, stock_buffer = aiortc.codecs.get_decoder, jitterbuffer.JitterBuffer
    was_installed = compat.is_installed()
    try:
        compat.install()
        compat.install()
        assert compat.is_installed()
        assert isinstance(receiver_module.get_decoder(VP8), compat.PassthroughDecoder)
        assert receiver_module.JitterBuffer is RelayJitterBuffer
    finally:
        compat.uninstall()
    assert not compat.is_installed()
    assert receiver_module.get_decoder is stock_decoder
    assert receiver_module.JitterBuffer is stock_buffer
    if was_installed:
        compat.install()


@pytest.mark.parametrize(("codec", "encoder"), [(VP8, "libvpx"), (H264, "libx264")])
def test_passthrough_decoder_yields_decodable_packets_with_meta(
    codec: RTCRtpCodecParameters, encoder: str
) -> None:
    decoder = compat.PassthroughDecoder(codec)
    frames = encode(encoder, 640, 360, count=4)
    packets = []
    for index, data in enumerate(frames):
        jitter_frame = RelayJitterFrame(
            data, index * 3000, complete=index != 1, arrival=5.0 + index
        )
        [packet] = decoder.decode(jitter_frame)
        packets.append(packet)
    first = meta_of(packets[0])
    assert (first.codec, first.keyframe, first.width, first.height) == (
        codec.mimeType.lower(),
        True,
        640,
        360,
    )
    assert first.parameter_sets
    assert [p.is_keyframe for p in packets] == [True, False, False, False]
    assert [p.pts for p in packets] == [p.dts for p in packets] == [0, 3000, 6000, 9000]
    assert packets[0].time_base == Fraction(1, 90000)
    assert [meta_of(p).complete for p in packets] == [True, False, True, True]
    assert [meta_of(p).arrival for p in packets] == [5.0, 6.0, 7.0, 8.0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.keyframe = False  # type: ignore[misc]
    context: Any = av.CodecContext.create(codec.name.lower(), "r")
    decoded = [f for p in packets for f in context.decode(p)] + context.decode(None)
    assert len(decoded) == 4


def test_passthrough_decoder_drops_empty_frames_and_accepts_stock_frames() -> None:
    decoder = compat.PassthroughDecoder(VP8)
    assert decoder.decode(jitterbuffer.JitterFrame(b"", 0)) == []
    [packet] = decoder.decode(jitterbuffer.JitterFrame(encode("libvpx", 64, 48)[0], 90))
    assert meta_of(packet).complete and packet.is_keyframe and packet.pts == 90


def test_copy_packet_is_independent() -> None:
    [packet] = compat.PassthroughDecoder(VP8).decode(
        RelayJitterFrame(encode("libvpx", 64, 48)[0], 7)
    )
    copy = copy_packet(packet)
    copy.pts = 99
    copy.time_base = Fraction(1, 1000)
    assert packet.pts == 7 and packet.time_base == Fraction(1, 90000)
    assert bytes(copy) == bytes(packet)
    assert copy.is_keyframe and copy.opaque is packet.opaque


@pytest.mark.asyncio
async def test_force_codec_leaves_one_codec_and_rtx_in_the_offer() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        compat.force_codec(pc.addTransceiver("video", direction="recvonly"), "video/VP8")
        compat.force_codec(pc.addTransceiver("audio", direction="recvonly"), "audio/opus")
        offer = await pc.createOffer()
        rtpmaps = [line for line in offer.sdp.splitlines() if line.startswith("a=rtpmap:")]
        names = sorted(line.split()[1].split("/")[0] for line in rtpmaps)
        assert names == ["VP8", "opus", "rtx"]
        with pytest.raises(ValueError, match=r"aiortc cannot send video/AV1; it offers \["):
            compat.force_codec(pc.addTransceiver("video"), "video/AV1")
    finally:
        await pc.close()


@pytest.mark.asyncio
async def test_on_keyframe_request_fires_on_rtcp_pli(caplog: pytest.LogCaptureFixture) -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        sender = pc.addTransceiver(VideoStreamTrack(), direction="sendonly").sender
        calls: list[str] = []
        compat.on_keyframe_request(sender, lambda: calls.append("first"))

        def broken() -> None:
            raise ZeroDivisionError

        compat.on_keyframe_request(sender, broken)
        compat.on_keyframe_request(sender, lambda: calls.append("third"))
        pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1234, media_ssrc=sender._ssrc)
        await sender._handle_rtcp_packet(pli)
        assert calls == ["first", "third"]
        assert "keyframe-request callback" in caplog.text
        # before any media, the receiver knows no SSRC to address a PLI to
        receiver = pc.addTransceiver("video", direction="recvonly").receiver
        assert await compat.request_keyframe(receiver) == 0
    finally:
        await pc.close()


@pytest.mark.parametrize(
    ("pix_fmt", "width", "height"),
    [("yuv420p", 320, 240), ("yuv420p", 322, 242), ("yuv444p", 322, 242), ("yuv420p", 1920, 1080)],
)
def test_h264_sps_size_with_cropping_and_high_profiles(
    pix_fmt: str, width: int, height: int
) -> None:
    key, delta = encode("libx264", width, height, count=2, pix_fmt=pix_fmt)[:2]
    info = inspect_h264(key)
    assert (info.keyframe, info.has_parameter_sets, info.width, info.height) == (
        True,
        True,
        width,
        height,
    )
    assert not inspect_h264(delta).keyframe


def test_annexb_split_handles_3_and_4_byte_start_codes() -> None:
    data = b"\x00\x00\x00\x01\x67\xaa\x00\x00\x01\x68\xbb\x00\x00\x00\x01\x65\xcc\xdd"
    assert list(iter_annexb_nals(data)) == [b"\x67\xaa", b"\x68\xbb", b"\x65\xcc\xdd"]
    info = inspect_h264(data)
    assert info.keyframe and info.has_parameter_sets and info.width is None  # bogus SPS


def test_vp8_keyframe_needs_its_start_code() -> None:
    key = encode("libvpx", 322, 242)[0]
    assert inspect_vp8(key).keyframe and (inspect_vp8(key).width, inspect_vp8(key).height) == (
        322,
        242,
    )
    assert not inspect_vp8(key[:3] + b"\x00" + key[4:]).keyframe  # damaged start code
    assert not inspect_vp8(key[5:]).keyframe  # head cut off
    assert not inspect_vp8(key[:9]).keyframe


def test_fast_ntp_time_matches_aiortcs_clock() -> None:
    import aiortc.clock

    from hookcast.rtc.aiortc.sender import _STOCK_NTP_TIME, fast_ntp_time

    for _ in range(5):
        stock, fast = _STOCK_NTP_TIME(), fast_ntp_time()
        # within 5 ms of each other (2**32 units per second)
        assert abs(fast - stock) < (1 << 32) // 200
    compat.install()
    try:
        assert aiortc.clock.current_ntp_time is fast_ntp_time
    finally:
        compat.uninstall()
    assert aiortc.clock.current_ntp_time is _STOCK_NTP_TIME
