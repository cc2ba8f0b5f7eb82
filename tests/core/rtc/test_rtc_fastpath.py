"""The dedicated forwarding path (hookcast.rtc.fastpath).

What goes on the wire is checked byte for byte against aiortc's own parser (with a real
SRTP session pair), and real viewers on 127.0.0.1 are served through it: under 5 % loss
NACK repairs what was dropped, and a player whose socket fails stalls nobody else.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import itertools
import os
import types
from typing import Any

import pytest
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from aiortc.rtp import HeaderExtensionsMap, RtpPacket, unwrap_rtx
from pylibsrtp import Policy, Session
from relay_harness import Room, assert_kept_up, counted_over, open_room, reading, wait_for

from hookcast.rtc import aiortc as compat
from hookcast.rtc import fastpath
from hookcast.rtc.fastpath import Fanout, FastPlayer, Layout, equal_size_runs
from hookcast.rtc.gate import KeyframeGate
from hookcast.rtc.packets import make_packet
from hookcast.rtc.relay import PublishedTrack, SubscriberCounters
from tests.fastpath_shims import Lossy, Refusing

# --- what goes on the wire ----------------------------------------------------------


class Capture:
    """A socket stand-in: keeps every datagram, GSO sends split into their segments."""

    def __init__(self) -> None:
        self.datagrams: list[bytes] = []
        self.gso_sends = 0

    def sendto(self, data: Any, address: Any) -> None:
        self.datagrams.append(bytes(data))

    def sendmsg(self, buffers: list[Any], ancillary: list[Any], flags: int, address: Any) -> None:
        data = b"".join(bytes(b) for b in buffers)
        (level, kind, value), = ancillary
        assert (level, kind) == (fastpath.SOL_UDP, fastpath.UDP_SEGMENT)
        size = int.from_bytes(value, "little")
        self.gso_sends += 1
        self.datagrams += [data[i:i + size] for i in range(0, len(data), size)]


class Transport:
    """asyncio's datagram transport of a Capture: what the fast path sends through it
    (what a full socket refused during a joiner's replay) lands in the same capture,
    counted apart; it holds nothing back."""

    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.sent = 0

    def get_write_buffer_size(self) -> int:
        return 0

    def sendto(self, data: bytes, address: Any) -> None:
        assert isinstance(data, bytes)  # a copy: asyncio may keep it
        self.sent += 1
        self.capture.datagrams.append(data)


class Full(Capture):
    """A socket that is full (EAGAIN) for its first ``refusals`` sends."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    def _refuse(self) -> bool:
        self.refusals -= 1
        return self.refusals >= 0

    def sendto(self, data: Any, address: Any) -> None:
        if self._refuse():
            raise BlockingIOError(errno.EAGAIN, "full")
        super().sendto(data, address)

    def sendmsg(self, buffers: list[Any], ancillary: list[Any], flags: int, address: Any) -> None:
        if self._refuse():
            raise BlockingIOError(errno.EAGAIN, "full")
        super().sendmsg(buffers, ancillary, flags, address)


class Sender:
    """The attributes count_sent keeps current, as on an RTCRtpSender."""

    _RTCRtpSender__packet_count = 0
    _RTCRtpSender__octet_count = 0
    _RTCRtpSender__ntp_timestamp = 0
    _RTCRtpSender__rtp_timestamp = 0

    async def _retransmit(self, sequence_number: int) -> None:  # its own history: empty
        pass


class Subscriber:
    kind = "video"

    def __init__(self) -> None:
        self.counters = SubscriberCounters()
        self.gate = KeyframeGate(synced=True)


def extensions_map() -> HeaderExtensionsMap:
    extensions = HeaderExtensionsMap()
    extensions.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(
            id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"),
        RTCRtpHeaderExtensionParameters(id=9, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
    ]))
    return extensions


KEYS: dict[int, bytes] = {}


def player_on(capture: Capture, gso: bool) -> tuple[FastPlayer, Session, HeaderExtensionsMap]:
    key = KEYS[id(capture)] = os.urandom(30)
    profile = Policy.SRTP_PROFILE_AES128_CM_SHA1_80
    tx_policy = Policy(key=key, srtp_profile=profile, ssrc_type=Policy.SSRC_ANY_OUTBOUND)
    tx_policy.allow_repeat_tx = True  # as aiortc's DTLS transport sets it
    tx = Session(tx_policy)
    rx = Session(Policy(key=key, srtp_profile=profile, ssrc_type=Policy.SSRC_ANY_INBOUND))
    extensions = extensions_map()
    path: Any = types.SimpleNamespace(
        ssrc=0x11223344, rtx_ssrc=0x55667788, payload_type=96, rtx_payload_type=97, mid="1",
        extension_ids={"abs_send_time": 3, "mid": 9}, srtp=tx, sock=capture,
        socket=Transport(capture),
        remote=("127.0.0.1", 9), extensions_map=extensions)
    player = FastPlayer(Subscriber(), Sender(), path, Layout(path), gso)  # type: ignore[arg-type]
    PATHS[id(capture)] = path
    return player, rx, extensions


