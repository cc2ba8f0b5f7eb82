r"""The dedicated forwarding path: one fan-out per published track, no task or queue per player.

    PublishedTrack._dispatch(packet) --> Fanout.forward(packet), synchronously, per frame:
        encoder.pack(packet)         once (aiortc's packetiser: equal-size payloads)
        Layout.build(payloads)       once per header shape (payload type, MID, extension ids)
        for every player:            rewrite sequence number, timestamp and SSRC in place
                                     (struct.pack_into), SRTP-protect with its DTLS session,
                                     send on its ICE pair's socket: one GSO sendmsg per run
                                     of equal-size packets, or one sendto per packet

A player moves here once its RTCRtpSender has started (DTLS connected) and
hookcast.rtc.aiortc.sender_path() can serve its ICE pair (not TURN); otherwise it stays on
aiortc's own path (a SubscriberTrack read by its sender). Its sender stays, parked (its
track yields nothing), for RTCP: sender reports from the counters count_sent() keeps,
PLI/FIR to the publisher as before, and NACKs answered here from the player's history of
its last HISTORY_SIZE packets, as RTX when negotiated.

Nothing waits: a player whose socket is full (EAGAIN) has fallen behind: the rest of its
frame is lost to it (NACK may repair it), and video waits for a keyframe, which is
requested, as a SubscriberTrack does when its queue overflows. Any other socket error is
counted and the player skipped for that frame; its connection's consent checks end it.
All of it runs on the event loop; the packets are shared by every player of a layout and
only their first 12 bytes are rewritten, just before each player's protect.
"""

from __future__ import annotations

import errno
import logging
import random
import socket
import struct
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from aiortc.codecs import get_encoder
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import RtpPacket

from hookcast.rtc import aiortc as compat
from hookcast.rtc.packets import EncodedPacket

if TYPE_CHECKING:
    from hookcast.rtc.relay import SubscriberTrack

logger = logging.getLogger(__name__)

#: packets per player kept to answer NACKs: 1.7 s at 300 packets/s (aiortc keeps 128)
HISTORY_SIZE = 512
_MASK = HISTORY_SIZE - 1
#: Linux's UDP_SEGMENT (udp(7)); Python's socket module does not name it
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
SOL_UDP = getattr(socket, "SOL_UDP", 17)
#: one GSO send carries at most this many segments and bytes (the kernel's limits are
#: 64 segments and a 64 KiB datagram)
GSO_MAX_SEGMENTS = 48
GSO_MAX_BYTES = 60_000
#: what a run takes once protected: SRTP adds at most 16 bytes of tag (AES-GCM) and an MKI
_BUFFER_SIZE = GSO_MAX_BYTES + GSO_MAX_SEGMENTS * 160 + 2048
#: errors that mean the socket is gone: the player is dropped from the fan-out
_GONE = frozenset({errno.EBADF, errno.ENOTSOCK})

_HEADER = struct.Struct("!HII")  # sequence number, timestamp, SSRC at byte 2
_SEGMENT = struct.Struct("=H")


