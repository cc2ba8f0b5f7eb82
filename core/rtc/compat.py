"""The one place hookcast touches aiortc internals; checked against aiortc at import.

aiortc has no public API for forwarding encoded media. This module bends it, in the
ways below (each checked by tests/core/rtc/test_rtc_compat.py), and nothing else may:

  * install() swaps two module globals of aiortc.rtcrtpreceiver, process-wide:
      - get_decoder -> PassthroughDecoder, so every RemoteStreamTrack yields av.Packet
        (one encoded frame each, see hookcast.rtc.packets.FrameMeta) instead of decoded frames;
      - JitterBuffer -> hookcast.rtc.jitter.RelayJitterBuffer, which never emits a partial
        video frame and bounds how long a lost packet stalls output.
  * on_keyframe_request() wraps RTCRtpSender._send_keyframe on one sender instance;
  * request_keyframe() calls RTCRtpReceiver._send_rtcp_pli;
  * for the dedicated forwarding path (hookcast.rtc.fastpath): remember_parameters()
    wraps RTCRtpSender.send on one instance, sender_path() reads a connected sender's
    SSRCs, payload types, MID, header extension map, its DTLS transport's SRTP session
    and the nominated ICE pair's socket (asyncio's TransportSocket._sock), count_sent()
    keeps its sender-report counters, answer_retransmits() takes over its NACK answers,
    replay_packer() sets a VP8 packetiser's next picture ID;
    ProtectBuffer calls libsrtp's srtp_protect through pylibsrtp's binding, in place, into
    one reusable buffer (pylibsrtp's Session.protect allocates and copies per packet).

check_compat() runs at import and raises AiortcCompatError (an ImportError) naming
every internal that changed, so an aiortc upgrade fails loudly at start, not silently
in production. force_codec() uses public API only and lives here for the callers' sake.
"""

from __future__ import annotations

import asyncio
import asyncio.trsock
import importlib.metadata
import inspect
import logging
import socket
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aioice.ice
import aiortc
import aiortc.clock
from aiortc import jitterbuffer, rtcrtpreceiver
from aiortc.codecs import get_encoder, vpx
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpSendParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from pylibsrtp import Session as SrtpSession
from pylibsrtp._binding import ffi as _srtp_ffi
from pylibsrtp._binding import lib as _srtp_lib

from hookcast.rtc.jitter import RelayJitterBuffer
from hookcast.rtc.packets import EncodedPacket, make_packet

logger = logging.getLogger(__name__)

TESTED_AIORTC_VERSIONS = frozenset({"1.16.0"})
TESTED_PYLIBSRTP_VERSIONS = frozenset({"1.0.0"})
#: RTCRtpSender's private (name-mangled) fields a forwarding path keeps current
_SENDER_PRIVATES = ("_ssrc", "_rtx_ssrc", "_RTCRtpSender__octet_count",
                    "_RTCRtpSender__packet_count", "_RTCRtpSender__ntp_timestamp",
                    "_RTCRtpSender__rtp_timestamp", "_RTCRtpSender__rtp_header_extensions_map",
                    "_RTCRtpSender__rtx_payload_type", "_RTCRtpSender__mid")
_JITTER_BUFFER_PARAMS = ["self", "capacity", "prefetch", "is_video"]
_RECEIVER_MODULE: Any = rtcrtpreceiver  # install() swaps two of its globals
_STOCK_GET_DECODER = _RECEIVER_MODULE.get_decoder
_STOCK_JITTER_BUFFER = _RECEIVER_MODULE.JitterBuffer


class AiortcCompatError(ImportError):
    """The installed aiortc differs from what hookcast.rtc.compat was written against."""


def _names_used(function: Any) -> tuple[str, ...]:
    code = getattr(function, "__code__", None)
    return code.co_names if code is not None else ()