#: the path player_on made for a capture (for a Fanout to add another player on it)
PATHS: dict[int, Any] = {}


@pytest.mark.parametrize("gso", [True, False])
def test_packets_are_what_aiortc_parses_back(gso: bool) -> None:
    capture = Capture()
    player, rx, extensions = player_on(capture, gso)
    payloads = [bytes([n]) * 1200 for n in range(4)] + [b"last" * 50]
    buffer = compat.ProtectBuffer(fastpath._BUFFER_SIZE)
    first = player.sequence
    for frame in range(2):
        player.layout.build(payloads, abs_send_time=0x123456 + frame)
        assert player.send(buffer, 3000 * frame, 0, 4999, 5000)
    assert len(capture.datagrams) == 10
    assert capture.gso_sends == (2 if gso else 0)  # a frame: 4 equal packets, a smaller last
    plain = [rx.unprotect(d) for d in capture.datagrams]
    packets = [RtpPacket.parse(data, extensions) for data in plain]
    for index, packet in enumerate(packets):
        frame, number = divmod(index, 5)
        assert packet.sequence_number == (first + index) & 0xFFFF
        assert packet.timestamp == (player.origin + 3000 * frame) & 0xFFFFFFFF
        assert (packet.ssrc, packet.payload_type) == (0x11223344, 96)
        assert packet.marker == (number == 4)
        assert packet.payload == payloads[number]
        assert packet.extensions.mid == "1"
        assert packet.extensions.abs_send_time == 0x123456 + frame
    # byte for byte what aiortc's own sender would serialise for that packet
    expected = RtpPacket(payload_type=96, marker=1, sequence_number=packets[-1].sequence_number,
                         timestamp=packets[-1].timestamp, ssrc=0x11223344)
    expected.extensions.abs_send_time, expected.extensions.mid = 0x123457, "1"
    expected.payload = payloads[-1]
    assert plain[-1] == expected.serialize(extensions)

    # a NACK of the second packet: resent as RTX, which unwraps to the original
    capture.datagrams.clear()
    player.retransmit(first + 1)
    player.retransmit(first + 1)
    player.retransmit((first + 1000) & 0xFFFF)  # never sent: nothing
    assert len(capture.datagrams) == 2
    rtx = [RtpPacket.parse(rx.unprotect(d), extensions) for d in capture.datagrams]
    assert [(p.ssrc, p.payload_type) for p in rtx] == [(0x55667788, 97)] * 2
    assert rtx[1].sequence_number == (rtx[0].sequence_number + 1) & 0xFFFF
    original = unwrap_rtx(rtx[0], payload_type=96, ssrc=0x11223344)
    assert original.sequence_number == packets[1].sequence_number
    assert original.timestamp == packets[1].timestamp
    assert original.payload == payloads[1]
    assert player.counters.retransmits == 2
    assert all(p.marker == 0 for p in rtx)  # the second packet of its frame

    # without RTX negotiated: the packet itself, as first sent
    fresh_rx = Session(Policy(key=KEYS[id(capture)], srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
                              ssrc_type=Policy.SSRC_ANY_INBOUND))
    player.rtx_payload_type = None
    capture.datagrams.clear()
    player.retransmit(first + 4)
    # (a receiver that lost it: one that has not seen that index yet)
    (again,) = [fresh_rx.unprotect(d) for d in capture.datagrams]
    assert RtpPacket.parse(again, extensions).sequence_number == packets[4].sequence_number
    assert RtpPacket.parse(again, extensions).payload == payloads[4]


class FakeSubscriber(Subscriber):
    def stop(self) -> None:
        pass


def vp8_frame(number: int) -> Any:
    return make_packet("video/vp8", 90000, bytes([number % 256]) * 3000, 3000 * number)


def picture_ids(packets: list[RtpPacket]) -> list[int]:
    """The VP8 picture ID of each frame a player received (from its first packet)."""
    found = []
    for packet in packets:
        descriptor, _ = VpxPayloadDescriptor.parse(packet.payload)
        if descriptor.partition_start:
            found.append(descriptor.picture_id)
    return found


