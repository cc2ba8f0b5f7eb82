"""What hookcast.rtc.aiortc relies on in aiortc, aioice and pylibsrtp, checked at import.

Every internal the package reads, wraps or replaces is listed here with what it means;
``check_compat()`` raises AiortcCompatError (an ImportError) naming each one that
changed, so an upgrade of aiortc fails loudly at start, never silently in production.
"""

from __future__ import annotations

import asyncio
import asyncio.trsock
import importlib.metadata
import inspect
from typing import Any

import aioice.ice
import aiortc
import aiortc.clock
from aiortc import jitterbuffer, rtcrtpreceiver
from aiortc.codecs import vpx
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from pylibsrtp import Session as SrtpSession
from pylibsrtp._binding import lib as _srtp_lib

TESTED_AIORTC_VERSIONS = frozenset({"1.16.0"})
TESTED_PYLIBSRTP_VERSIONS = frozenset({"1.0.0"})
#: RTCRtpSender's private (name-mangled) fields a forwarding path keeps current
_SENDER_PRIVATES = ("_ssrc", "_rtx_ssrc", "_RTCRtpSender__octet_count",
                    "_RTCRtpSender__packet_count", "_RTCRtpSender__ntp_timestamp",
                    "_RTCRtpSender__rtp_timestamp", "_RTCRtpSender__rtp_header_extensions_map",
                    "_RTCRtpSender__rtx_payload_type", "_RTCRtpSender__mid")
_JITTER_BUFFER_PARAMS = ["self", "capacity", "prefetch", "is_video"]


class AiortcCompatError(ImportError):
    """The installed aiortc differs from what hookcast.rtc.aiortc was written against."""


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
        (
            "check_incoming" in _names_used(aioice.ice.Connection.request_received)
            and "PRIORITY" in inspect.getsource(aioice.ice.Connection.check_incoming)
            and "_connection" in _names_used(aiortc.rtcicetransport.RTCIceGatherer.__init__),
            "aioice's Connection.request_received no longer calls check_incoming (reading "
            "PRIORITY), or RTCIceGatherer no longer keeps its aioice Connection",
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
    problems += receiver_problems()
    return problems


def check_compat() -> None:
    """Raise AiortcCompatError listing every problem found by compat_problems()."""
    problems = compat_problems()
    if problems:
        raise AiortcCompatError(
            "hookcast's relay cannot use this aiortc: "
            + "; ".join(problems)
            + ". Pin aiortc==1.16.0 and pylibsrtp==1.0.0 or update hookcast/rtc/aiortc/."
        )



def receiver_problems() -> list[str]:
    """What the receive path (hookcast.rtc.aiortc.receiver) reads of aiortc's receiver,
    DTLS transport and aioice that is not there any more."""
    from aiortc import rate
    from aiortc.rtcdtlstransport import RtpRouter

    names = _names_used(RTCRtpReceiver.__init__)
    privates = ("codecs", "rtx_ssrc", "remote_streams", "active_ssrc", "nack_generator",
                "remote_bitrate_estimator", "timestamp_mapper", "started", "rtcp_ssrc")
    checks = [
        (all(f"_RTCRtpReceiver__{p}" in names for p in privates),
         "RTCRtpReceiver.__init__ no longer sets " + ", ".join(privates)),
        ("_register_rtp_receiver" in _names_used(RTCRtpReceiver.receive)
         and "_RTCRtpReceiver__rtcp_task" in _names_used(RTCRtpReceiver.receive),
         "RTCRtpReceiver.receive no longer registers with its transport and starts its RTCP"),
        (all(callable(getattr(RTCRtpReceiver, m, None)) for m in
             ("_run_rtcp", "_send_rtcp", "_send_rtcp_nack", "_send_rtcp_pli")),
         "RTCRtpReceiver's _run_rtcp/_send_rtcp/_send_rtcp_nack/_send_rtcp_pli are gone"),
        (all(n in _names_used(RTCDtlsTransport._recv_next) for n in ("_rx_srtp",))
         and "_rtp_router" in _names_used(RTCDtlsTransport._handle_rtp_data)
         and "_rtp_header_extensions_map" in _names_used(RTCDtlsTransport._handle_rtp_data),
         "RTCDtlsTransport no longer unprotects with _rx_srtp and routes with _rtp_router"),
        (callable(getattr(RtpRouter, "route_rtp", None)), "RtpRouter.route_rtp is gone"),
        ("data_received" in _names_used(aioice.ice.StunProtocol.datagram_received)
         and "_protocols" in _names_used(aioice.ice.Connection.__init__),
         "aioice's StunProtocol/Connection no longer hand data over as hookcast expects"),
        ("incoming_bitrate" in _names_used(rate.RemoteBitrateEstimator.__init__),
         "aiortc's RemoteBitrateEstimator no longer keeps its rate in incoming_bitrate"),
    ]
    return [message for holds, message in checks if not holds]
