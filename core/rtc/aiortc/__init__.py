"""The one place hookcast touches aiortc, aioice and pylibsrtp internals; checked at import.

aiortc has no public API for forwarding encoded media. This package bends it, in the
ways below (each checked by tests/core/rtc/test_rtc_compat.py), and nothing else may:

  * ``receiver``: a publisher's receive path on the event loop (LeanReceiver,
    LeanIngress: per receiver and per DTLS transport, nothing process-wide);

  * ``receiver.install()`` swaps two module globals of aiortc.rtcrtpreceiver, process-wide,
    for what still takes aiortc's own receive path (relay_lean_receive=false, pulls, and
    the Python clients of the tests and benchmarks):
      - get_decoder -> PassthroughDecoder, so every RemoteStreamTrack yields av.Packet
        (one encoded frame each, see hookcast.rtc.packets.FrameMeta) instead of decoded frames;
      - JitterBuffer -> hookcast.rtc.jitter.RelayJitterBuffer, which never emits a partial
        video frame and bounds how long a lost packet stalls output.
  * ``sender``: on_keyframe_request() wraps RTCRtpSender._send_keyframe on one sender instance;
  * request_keyframe() calls RTCRtpReceiver._send_rtcp_pli;
  * for the dedicated forwarding path (hookcast.rtc.fastpath): remember_parameters()
    wraps RTCRtpSender.send on one instance, sender_path() reads a connected sender's
    SSRCs, payload types, MID, header extension map, its DTLS transport's SRTP session
    and the nominated ICE pair's socket (asyncio's TransportSocket._sock), count_sent()
    keeps its sender-report counters, answer_retransmits() takes over its NACK answers,
    replay_packer() sets a VP8 packetiser's next picture ID;
    ``srtp``: ProtectBuffer calls libsrtp's srtp_protect through pylibsrtp's binding, in place, into
    one reusable buffer (pylibsrtp's Session.protect allocates and copies per packet).

  * ``ice``: use_host_addresses() patches aioice's get_host_addresses (process-wide: aioice
    has no per-connection setting); tolerate_checks_without_priority() wraps one peer
    connection's aioice Connection.check_incoming (a check without PRIORITY would raise).

``checks.check_compat()`` runs at import and raises AiortcCompatError (an ImportError) naming
every internal that changed, so an aiortc upgrade fails loudly at start, not silently
in production. force_codec() uses public API only and lives here for the callers' sake.
"""

from hookcast.rtc.aiortc.checks import (
    TESTED_AIORTC_VERSIONS,
    TESTED_PYLIBSRTP_VERSIONS,
    AiortcCompatError,
    check_compat,
    compat_problems,
)

check_compat()

from hookcast.rtc.aiortc.ice import (  # noqa: E402
    media_addresses,
    tolerate_checks_without_priority,
    use_host_addresses,
)
from hookcast.rtc.aiortc.receiver import (  # noqa: E402
    LeanIngress,
    LeanReceiver,
    PassthroughDecoder,
    WindowRate,
    install,
    is_installed,
    on_nack_sent,
    passthrough_get_decoder,
    request_keyframe,
    take_over,
    uninstall,
)
from hookcast.rtc.aiortc.sender import (  # noqa: E402
    SenderPath,
    answer_retransmits,
    count_sent,
    fast_ntp_time,
    force_codec,
    on_keyframe_request,
    on_retransmit,
    remember_parameters,
    replay_packer,
    sender_path,
)
from hookcast.rtc.aiortc.srtp import ProtectBuffer, SrtpError, srtp_handle  # noqa: E402

__all__ = [
    "TESTED_AIORTC_VERSIONS",
    "TESTED_PYLIBSRTP_VERSIONS",
    "AiortcCompatError",
    "LeanIngress",
    "LeanReceiver",
    "PassthroughDecoder",
    "ProtectBuffer",
    "SenderPath",
    "SrtpError",
    "WindowRate",
    "answer_retransmits",
    "check_compat",
    "compat_problems",
    "count_sent",
    "fast_ntp_time",
    "force_codec",
    "install",
    "is_installed",
    "media_addresses",
    "on_keyframe_request",
    "on_nack_sent",
    "on_retransmit",
    "passthrough_get_decoder",
    "remember_parameters",
    "replay_packer",
    "request_keyframe",
    "sender_path",
    "srtp_handle",
    "take_over",
    "tolerate_checks_without_priority",
    "uninstall",
    "use_host_addresses",
]