def _internal_checks() -> list[tuple[bool, str]]:
    """(holds, what it means) for every internal this module relies on."""
    jitter_params = list(inspect.signature(jitterbuffer.JitterBuffer.__init__).parameters)
    return [
        (
            "get_decoder" in _names_used(rtcrtpreceiver.decoder_worker),
            "aiortc.rtcrtpreceiver.decoder_worker no longer looks up get_decoder",
        ),
        (
            "decode" in _names_used(rtcrtpreceiver.decoder_worker),
            "aiortc.rtcrtpreceiver.decoder_worker no longer calls decoder.decode()",
        ),
        (
            "JitterBuffer" in _names_used(RTCRtpReceiver.__init__),
            "RTCRtpReceiver.__init__ no longer creates its JitterBuffer by global name",
        ),
        (
            "_data" in _names_used(RTCRtpReceiver._handle_rtp_packet),
            "RTCRtpReceiver._handle_rtp_packet no longer stores depayloaded bytes in ._data",
        ),
        (
            jitter_params == _JITTER_BUFFER_PARAMS,
            f"JitterBuffer.__init__ takes {jitter_params}, expected {_JITTER_BUFFER_PARAMS}",
        ),
        (
            "_send_keyframe" in _names_used(RTCRtpSender._handle_rtcp_packet),
            "RTCRtpSender._handle_rtcp_packet no longer calls self._send_keyframe()",
        ),
        (
            callable(getattr(RTCRtpReceiver, "_send_rtcp_pli", None)),
            "RTCRtpReceiver._send_rtcp_pli is gone",
        ),
        (
            "_send_rtcp_nack" in _names_used(RTCRtpReceiver._handle_rtp_packet),
            "RTCRtpReceiver._handle_rtp_packet no longer calls self._send_rtcp_nack()",
        ),
        (
            "_retransmit" in _names_used(RTCRtpSender._handle_rtcp_packet),
            "RTCRtpSender._handle_rtcp_packet no longer calls self._retransmit()",
        ),
        (
            "current_ntp_time" in _names_used(RTCRtpSender._run_rtp)
            and callable(getattr(aiortc.clock, "current_ntp_time", None)),
            "RTCRtpSender._run_rtp no longer calls aiortc.clock.current_ntp_time()",
        ),
        (
            "get_host_addresses" in _names_used(aioice.ice.Connection.gather_candidates),
            "aioice Connection.gather_candidates no longer calls get_host_addresses",
        ),
        # what a dedicated forwarding path reads of a sender (sender_path, count_sent)
        (
            all(name in _names_used(RTCRtpSender.__init__) for name in _SENDER_PRIVATES),
            "RTCRtpSender.__init__ no longer sets " + ", ".join(_SENDER_PRIVATES),
        ),
        (
            "_tx_srtp" in _names_used(RTCDtlsTransport._send_rtp),
            "RTCDtlsTransport._send_rtp no longer protects with self._tx_srtp",
        ),
        (
            "_nominated" in _names_used(aioice.ice.Connection.sendto),
            "aioice Connection.sendto no longer sends on self._nominated",
        ),
        (
            "_connection" in _names_used(RTCIceTransport.__init__)
            and "sendto" in _names_used(aioice.ice.Connection.send),
            "RTCIceTransport no longer sends through its aioice Connection's sendto",
        ),
        (
            "_srtp" in _names_used(SrtpSession.__init__)
            and "srtp_protect" in _names_used(SrtpSession.protect)
            and callable(getattr(_srtp_lib, "srtp_protect", None)),
            "pylibsrtp's Session no longer keeps its srtp_t in ._srtp for lib.srtp_protect",
        ),
        (
            "picture_id" in _names_used(vpx.Vp8Encoder.__init__)
            and "picture_id" in _names_used(vpx.Vp8Encoder.pack),
            "aiortc's Vp8Encoder no longer numbers pictures in .picture_id",
        ),
        (
            "_sock" in _names_used(asyncio.trsock.TransportSocket.__init__),
            "asyncio's TransportSocket no longer keeps its socket in ._sock",
        ),
        (
            "_retransmit" in _names_used(RTCRtpSender._handle_rtcp_packet)
            and "_RTCRtpSender__rtp_history" in _names_used(RTCRtpSender._retransmit),
            "RTCRtpSender._retransmit no longer answers from its own history",
        ),
    ]


