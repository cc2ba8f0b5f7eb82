"""hookcast's media relay on aiortc: encoded frames in, the same frames out, no re-encoding.

Importing this package checks the installed aiortc (hookcast.rtc.aiortc.check_compat) and
raises AiortcCompatError if an internal the relay relies on has changed.
"""

from __future__ import annotations

from hookcast.rtc.aiortc import (
    AiortcCompatError,
    check_compat,
    force_codec,
    install,
    is_installed,
    on_keyframe_request,
    request_keyframe,
    uninstall,
)
from hookcast.rtc.jitter import RelayJitterBuffer
from hookcast.rtc.keyframes import KeyframeController
from hookcast.rtc.packets import FrameMeta, copy_packet, meta_of
from hookcast.rtc.relay import PublishedTrack, SubscriberTrack

__all__ = [
    "AiortcCompatError",
    "FrameMeta",
    "KeyframeController",
    "PublishedTrack",
    "RelayJitterBuffer",
    "SubscriberTrack",
    "check_compat",
    "copy_packet",
    "force_codec",
    "install",
    "is_installed",
    "meta_of",
    "on_keyframe_request",
    "request_keyframe",
    "uninstall",
]
