r"""A publisher's receive path on the event loop: no decoder thread, no unbounded queue.

aiortc receives media like this, for every datagram:

    asyncio reads it -> aioice's StunProtocol tries to parse it as STUN (a ValueError per
    RTP packet) -> aioice's unbounded queue -> the DTLS transport's task wakes, unprotects,
    parses -> RTCRtpReceiver._handle_rtp_packet (a timestamp as a datetime, REMB, NACK,
    jitter buffer) -> each frame to a queue.Queue -> the decoder thread -> back to the
    loop (call_soon_threadsafe) -> the track's queue -> a task reading it.

Here, for a publisher's leg, the datagram is handled where asyncio hands it over:

    asyncio reads it -> LeanIngress: SRTP unprotect, RTP parse, route to the kind's
    LeanReceiver -> REMB estimate, receiver statistics (for receiver reports), RTX
    unwrap, NACK, depayload, RelayJitterBuffer -> each complete frame, as an av.Packet
    with its FrameMeta (hookcast.rtc.packets.make_packet), to ``on_frame`` at once.

Everything else stays aiortc's: STUN (ICE checks and consent), DTLS, RTCP both ways
(the receiver's sender reports handling, its receiver reports every ~1 s from the same
statistics), NACK, PLI and REMB are sent through the receiver as it sends them. A
datagram that comes before DTLS is up, or that is not RTP, takes aiortc's own way.

What it reads and writes of aiortc's private state is named here and checked by
``checks.receiver_problems``.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import aiortc.clock
import pylibsrtp
from aiortc import clock, rtcrtpreceiver
from aiortc.codecs import depayload, is_rtx
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtpPacket,
    pack_remb_fci,
    unwrap_rtx,
)

from hookcast.rtc.aiortc.sender import _STOCK_NTP_TIME, fast_ntp_time
from hookcast.rtc.jitter import RelayJitterBuffer
from hookcast.rtc.packets import EncodedPacket, make_packet

#: milliseconds from the NTP epoch (1900) to the Unix one: aiortc's arrival clock
_NTP_MS = 2_208_988_800_000
#: seconds between two updates of a source's "last heard" datetime (getSynchronizationSources)
_SEEN_EVERY = 1.0
Frames = Callable[[EncodedPacket], None]


def _private(receiver: RTCRtpReceiver, name: str) -> Any:
    return getattr(receiver, f"_RTCRtpReceiver__{name}")


class WindowRate:
    """aiortc's RateCounter (the bitrate over the last ``window_ms``, which its bitrate
    estimator reads at every packet) with the same answers, kept as a queue of
    (arrival, size) instead of one bucket per millisecond swept at every packet."""

    __slots__ = ("_origin_ms", "_packets", "_scale", "_total", "_window_ms")

    def __init__(self, window_ms: int = 1000, scale: int = 8000) -> None:
        self._window_ms = window_ms
        self._scale = scale
        self.reset()

    def reset(self) -> None:
        self._packets: deque[tuple[int, int]] = deque()
        self._total = 0
        self._origin_ms: int | None = None

    def add(self, value: int, now_ms: int) -> None:
        if self._origin_ms is None:
            self._origin_ms = now_ms
        else:
            self._erase_old(now_ms)
        self._packets.append((now_ms, value))
        self._total += value

    def rate(self, now_ms: int) -> int | None:
        if self._origin_ms is None:
            return None
        self._erase_old(now_ms)
        active = now_ms - self._origin_ms + 1
        if self._packets and active > 1:
            return round(self._scale * self._total / active)
        return None

    def _erase_old(self, now_ms: int) -> None:
        oldest = now_ms - self._window_ms + 1
        if self._origin_ms is not None and self._origin_ms < oldest:
            self._origin_ms = oldest
        packets = self._packets
        while packets and packets[0][0] < oldest:
            self._total -= packets.popleft()[1]


class LeanReceiver:
    """The per-packet work of one aiortc RTCRtpReceiver (one kind), done synchronously.

    Built before the offer is answered; takes over the receiver's ``receive`` (no
    decoder thread is started) and ``_handle_rtp_packet`` (a packet that still comes
    aiortc's way is handled the same). It keeps the receiver's own NACK generator,
    bitrate estimator, timestamp mapper, codecs and statistics, so the receiver's RTCP
    (receiver reports, the LSR of sender reports, PLI and NACK sending) works as before.
    """

    def __init__(self, receiver: RTCRtpReceiver, kind: str, on_frame: Frames) -> None:
        self.receiver = receiver
        self.kind = kind
        self.on_frame = on_frame
        video = kind == "video"
        self.jitter = RelayJitterBuffer(capacity=512 if video else 16, is_video=video)
        self._codecs: dict[int, Any] = _private(receiver, "codecs")
        self._rtx: dict[int, int] = _private(receiver, "rtx_ssrc")
        self._streams: dict[int, StreamStatistics] = _private(receiver, "remote_streams")
        self._active: dict[int, Any] = _private(receiver, "active_ssrc")
        self._nacks = _private(receiver, "nack_generator")
        self._remb = _private(receiver, "remote_bitrate_estimator")
        if self._remb is not None:
            self._remb.incoming_bitrate = WindowRate()
        self._mapper = _private(receiver, "timestamp_mapper")
        self._seen: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: packets handled here; frames handed on
        self.packets = 0
        self.frames = 0
        receiver.receive = self.receive  # type: ignore[method-assign]
        receiver._handle_rtp_packet = self._handle_rtp_packet  # type: ignore[method-assign]

    async def receive(self, parameters: RTCRtpReceiveParameters) -> None:
        """RTCRtpReceiver.receive without its decoder thread: codecs, RTX map, routing
        and the RTCP task."""
        receiver = self.receiver
        if _private(receiver, "started"):
            return
        for codec in parameters.codecs:
            if codec.payloadType is not None:
                self._codecs[codec.payloadType] = codec
        for encoding in parameters.encodings:
            if encoding.rtx:
                self._rtx[encoding.rtx.ssrc] = encoding.ssrc
        receiver.transport._register_rtp_receiver(receiver, parameters)
        receiver._RTCRtpReceiver__rtcp_task = asyncio.ensure_future(  # type: ignore[attr-defined]
            receiver._run_rtcp())
        receiver._RTCRtpReceiver__started = True  # type: ignore[attr-defined]

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        self.handle(packet, arrival_time_ms)

    def handle(self, packet: RtpPacket, arrival_ms: int) -> None:
        """One RTP packet of this receiver, on the loop; never blocks, never awaits."""
        receiver = self.receiver
        if not receiver._enabled:
            return
        self.packets += 1
        ssrc = packet.ssrc
        if self._remb is not None and packet.extensions.abs_send_time is not None:
            remb = self._remb.add(abs_send_time=packet.extensions.abs_send_time,
                                  arrival_time_ms=arrival_ms,
                                  payload_size=len(packet.payload) + packet.padding_size,
                                  ssrc=ssrc)
            rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
            if remb is not None and rtcp_ssrc is not None:
                self._rtcp(receiver._send_rtcp(RtcpPsfbPacket(
                    fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0,
                    fci=pack_remb_fci(*remb))))
        self._heard(ssrc)
        codec = self._codecs.get(packet.payload_type)
        if codec is None:
            return
        stats = self._streams.get(ssrc)
        if stats is None:
            stats = self._streams[ssrc] = StreamStatistics(codec.clockRate)
        stats.add(packet)
        if is_rtx(codec):
            original = self._rtx.get(ssrc)
            apt = codec.parameters.get("apt")
            if original is None or len(packet.payload) < 2 or not isinstance(apt, int) \
                    or apt not in self._codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original)
            codec = self._codecs[apt]
        if self._nacks is not None and self._nacks.add(packet):
            self._rtcp(receiver._send_rtcp_nack(packet.ssrc, sorted(self._nacks.missing)))
        try:
            packet._data = depayload(codec, packet.payload) if packet.payload else b""  # type: ignore[attr-defined]
        except ValueError:
            return
        pli, frame = self.jitter.add(packet)
        if pli:
            self._rtcp(receiver._send_rtcp_pli(packet.ssrc))
        if frame is not None and frame.data:
            self.frames += 1
            self.on_frame(make_packet(codec.mimeType.lower(), codec.clockRate, frame.data,
                                      self._mapper.map(frame.timestamp),
                                      complete=frame.complete, arrival=frame.arrival))

    def _heard(self, ssrc: int) -> None:
        """Keep getSynchronizationSources current (a datetime once a second, not per packet)."""
        now = time.monotonic()
        if now - self._seen.get(ssrc, -_SEEN_EVERY) >= _SEEN_EVERY:
            self._seen[ssrc] = now
            self._active[ssrc] = clock.current_datetime()

    def _rtcp(self, sending: Any) -> None:
        """Send an RTCP packet (NACK, PLI, REMB: a few a second) in the background."""
        task = asyncio.ensure_future(sending)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class LeanIngress:
    """Takes a DTLS transport's SRTP-protected RTP where asyncio hands each datagram to
    aioice, and gives it to the LeanReceiver of its kind; everything else (STUN, DTLS,
    RTCP, RTP before DTLS is up) goes aioice's and aiortc's own way.

    Its owner (the publisher's leg) keeps it and ``close()``s it; the sockets' protocols
    hold it weakly, so nothing they are referenced from (a log record of aioice's) keeps
    a peer connection alive."""

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self.dtls = dtls
        self.receivers: dict[object, LeanReceiver] = {}
        #: datagrams SRTP refused (replays, a forged or damaged packet)
        self.refused = 0
        self._protocols = list(dtls.transport._connection._protocols)
        me = weakref.ref(self)
        for protocol in self._protocols:
            original = protocol.datagram_received

            def datagram_received(data: bytes, addr: tuple[Any, ...],
                                  original: Callable[[bytes, tuple[Any, ...]], None] = original,
                                  ) -> None:
                ingress = me()
                if ingress is not None and len(data) > 12 and 127 < data[0] < 192 \
                        and not 191 < data[1] < 209 and ingress.dtls._rx_srtp is not None:
                    ingress.rtp(data)
                else:
                    original(data, addr)

            protocol.datagram_received = datagram_received  # type: ignore[method-assign,assignment]

    def add(self, lean: LeanReceiver) -> None:
        self.receivers[lean.receiver] = lean

    def close(self) -> None:
        """Give the sockets back to aioice's own handling (idempotent)."""
        for protocol in self._protocols:
            protocol.__dict__.pop("datagram_received", None)
        self._protocols = []
        self.receivers.clear()

    def rtp(self, data: bytes) -> None:
        dtls = self.dtls
        arrival_ms = int(time.time() * 1000) + _NTP_MS
        try:
            data = dtls._rx_srtp.unprotect(data)
        except pylibsrtp.Error:
            self.refused += 1
            return
        try:
            packet = RtpPacket.parse(data, dtls._rtp_header_extensions_map)
        except ValueError:
            return
        receiver = dtls._rtp_router.route_rtp(packet)
        lean = self.receivers.get(receiver) if receiver is not None else None
        if lean is not None:
            lean.handle(packet, arrival_ms)


def take_over(receivers: list[LeanReceiver]) -> list[LeanIngress]:
    """Once the answer is made (transports are final, bundled or not): one ingress per
    DTLS transport the receivers use."""
    ingresses: dict[RTCDtlsTransport, LeanIngress] = {}
    for lean in receivers:
        dtls = lean.receiver.transport
        ingress = ingresses.get(dtls)
        if ingress is None:
            ingress = ingresses[dtls] = LeanIngress(dtls)
        ingress.add(lean)
    return list(ingresses.values())


# --- aiortc's own receive path, passing frames through (relay_lean_receive=false, pulls)


_RECEIVER_MODULE: Any = rtcrtpreceiver  # install() swaps two of its globals
_STOCK_GET_DECODER = _RECEIVER_MODULE.get_decoder
_STOCK_JITTER_BUFFER = _RECEIVER_MODULE.JitterBuffer


class PassthroughDecoder:
    """Stands in for aiortc's Decoder (codecs/base.py): yields the frame, not pictures.

    decode() runs on aiortc's decoder thread and never raises: it returns exactly one
    av.Packet per frame (none for an empty frame), built by hookcast.rtc.packets.make_packet
    with pts = dts = the frame's rebased RTP timestamp and time_base = 1/clock rate. The
    frame's `complete` and `arrival` attributes (set by RelayJitterBuffer) go into its
    FrameMeta; frames from another jitter buffer count as complete, arriving now.
    """

    def __init__(self, codec: RTCRtpCodecParameters) -> None:
        self.mime = codec.mimeType.lower()
        self.clock_rate = codec.clockRate

    def decode(self, encoded_frame: Any) -> list[EncodedPacket]:
        if not encoded_frame.data:
            return []
        return [
            make_packet(
                self.mime,
                self.clock_rate,
                encoded_frame.data,
                encoded_frame.timestamp,
                complete=getattr(encoded_frame, "complete", True),
                arrival=getattr(encoded_frame, "arrival", None),
            )
        ]


def passthrough_get_decoder(codec: RTCRtpCodecParameters) -> PassthroughDecoder:
    """Replacement for aiortc.rtcrtpreceiver.get_decoder."""
    return PassthroughDecoder(codec)


def install() -> None:
    """Make every aiortc receiver in this process relay encoded frames. Idempotent.

    Affects receivers created (JitterBuffer) and decoder threads that start decoding
    (get_decoder) after the call, so call it before creating any RTCPeerConnection.
    Every RemoteStreamTrack then yields av.Packet with FrameMeta in `.opaque`, and
    every sender stamps packets with fast_ntp_time.
    """
    _RECEIVER_MODULE.get_decoder = passthrough_get_decoder
    _RECEIVER_MODULE.JitterBuffer = RelayJitterBuffer
    aiortc.clock.current_ntp_time = fast_ntp_time


def uninstall() -> None:
    """Restore aiortc's own decoder lookup and jitter buffer. Idempotent."""
    _RECEIVER_MODULE.get_decoder = _STOCK_GET_DECODER
    _RECEIVER_MODULE.JitterBuffer = _STOCK_JITTER_BUFFER
    aiortc.clock.current_ntp_time = _STOCK_NTP_TIME


def is_installed() -> bool:
    """True while install() is in effect."""
    return bool(_RECEIVER_MODULE.get_decoder is passthrough_get_decoder)


async def request_keyframe(receiver: RTCRtpReceiver) -> int:
    """Send an RTCP PLI for every SSRC `receiver` heard in the last 10 s.

    Returns the number of PLIs sent: 0 before any media arrived (no SSRC known yet) or
    before the transport is up. RTX SSRCs are included; a PLI for them is ignored.
    """
    sources = receiver.getSynchronizationSources()
    for source in sources:
        await receiver._send_rtcp_pli(source.source)
    return len(sources)



def on_nack_sent(receiver: RTCRtpReceiver, callback: Callable[[int], None]) -> None:
    """Call ``callback(lost)`` each time ``receiver`` asks its sender to retransmit."""
    previous = receiver._send_rtcp_nack

    async def send_nack(media_ssrc: int, lost: list[int]) -> None:
        callback(len(lost))
        await previous(media_ssrc, lost)

    receiver._send_rtcp_nack = send_nack  # type: ignore[method-assign]


