"""SRTP in place: libsrtp's srtp_protect through pylibsrtp's binding, into one reusable
buffer (pylibsrtp's Session.protect allocates and copies twice per packet)."""

from __future__ import annotations

from typing import Any

from pylibsrtp import Session as SrtpSession
from pylibsrtp._binding import ffi as _srtp_ffi
from pylibsrtp._binding import lib as _srtp_lib


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


