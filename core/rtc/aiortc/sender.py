"""What hookcast needs of aiortc's RTCRtpSender: keyframe requests heard, a codec forced,
and, for the dedicated forwarding path (hookcast.rtc.fastpath), everything needed to send
as the sender would without it: its parameters and path (SSRCs, payload types, MID,
header extensions, the SRTP session, the nominated ICE pair's socket), its sender-report
counters kept, its NACKs answered elsewhere; a VP8 packetiser's picture IDs; a cheaper
NTP clock for its abs-send-time.
"""

from __future__ import annotations

import asyncio
import asyncio.trsock
import logging
import socket
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiortc
import aiortc.clock
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpSendParameters
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtcrtptransceiver import RTCRtpTransceiver

logger = logging.getLogger(__name__)

_NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
_STOCK_NTP_TIME = aiortc.clock.current_ntp_time


def fast_ntp_time() -> int:
    """aiortc.clock.current_ntp_time without datetime arithmetic (same value, 64-bit NTP).

    RTCRtpSender stamps every packet it sends with abs-send-time from this clock; the
    stock version builds two datetimes per packet, 8-9 % of a relay's CPU (py-spy).
    """
    now = time.time()
    seconds = int(now)
    return ((seconds + _NTP_EPOCH_OFFSET) << 32) | int((now - seconds) * 4294967296)


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call `callback()` whenever the remote peer asks `sender` for a keyframe.

    Fires on RTCP PLI and FIR (RTCRtpSender._handle_rtcp_packet), on the event loop,
    after aiortc's own handling (which only affects frames it encodes itself). The
    callback must not block; an exception from it is logged and swallowed so that it
    cannot break aiortc's RTCP handling. Each call adds a callback to that sender.
    """
    previous = sender._send_keyframe

    def send_keyframe() -> None:
        previous()
        try:
            callback()
        except Exception:
            logger.exception("keyframe-request callback %r failed", callback)

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]


def force_codec(transceiver: RTCRtpTransceiver, mime: str) -> None:
    """Restrict `transceiver` to codec `mime` (e.g. "video/VP8") plus RTX, if video.

    Uses the public setCodecPreferences; call it before the offer or answer is made.
    Every aiortc capability of that MIME type is kept (aiortc offers H.264 as 42001f
    and 42e01f, both Constrained Baseline). Raises ValueError if aiortc lacks it.
    """
    kind = mime.split("/")[0].lower()
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for c in capabilities if c.mimeType.lower() == mime.lower()]
    if not chosen:
        offered = sorted({c.mimeType for c in capabilities})
        raise ValueError(f"aiortc cannot send {mime}; it offers {offered}")
    rtx = [c for c in capabilities if c.mimeType.lower() == f"{kind}/rtx"]
    transceiver.setCodecPreferences(chosen + rtx)


# --- what a dedicated forwarding path needs of a sender ------------------------------


_Socket = socket.socket  # SenderPath has a field named socket


@dataclass(frozen=True)
class SenderPath:
    """Everything needed to send RTP as ``sender`` would, without it: its SSRCs, payload
    types, codec, MID, header extension ids and map, the SRTP session DTLS made, and the
    UDP socket and address of the nominated ICE pair (``sock`` is that socket itself,
    shared with ICE consent checks: send with an address, never connect it)."""

    ssrc: int
    rtx_ssrc: int
    payload_type: int
    rtx_payload_type: int | None
    mid: str | None
    extension_ids: dict[str, int]
    srtp: Any  # pylibsrtp.Session (protect)
    socket: asyncio.DatagramTransport
    remote: tuple[str, int]
    sock: _Socket
    codec: RTCRtpCodecParameters
    extensions_map: Any  # aiortc.rtp.HeaderExtensionsMap: serialises this sender's headers


_SEND_PARAMETERS: weakref.WeakKeyDictionary[RTCRtpSender, RTCRtpSendParameters] = (
    weakref.WeakKeyDictionary())


def remember_parameters(sender: RTCRtpSender,
                        started: Callable[[RTCRtpSender], None] | None = None) -> None:
    """Keep the parameters ``sender`` is started with (its payload type lives nowhere
    else once the RTP loop runs), and call ``started(sender)`` once it has started:
    aiortc starts senders once DTLS is connected, so sender_path() is known then.
    Call before the answer is applied."""
    start = sender.send

    async def send(parameters: RTCRtpSendParameters) -> None:
        _SEND_PARAMETERS[sender] = parameters
        await start(parameters)
        if started is not None:
            try:
                started(sender)
            except Exception:
                logger.exception("sender start callback %r failed", started)

    sender.send = send  # type: ignore[method-assign]


def sender_path(sender: RTCRtpSender) -> SenderPath | None:
    """The path of a connected sender, or None: not connected yet, DTLS not done, the
    parameters not remembered, or a pair a plain UDP send cannot serve (TURN, TCP)."""
    dtls = sender.transport
    parameters = _SEND_PARAMETERS.get(sender)
    if dtls is None or dtls.state != "connected" or dtls._tx_srtp is None or not parameters:
        return None
    pair = dtls.transport._connection._nominated.get(1)
    if pair is None or pair.local_candidate.type == "relay":
        return None
    transport = getattr(pair.protocol, "transport", None)
    if not isinstance(transport, asyncio.DatagramTransport):
        return None
    sock = getattr(transport.get_extra_info("socket"), "_sock", None)
    if not isinstance(sock, socket.socket) or sock.type != socket.SOCK_DGRAM:
        return None
    extensions_map = sender._RTCRtpSender__rtp_header_extensions_map  # type: ignore[attr-defined]
    ids = extensions_map._HeaderExtensionsMap__ids
    extension_ids = {name: value for name, value in vars(ids).items()
                     if isinstance(value, int) and value}
    return SenderPath(
        ssrc=sender._ssrc, rtx_ssrc=sender._rtx_ssrc,
        payload_type=parameters.codecs[0].payloadType or 0,
        rtx_payload_type=sender._RTCRtpSender__rtx_payload_type,  # type: ignore[attr-defined]
        mid=sender._RTCRtpSender__mid,  # type: ignore[attr-defined]
        extension_ids=extension_ids, srtp=dtls._tx_srtp, socket=transport,
        remote=pair.remote_addr, sock=sock, codec=parameters.codecs[0],
        extensions_map=extensions_map,
    )


def count_sent(sender: RTCRtpSender, packets: int, payload_bytes: int,
               rtp_timestamp: int, ntp_timestamp: int | None = None) -> None:
    """What was sent for ``sender`` outside it: its sender reports (packet and octet
    counts, the NTP/RTP pair) and getStats stay right. ``ntp_timestamp`` (64-bit NTP)
    defaults to now."""
    sender._RTCRtpSender__packet_count += packets  # type: ignore[attr-defined]
    sender._RTCRtpSender__octet_count += payload_bytes  # type: ignore[attr-defined]
    sender._RTCRtpSender__ntp_timestamp = (  # type: ignore[attr-defined]
        aiortc.clock.current_ntp_time() if ntp_timestamp is None else ntp_timestamp)
    sender._RTCRtpSender__rtp_timestamp = rtp_timestamp  # type: ignore[attr-defined]


#: senders whose NACKs something other than their own history answers (weakly: the
#: answer belongs to an object that refers to the sender)
_ANSWERS: weakref.WeakKeyDictionary[
    RTCRtpSender, Callable[[], Callable[[int], None] | None]] = weakref.WeakKeyDictionary()
_RETRANSMIT_WRAPPED: weakref.WeakSet[RTCRtpSender] = weakref.WeakSet()
_RETRANSMIT_CALLBACKS: weakref.WeakKeyDictionary[RTCRtpSender, list[Callable[[], None]]] = (
    weakref.WeakKeyDictionary())


def _wrap_retransmit(sender: RTCRtpSender) -> None:
    if sender in _RETRANSMIT_WRAPPED:
        return
    _RETRANSMIT_WRAPPED.add(sender)
    stock = sender._retransmit

    async def retransmit(sequence_number: int) -> None:
        for callback in _RETRANSMIT_CALLBACKS.get(sender, ()):
            callback()
        reference = _ANSWERS.get(sender)
        answer = reference() if reference is not None else None
        if answer is None:
            await stock(sequence_number)
            return
        try:
            answer(sequence_number)
        except Exception:
            logger.exception("retransmission of %d failed", sequence_number)

    sender._retransmit = retransmit  # type: ignore[method-assign]


def on_retransmit(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback()`` each time the remote peer NACKs a packet ``sender`` sent."""
    _wrap_retransmit(sender)
    _RETRANSMIT_CALLBACKS.setdefault(sender, []).append(callback)