def test_a_joiners_replay_leaves_no_gap_in_anyones_picture_ids() -> None:
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    fanout = Fanout("video", vp8, gso=True)
    first, second = Capture(), Full(refusals=1)
    _, rx1, ext1 = player_on(first, True)
    _, rx2, ext2 = player_on(second, True)
    one = fanout.add(FakeSubscriber(), Sender(), first_path(first, rx1), [])  # type: ignore[arg-type]
    for number in range(3):
        fanout.forward(vp8_frame(number), list(fanout.players))
    # the second player joins with two frames it had queued before it connected
    two = fanout.add(FakeSubscriber(), Sender(), first_path(second, rx2),  # type: ignore[arg-type]
                     [vp8_frame(1), vp8_frame(2)])
    # the replay's first send found the socket full: asyncio's transport took it (it
    # keeps what a full socket cannot take yet); nothing of the replay was lost
    kept = PATHS[id(second)].socket.sent
    assert kept > 0 and second.gso_sends == 1
    sent_first = len(second.datagrams)
    for number in range(3, 5):
        fanout.forward(vp8_frame(number), list(fanout.players))
    assert second.gso_sends == 3 and PATHS[id(second)].socket.sent == kept
    assert len(second.datagrams) > sent_first
    got_one = [RtpPacket.parse(rx1.unprotect(d), ext1) for d in first.datagrams]
    got_two = [RtpPacket.parse(rx2.unprotect(d), ext2) for d in second.datagrams]
    ids_one, ids_two = picture_ids(got_one), picture_ids(got_two)
    assert len(ids_one) == 5 and len(ids_two) == 4
    for ids in (ids_one, ids_two):
        assert all((b - a) % (1 << 15) == 1 for a, b in itertools.pairwise(ids)), ids
    assert ids_two[-2:] == ids_one[-2:]  # the frames both got carry the same IDs
    # the sender reports count what went out: packets and payload bytes
    for player, sent in ((one, got_one), (two, got_two)):
        assert player.sender._RTCRtpSender__packet_count == len(sent)  # type: ignore[attr-defined]
        assert player.sender._RTCRtpSender__octet_count == sum(  # type: ignore[attr-defined]
            len(p.payload) for p in sent)
        assert player.sender._RTCRtpSender__rtp_timestamp == sent[-1].timestamp  # type: ignore[attr-defined]


def first_path(capture: Capture, rx: Session) -> Any:
    """A path on ``capture`` whose session ``rx`` can read (player_on made both)."""
    return PATHS[id(capture)]


def test_equal_size_runs_keep_every_packet_once_in_order() -> None:
    assert equal_size_runs([1300, 1300, 1300, 700]) == [(0, 4)]
    assert equal_size_runs([30, 1300, 1300, 1299, 1299, 500]) == [(0, 1), (1, 4), (4, 6)]
    assert equal_size_runs([500]) == [(0, 1)]
    many = equal_size_runs([1300] * 100)
    assert all(stop - start <= fastpath.GSO_MAX_SEGMENTS for start, stop in many)
    assert all((stop - start) * 1300 <= fastpath.GSO_MAX_BYTES for start, stop in many)
    assert [i for start, stop in many for i in range(start, stop)] == list(range(100))


# --- real viewers -------------------------------------------------------------------

pytestmark_media = pytest.mark.usefixtures("loopback", "relay_installed")


class Failing:
    """A player's socket whose sends fail: EAGAIN (full) and ECONNREFUSED in turn."""

    def __init__(self) -> None:
        self.calls = 0

    def _fail(self) -> None:
        self.calls += 1
        if self.calls % 2:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")

    def sendto(self, data: Any, address: Any) -> None:
        self._fail()

    def sendmsg(self, *args: Any) -> None:
        self._fail()


def fast_player(room: Room, viewer: int, kind: str = "video") -> FastPlayer:
    fanout = room.published[kind].fanout
    assert fanout is not None
    track = room.viewers[viewer].tracks[kind]
    return next(p for p in fanout.players if p.subscriber is track)


@pytestmark_media
async def test_nack_repairs_five_percent_loss() -> None:
    room = await open_room("video/VP8", fast=True)
    try:
        await room.add_viewer()
        sink = room.viewers[0].sinks["video"]
        assert await wait_for(lambda: sink.frames > 10, within=5)
        player = fast_player(room, 0)
        lossy = player.sock = Lossy(player.sock, 0.05)
        sent, decoded = await counted_over(
            6.0, reading(room.video_source, "count"), reading(sink, "frames"))
        assert lossy.dropped > 20, "the shim dropped packets"
        assert player.counters.retransmits >= lossy.dropped // 2, "NACKs were answered"
        assert decoded >= 0.98 * sent, (decoded, sent, lossy.dropped)
        assert sink.errors == 0
    finally:
        await room.close()