def compat_problems() -> list[str]:
    """Every difference between the installed aiortc and the tested one; [] if none."""
    version = getattr(aiortc, "__version__", "unknown")
    problems = []
    if version not in TESTED_AIORTC_VERSIONS:
        tested = ", ".join(sorted(TESTED_AIORTC_VERSIONS))
        problems.append(f"aiortc {version} is not a tested version (tested: {tested})")
    srtp_version = importlib.metadata.version("pylibsrtp")
    if srtp_version not in TESTED_PYLIBSRTP_VERSIONS:
        tested = ", ".join(sorted(TESTED_PYLIBSRTP_VERSIONS))
        problems.append(f"pylibsrtp {srtp_version} is not a tested version (tested: {tested})")
    problems += [message for holds, message in _internal_checks() if not holds]
    return problems


def check_compat() -> None:
    """Raise AiortcCompatError listing every problem found by compat_problems()."""
    problems = compat_problems()
    if problems:
        raise AiortcCompatError(
            "hookcast's relay cannot use this aiortc: "
            + "; ".join(problems)
            + ". Pin aiortc==1.16.0 and pylibsrtp==1.0.0 or update hookcast/rtc/compat.py."
        )


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


async def request_keyframe(receiver: RTCRtpReceiver) -> int:
    """Send an RTCP PLI for every SSRC `receiver` heard in the last 10 s.

    Returns the number of PLIs sent: 0 before any media arrived (no SSRC known yet) or
    before the transport is up. RTX SSRCs are included; a PLI for them is ignored.
    """
    sources = receiver.getSynchronizationSources()
    for source in sources:
        await receiver._send_rtcp_pli(source.source)
    return len(sources)


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


check_compat()


# --- ICE host addresses (aioice) -----------------------------------------------------

_STOCK_HOST_ADDRESSES = aioice.ice.get_host_addresses


def use_host_addresses(address: str | None) -> None:
    """Gather ICE host candidates on ``address`` only (the ``ip`` property), or on every
    host address again with None. Process-wide: patches ``aioice.ice.get_host_addresses``,
    which skips 127.0.0.1 on its own and has no per-connection setting.
    """
    if address:
        def only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            return [address]

        aioice.ice.get_host_addresses = only
    else:
        aioice.ice.get_host_addresses = _STOCK_HOST_ADDRESSES


def media_addresses() -> list[str]:
    """The addresses ICE gathers host candidates on now (aioice's defaults: IPv4 and
    IPv6, global scope), as ``use_host_addresses`` left them."""
    return list(aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True))


# --- NACK counters (for /stream/metrics) ---------------------------------------------


def on_nack_sent(receiver: RTCRtpReceiver, callback: Callable[[int], None]) -> None:
    """Call ``callback(lost)`` each time ``receiver`` asks its sender to retransmit."""
    previous = receiver._send_rtcp_nack

    async def send_nack(media_ssrc: int, lost: list[int]) -> None:
        callback(len(lost))
        await previous(media_ssrc, lost)

    receiver._send_rtcp_nack = send_nack  # type: ignore[method-assign]


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


class SrtpError(Exception):
    """libsrtp refused to protect a packet (its status code is the argument)."""


class ProtectBuffer:
    """A reusable buffer packets are SRTP-protected in, in place, one after the other:
    copy a packet in at ``offset`` (``view[offset:offset + n] = packet``), rewrite what
    differs per player there, ``protect(srtp_handle(session), offset, n)`` returns its
    protected length; then send ``view[start:end]``. Sends copy, so the buffer is reused
    for the next player at once. ``size`` bounds what one batch may hold (trailers
    included). Event-loop thread only, like the sessions."""

    def __init__(self, size: int) -> None:
        self._cdata = _srtp_ffi.new("char[]", size)
        self.view = memoryview(_srtp_ffi.buffer(self._cdata))
        self._length = _srtp_ffi.new("int *")

    def protect(self, handle: Any, offset: int, length: int) -> int:
        self._length[0] = length
        status = _srtp_lib.srtp_protect(handle, self._cdata + offset, self._length)
        if status:
            raise SrtpError(status)
        return int(self._length[0])


def srtp_handle(session: SrtpSession) -> Any:
    """The libsrtp session (srtp_t) behind a pylibsrtp Session, for ProtectBuffer."""
    return session._srtp[0]


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