def answer_retransmits(sender: RTCRtpSender, answer: Callable[[int], None] | None) -> None:
    """From now on the remote peer's NACKs of ``sender`` go to ``answer(sequence_number)``
    (a bound method, synchronous, on the loop; held weakly) instead of the sender's own
    history; None, or once the answer's object is gone: back to it."""
    _wrap_retransmit(sender)
    if answer is None:
        _ANSWERS.pop(sender, None)
    else:
        try:
            _ANSWERS[sender] = weakref.WeakMethod(answer)
        except TypeError:  # not a bound Python method: held strongly
            _ANSWERS[sender] = lambda: answer


def replay_packer(codec: RTCRtpCodecParameters, shared: Any, frames: int) -> Any:
    """A packetiser for ``frames`` frames replayed to one player before it joins those
    packed by ``shared``: a VP8 one numbers them so that its last picture ID is the one
    just before ``shared``'s next (a receiver that tracks picture IDs, as libwebrtc does,
    sees no gap when the player goes on with ``shared``'s frames; the others never see
    the replayed ones). aiortc's Vp8Encoder keeps that counter in ``picture_id``."""
    packer = get_encoder(codec)
    following = getattr(shared, "picture_id", None)
    if isinstance(following, int) and hasattr(packer, "picture_id"):
        packer.picture_id = (following - frames) % (1 << 15)
    return packer