@cache
def gso_supported() -> bool:
    """Whether this kernel splits one UDP sendmsg into segments (UDP_SEGMENT, Linux 4.18+):
    two segments sent over loopback to a socket of this process arrive as two datagrams."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            receiver.bind(("127.0.0.1", 0))
            receiver.setblocking(False)  # loopback delivers within the send: no wait
            sender.sendmsg([b"a" * 100 + b"b" * 60],
                           [(SOL_UDP, UDP_SEGMENT, _SEGMENT.pack(100))], 0,
                           receiver.getsockname())
            return [len(receiver.recv(2048)), len(receiver.recv(2048))] == [100, 60]
    except OSError:
        return False


def equal_size_runs(sizes: list[int]) -> list[tuple[int, int]]:
    """Split packets into runs one GSO send can carry: every packet of a run the size of
    its first but the last, which may be smaller; at most GSO_MAX_SEGMENTS and
    GSO_MAX_BYTES each. Returns (start, stop) index pairs covering ``sizes`` in order."""
    runs = []
    start, count = 0, len(sizes)
    while start < count:
        size, stop = sizes[start], start + 1
        limit = min(GSO_MAX_SEGMENTS, max(1, GSO_MAX_BYTES // size))
        while stop < count and stop - start < limit:
            if sizes[stop] == size:
                stop += 1
                continue
            if sizes[stop] < size:
                stop += 1
            break
        runs.append((start, stop))
        start = stop
    return runs


class Layout:
    """The packets of the current frame for every player whose headers look alike (same
    payload type, MID and header extension ids): built once per frame, shared."""

    __slots__ = (
        "extensions_map",
        "header_length",
        "mid",
        "packets",
        "payload_type",
        "runs",
        "users",
    )

    def __init__(self, path: compat.SenderPath) -> None:
        self.payload_type = path.payload_type
        self.mid = path.mid
        self.extensions_map = path.extensions_map
        self.header_length = len(self._header(0))
        self.packets: list[bytearray] = []
        self.runs: list[tuple[int, int]] = []
        self.users = 0

    @staticmethod
    def key(path: compat.SenderPath) -> tuple[Any, ...]:
        return (path.payload_type, path.mid, tuple(sorted(path.extension_ids.items())))

    def _header(self, abs_send_time: int) -> bytes:
        """aiortc's own header for these players (what RTCRtpSender would serialise):
        sequence number, timestamp and SSRC zero, to be rewritten per player."""
        packet = RtpPacket(payload_type=self.payload_type)
        packet.extensions.abs_send_time = abs_send_time
        packet.extensions.mid = self.mid
        return packet.serialize(self.extensions_map)

    def build(self, payloads: list[bytes], abs_send_time: int) -> None:
        header = self._header(abs_send_time)
        self.packets = packets = [bytearray(header + payload) for payload in payloads]
        packets[-1][1] |= 0x80  # the marker: the frame's last packet
        self.runs = equal_size_runs([len(packet) for packet in packets])


class FastPlayer:
    """One player's state on the fast path: its sender's identity, its own sequence
    numbers and timestamp origin, its keyframe gate and its packet history."""

    __slots__ = (
        "counters",
        "gate",
        "gso",
        "history",
        "layout",
        "origin",
        "protect",
        "remote",
        "rtx_payload_type",
        "rtx_sequence",
        "rtx_ssrc",
        "sender",
        "sequence",
        "session",
        "sock",
        "srtp",
        "ssrc",
        "subscriber",
    )

    def __init__(self, subscriber: SubscriberTrack, sender: RTCRtpSender,
                 path: compat.SenderPath, layout: Layout, gso: bool) -> None:
        self.subscriber = subscriber
        #: the subscriber's keyframe gate goes on here (hookcast.rtc.gate)
        self.gate = subscriber.gate
        self.counters = subscriber.counters
        self.sender = sender
        self.layout = layout
        self.ssrc = path.ssrc
        self.rtx_ssrc = path.rtx_ssrc
        self.rtx_payload_type = path.rtx_payload_type
        self.session = path.srtp  # keeps the libsrtp session behind self.srtp alive
        self.protect = path.srtp.protect  # retransmissions (rare) take pylibsrtp's own way
        self.srtp = compat.srtp_handle(path.srtp)
        #: the ICE pair's socket (tests put a shim here to drop or fail sends)
        self.sock: Any = path.sock
        self.remote = path.remote
        self.gso = gso
        # like RTCRtpSender: sequence numbers start in the lower half (no early wrap)
        self.sequence = random.getrandbits(15)
        self.rtx_sequence = random.getrandbits(15)
        self.origin = random.getrandbits(32)
        self.history: list[tuple[int, int, bytearray] | None] = [None] * HISTORY_SIZE

    def send(self, buffer: compat.ProtectBuffer, timestamp: int, ntp: int,
             payload_bytes: int, frame_size: int) -> bool:
        """Send its layout's current packets with this player's header values, protected
        in ``buffer``. False: its socket is gone."""
        timestamp = (self.origin + timestamp) & 0xFFFFFFFF
        layout = self.layout
        packets = layout.packets
        first = sequence = self.sequence
        history = self.history
        for packet in packets:
            history[sequence & _MASK] = (sequence, timestamp, packet)
            sequence = (sequence + 1) & 0xFFFF
        self.sequence = sequence
        compat.count_sent(self.sender, len(packets), payload_bytes, timestamp, ntp)
        counters = self.counters
        counters.forwarded += 1
        counters.bytes += frame_size
        try:
            if self.gso and len(packets) > 1:
                self._send_runs(packets, layout.runs, buffer, first, timestamp)
            else:
                self._send_each(packets, buffer, first, timestamp)
        except BlockingIOError:  # its socket is full: it fell behind
            counters.overflows += 1
            self.unsync()
        except OSError as error:
            counters.send_errors += 1
            if error.errno in _GONE:
                return False
            if self.gso and error.errno in (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT):
                logger.info("UDP GSO refused on a player's socket (%s): plain sends", error)
                self.gso = False
        return True

    def unsync(self) -> None:
        """It fell behind: video waits for a keyframe, and asks for one."""
        self.gate.unsync()

    def _send_each(self, packets: list[bytearray], buffer: compat.ProtectBuffer,
                   sequence: int, timestamp: int) -> None:
        view, protect, handle = buffer.view, buffer.protect, self.srtp
        pack_header, ssrc, sock, remote = _HEADER.pack_into, self.ssrc, self.sock, self.remote
        for packet in packets:
            length = len(packet)
            view[:length] = packet
            pack_header(view, 2, sequence, timestamp, ssrc)
            sock.sendto(view[:protect(handle, 0, length)], remote)
            sequence = (sequence + 1) & 0xFFFF

    def _send_runs(self, packets: list[bytearray], runs: list[tuple[int, int]],
                   buffer: compat.ProtectBuffer, sequence: int, timestamp: int) -> None:
        """Each run protected back to back in the buffer, sent as one GSO datagram."""
        view, protect, handle = buffer.view, buffer.protect, self.srtp
        pack_header, ssrc, sock, remote = _HEADER.pack_into, self.ssrc, self.sock, self.remote
        for start, stop in runs:
            offset = 0
            for index in range(start, stop):
                packet = packets[index]
                length = len(packet)
                view[offset:offset + length] = packet
                pack_header(view, offset + 2, sequence, timestamp, ssrc)
                offset += protect(handle, offset, length)
                sequence = (sequence + 1) & 0xFFFF
                if index == start:
                    segment = offset
            if stop - start == 1:
                sock.sendto(view[:offset], remote)
            else:
                sock.sendmsg([view[:offset]], [(SOL_UDP, UDP_SEGMENT, _SEGMENT.pack(segment))],
                             0, remote)

    def retransmit(self, sequence_number: int) -> None:
        """Answer a NACK from the history: the same packet, or wrapped in RTX."""
        entry = self.history[sequence_number & _MASK]
        if entry is None or entry[0] != sequence_number:
            return
        _, timestamp, packet = entry
        if self.rtx_payload_type is None:
            data = bytearray(packet)
            _HEADER.pack_into(data, 2, sequence_number, timestamp, self.ssrc)
        else:  # RFC 4588: the original sequence number, then the original payload
            length = self.layout.header_length
            data = packet[:length] + sequence_number.to_bytes(2, "big") + packet[length:]
            data[1] = (data[1] & 0x80) | self.rtx_payload_type
            _HEADER.pack_into(data, 2, self.rtx_sequence, timestamp, self.rtx_ssrc)
            self.rtx_sequence = (self.rtx_sequence + 1) & 0xFFFF
        self.counters.retransmits += 1
        try:
            self.sock.sendto(self.protect(bytes(data)), self.remote)
        except Exception:  # OSError, or libsrtp refusing: counted, the NACK goes unanswered
            self.counters.send_errors += 1


class Buffered:
    """A player's socket that never refuses: what the socket itself cannot take at once
    (EAGAIN) goes through asyncio's datagram transport of it, which keeps a copy and
    sends it when the socket can take it (and sends after it whatever follows)."""

    __slots__ = ("sock", "transport")

    def __init__(self, sock: Any, transport: Any) -> None:
        self.sock, self.transport = sock, transport

    def sendto(self, data: Any, address: Any) -> None:
        if not self.transport.get_write_buffer_size():
            try:
                self.sock.sendto(data, address)
                return
            except BlockingIOError:
                pass
        self.transport.sendto(bytes(data), address)

    def sendmsg(self, buffers: list[Any], ancillary: list[Any], flags: int,
                address: Any) -> None:
        if not self.transport.get_write_buffer_size():
            try:
                self.sock.sendmsg(buffers, ancillary, flags, address)
                return
            except BlockingIOError:
                pass
        data = b"".join(bytes(b) for b in buffers)
        size = _SEGMENT.unpack(ancillary[0][2])[0]
        for start in range(0, len(data), size):
            self.transport.sendto(data[start:start + size], address)


class Fanout:
    """Every fast-path player of one published track; forward() is called with each of
    its frames and the players whose gate admitted it."""

    def __init__(self, kind: str, codec: Any, gso: bool) -> None:
        self.kind = kind
        self.codec = codec
        self.encoder = get_encoder(codec)
        self.gso = gso and gso_supported()
        self._layouts: dict[tuple[Any, ...], Layout] = {}
        self._players: dict[SubscriberTrack, FastPlayer] = {}
        self._order: tuple[FastPlayer, ...] = ()
        self._buffer = compat.ProtectBuffer(_BUFFER_SIZE)

    @property
    def players(self) -> tuple[FastPlayer, ...]:
        return self._order

    def add(self, subscriber: SubscriberTrack, sender: RTCRtpSender,
            path: compat.SenderPath, queued: list[EncodedPacket]) -> FastPlayer:
        """Serve ``subscriber``'s player from now on; ``queued`` (what it had not sent
        yet: the joiner's group of pictures) is sent first."""
        key = Layout.key(path)
        layout = self._layouts.get(key)
        if layout is None:
            layout = self._layouts[key] = Layout(path)
        layout.users += 1
        player = FastPlayer(subscriber, sender, path, layout, self.gso)
        compat.answer_retransmits(sender, player.retransmit)
        self._players[subscriber] = player
        self._order = tuple(self._players.values())
        if queued:
            self._replay(player, layout, queued, path.socket)
        return player

    def _replay(self, player: FastPlayer, layout: Layout, queued: list[EncodedPacket],
                transport: Any) -> None:
        """Send a joiner what it had queued (up to a whole group of pictures, in one go
        as aiortc's sender did). Through asyncio's transport of its socket, which keeps
        what a full socket cannot take yet (bounded by the queue) instead of dropping it:
        a source that cannot make keyframes would leave the joiner frozen otherwise. Its
        own packetiser: the others' picture IDs go on without a gap."""
        packer = compat.replay_packer(self.codec, self.encoder, len(queued))
        sock = player.sock
        player.sock = Buffered(sock, transport)
        try:
            for packet in queued:
                self._forward(packet, (player,), (layout,), packer)
        except Exception:
            logger.exception("fast path: replaying a joiner's queue failed; it waits for "
                             "a keyframe")
            player.unsync()
        finally:
            player.sock = sock

    def remove(self, subscriber: SubscriberTrack) -> None:
        player = self._players.pop(subscriber, None)
        if player is None:
            return
        self._order = tuple(self._players.values())
        compat.answer_retransmits(player.sender, None)
        player.layout.users -= 1
        if not player.layout.users:
            self._layouts = {k: v for k, v in self._layouts.items() if v.users}

    def forward(self, packet: EncodedPacket, players: list[FastPlayer]) -> None:
        """Send one frame to ``players`` (those whose gate admitted it). A frame the
        packetiser or a layout cannot take raises (the caller skips it); a player's own
        failure drops that player."""
        if players:
            self._forward(packet, players, self._layouts.values(), self.encoder)

    def _forward(self, packet: EncodedPacket, players: Sequence[FastPlayer],
                 layouts: Any, packer: Any) -> None:
        payloads, timestamp = packer.pack(packet)
        if not payloads:
            return
        ntp = compat.fast_ntp_time()
        abs_send_time = (ntp >> 14) & 0x00FFFFFF
        for layout in layouts:
            layout.build(payloads, abs_send_time)
        payload_bytes = sum(map(len, payloads))
        size = packet.size
        gone = []
        for player in players:
            try:
                if not player.send(self._buffer, timestamp, ntp, payload_bytes, size):
                    gone.append(player)
            except Exception:  # a bug here must not end the broadcast for everyone
                logger.exception("fast path: sending to a player failed; it is dropped")
                gone.append(player)
        for player in gone:
            self.remove(player.subscriber)
            player.subscriber.stop()
