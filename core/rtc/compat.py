"""The one place hookcast touches aiortc internals; checked against aiortc at import.

aiortc has no public API for forwarding encoded media. This module bends it, in the
ways below (each checked by tests/core/rtc/test_rtc_compat.py), and nothing else may:

  * install() swaps two module globals of aiortc.rtcrtpreceiver, process-wide:
      - get_decoder -> PassthroughDecoder, so every RemoteStreamTrack yields av.Packet
        (one encoded frame each, see hookcast.rtc.packets.FrameMeta) instead of decoded frames;
      - JitterBuffer -> hookcast.rtc.jitter.RelayJitterBuffer, which never emits a partial
        video frame and bounds how long a lost packet stalls output.
  * on_keyframe_request() wraps RTCRtpSender._send_keyframe on one sender instance;
  * request_keyframe() calls RTCRtpReceiver._send_rtcp_pli.

check_compat() runs at import and raises AiortcCompatError (an ImportError) naming
every internal that changed, so an aiortc upgrade fails loudly at start, not silently
in production. force_codec() uses public API only and lives here for the callers' sake.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

import aioice.ice
import aiortc
import aiortc.clock
from aiortc import jitterbuffer, rtcrtpreceiver
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtcrtptransceiver import RTCRtpTransceiver

from hookcast.rtc.jitter import RelayJitterBuffer
from hookcast.rtc.packets import EncodedPacket, make_packet

logger = logging.getLogger(__name__)

TESTED_AIORTC_VERSIONS = frozenset({"1.16.0"})
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
    ]


def compat_problems() -> list[str]:
    """Every difference between the installed aiortc and the tested one; [] if none."""
    version = getattr(aiortc, "__version__", "unknown")
    problems = []
    if version not in TESTED_AIORTC_VERSIONS:
        tested = ", ".join(sorted(TESTED_AIORTC_VERSIONS))
        problems.append(f"aiortc {version} is not a tested version (tested: {tested})")
    problems += [message for holds, message in _internal_checks() if not holds]
    return problems


def check_compat() -> None:
    """Raise AiortcCompatError listing every problem found by compat_problems()."""
    problems = compat_problems()
    if problems:
        raise AiortcCompatError(
            "hookcast's relay cannot use this aiortc: "
            + "; ".join(problems)
            + ". Pin aiortc==1.16.0 or update hookcast/rtc/compat.py."
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


# --- NACK counters (for /stream/metrics) ---------------------------------------------


def on_nack_sent(receiver: RTCRtpReceiver, callback: Callable[[int], None]) -> None:
    """Call ``callback(lost)`` each time ``receiver`` asks its sender to retransmit."""
    previous = receiver._send_rtcp_nack

    async def send_nack(media_ssrc: int, lost: list[int]) -> None:
        callback(len(lost))
        await previous(media_ssrc, lost)

    receiver._send_rtcp_nack = send_nack  # type: ignore[method-assign]


def on_retransmit(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback()`` each time the remote peer NACKs a packet ``sender`` sent."""
    previous = sender._retransmit

    async def retransmit(sequence_number: int) -> None:
        callback()
        await previous(sequence_number)

    sender._retransmit = retransmit  # type: ignore[method-assign]