@pytestmark_media
async def test_a_player_whose_socket_fails_stalls_nobody() -> None:
    room = await open_room("video/VP8", fast=True)
    try:
        await room.add_viewer()
        await room.add_viewer()
        sinks = [v.sinks["video"] for v in room.viewers]
        assert await wait_for(lambda: all(s.frames > 10 for s in sinks), within=5)
        broken = [fast_player(room, 0, kind) for kind in ("video", "audio")]
        socks = [p.sock for p in broken]
        for player in broken:
            player.sock = Failing()
        sent, decoded = await counted_over(
            3.0, reading(room.video_source, "count"), reading(sinks[1], "frames"))
        assert_kept_up(sent, [decoded], "video frames of the healthy player")
        counters = broken[0].counters
        assert counters.overflows > 0 and counters.send_errors > 0
        # once its socket works again it resumes, from a keyframe
        before = sinks[0].frames
        for player, sock in zip(broken, socks, strict=True):
            player.sock = sock
        assert await wait_for(lambda: sinks[0].frames > before + 30, within=5)
        assert [s.errors for s in sinks] == [0, 0]
    finally:
        await room.close()


def test_a_frame_the_fast_path_cannot_take_is_skipped_not_the_broadcast() -> None:
    class Source:
        kind, id = "video", "source"

    class Player:
        def __init__(self) -> None:
            self.gate = KeyframeGate(synced=True)
            self.counters = SubscriberCounters()

    class Exploding:
        players = (Player(),)

        def forward(self, packet: Any, players: Any) -> None:
            if players:
                raise IndexError("a frame aiortc's packetiser cannot take")

    class Recorder:
        kind = "video"

        def __init__(self) -> None:
            self.gate = KeyframeGate(synced=True)
            self.received: list[Any] = []

        def offer(self, packet: Any) -> None:
            self.received.append(packet)

    published = PublishedTrack(Source())  # type: ignore[arg-type]
    exploding = published._fanout = Exploding()  # type: ignore[assignment]
    recorder = Recorder()
    published.attach(recorder)
    published._dispatch(vp8_frame(0))
    assert not exploding.players[0].gate.synced  # the skipped frame: it waits for a keyframe
    published._dispatch(vp8_frame(1))
    assert not published.ended  # not the broadcast: the recorder got both frames
    assert len(recorder.received) == 2 and recorder.gate.synced
    assert published.counters.keyframe_requests == 2  # the recorder's, the fast path's


def tap_rtp(receiver: Any) -> list[RtpPacket]:
    """Every RTP packet a viewer's receiver is handed (SRTP removed, RTX not unwrapped),
    in arrival order: what the player got on the wire."""
    seen: list[RtpPacket] = []
    handle = receiver._handle_rtp_packet

    async def tapped(packet: RtpPacket, arrival_time_ms: int) -> None:
        seen.append(packet)
        await handle(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = tapped
    return seen


def vp8_frame_start(packet: RtpPacket) -> bool | None:
    """For the first packet of a VP8 frame: whether it is a keyframe (the P bit of the
    payload header is 0); None for any other packet."""
    descriptor, data = VpxPayloadDescriptor.parse(packet.payload)
    if not descriptor.partition_start or descriptor.partition_id != 0:
        return None
    return not data[0] & 0x01


@pytestmark_media
async def test_a_player_whose_socket_refused_gets_nothing_before_a_keyframe() -> None:
    """EAGAIN for a stretch: the rest of that frame is lost to the player, so it must
    wait for a keyframe, and one is asked of the publisher at once. What it receives
    first once its socket takes sends again is a keyframe, never a P-frame (which NACK
    and the decoder would otherwise paper over)."""
    room = await open_room("video/VP8", fast=True)
    try:
        viewer = await room.add_viewer()
        sink = viewer.sinks["video"]
        assert await wait_for(lambda: sink.frames > 10, within=10)
        receiver = next(t.receiver for t in viewer.pc.getTransceivers() if t.kind == "video")
        packets = tap_rtp(receiver)
        assert await wait_for(lambda: len(packets) > 20, within=10)
        # the video payload type (an RTX packet, if a rare loss made one, has its own)
        media_type = collections.Counter(p.payload_type for p in packets).most_common(1)[0][0]
        player = fast_player(room, 0)
        refusing = player.sock = Refusing(player.sock)
        asked_before = len(room.publisher_keyframe_requests)
        refusing.refusing = True
        assert await wait_for(lambda: refusing.refused > 0, within=10)
        await asyncio.sleep(1.0)  # frames go on upstream; the player gets none
        asked = len(room.publisher_keyframe_requests) - asked_before
        mark = len(packets)
        refusing.refusing = False
        assert await wait_for(
            lambda: any(p.payload_type == media_type for p in packets[mark:]), within=10
        ), "the player received nothing once its socket took sends again"
        first = next(p for p in packets[mark:] if p.payload_type == media_type)
        assert vp8_frame_start(first) is True, (
            "the first frame after the refusal is not a keyframe "
            f"(keyframe: {vp8_frame_start(first)})")
        assert asked > 0, "no keyframe was asked of the publisher while the player waited"
        frames = sink.frames
        assert await wait_for(lambda: sink.frames > frames + 10, within=10)
        assert sink.errors == 0
    finally:
        await room.close()
