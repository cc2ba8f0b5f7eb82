"""What a failed pull or push attempt is called: one of a few fixed categories.

An entry's ``error`` is read by whoever can reach the REST port; the remote is whoever
the URI names. So the entry never quotes the remote (an SSH banner, an HTTP status or
body, a refusal's text): it says which of these went wrong —

``connection refused``, ``timed out``, ``host not found``, ``connection failed`` (any
other socket error), ``TLS certificate not trusted``, ``TLS handshake failed``,
``redirect not followed``, ``not a WCS WebSocket server`` (it answered, but not as one),
``connection closed by the remote``, ``media connection failed (ICE)``,
``refused by the remote`` (a refused session or stream), ``dropped by the remote`` (a
flowing stream failed there), ``local stream unavailable``, and ``failed`` (anything
else; the server's log says more).

A refusal or drop may name its reason when the remote's ``info`` is one of the WCS
constants in ``KNOWN_INFOS`` (``refused by the remote: Stream not found``); any other
text is left out. The remote's own words go to the server's log only (``detail``),
escaped and at the link's bounded rate.
"""

from __future__ import annotations

import errno
import socket
import ssl

import aiohttp

from hookcast import Info, SourceUnavailable, WcsClient, WcsError, printable

CONNECTION_REFUSED = "connection refused"
TIMED_OUT = "timed out"
HOST_NOT_FOUND = "host not found"
CONNECTION_FAILED = "connection failed"
TLS_UNTRUSTED = "TLS certificate not trusted"
TLS_FAILED = "TLS handshake failed"
REDIRECTED = "redirect not followed"
NOT_WCS = "not a WCS WebSocket server"
CLOSED = "connection closed by the remote"
ICE_FAILED = "media connection failed (ICE)"
REFUSED = "refused by the remote"
DROPPED = "dropped by the remote"
LOCAL_UNAVAILABLE = "local stream unavailable"
FAILED = "failed"

LOOP = "Loop detected"
#: the remote ``info`` strings an entry may repeat: WCS's own constants
KNOWN_INFOS = frozenset({
    *(value for name, value in vars(Info).items() if name.isupper()),
    "Restricted access", LOOP,
})


class RemoteEnded(Exception):
    """The remote failed or stopped the link's stream: its ``status`` and ``info`` as
    it sent them (``active``: after the stream flowed)."""

    def __init__(self, status: str, info: str, active: bool) -> None:
        super().__init__(f"remote {status}: {info or 'no info'}")
        self.status = status
        self.info = info
        self.active = active


def known_info(info: str) -> str:
    """The WCS constant ``info`` is or begins with (``<constant>: ...``), else ``""``."""
    head = info.split(":", 1)[0].strip()
    return head if head in KNOWN_INFOS else ""


def with_reason(category: str, info: str) -> str:
    known = known_info(info)
    return f"{category}: {known}" if known else category


def category(error: BaseException) -> str:
    """The category of a failed attempt (see the module docstring)."""
    if isinstance(error, RemoteEnded):
        return _ended(error)
    if isinstance(error, WcsError):  # connect refused, or the session closed first
        info = str(error)
        return CLOSED if info == WcsClient.CLOSED else with_reason(REFUSED, info)
    if isinstance(error, SourceUnavailable):
        return LOCAL_UNAVAILABLE
    if isinstance(error, TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
        return TIMED_OUT
    if isinstance(error, aiohttp.ClientError | OSError):
        return _network(error)
    return FAILED


def _ended(error: RemoteEnded) -> str:
    if error.info == WcsClient.CLOSED:
        return CLOSED
    if error.info == WcsClient.ICE_FAILED:
        return ICE_FAILED
    return with_reason(DROPPED if error.active else REFUSED, error.info)


def _network(error: BaseException) -> str:
    """The category of an aiohttp or socket error."""
    if isinstance(error, aiohttp.ClientConnectorCertificateError
                  | ssl.SSLCertVerificationError):
        return TLS_UNTRUSTED
    if isinstance(error, aiohttp.ClientSSLError | ssl.SSLError):
        return TLS_FAILED
    if isinstance(error, aiohttp.WSServerHandshakeError) and 300 <= error.status < 400:
        return REDIRECTED
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return CLOSED
    if isinstance(error, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return NOT_WCS
    if isinstance(error, aiohttp.ClientConnectorDNSError | socket.gaierror):
        return HOST_NOT_FOUND
    cause = error.os_error if isinstance(error, aiohttp.ClientConnectorError) else error
    code = getattr(cause, "errno", None)
    if isinstance(cause, ConnectionRefusedError) or code == errno.ECONNREFUSED:
        return CONNECTION_REFUSED
    if isinstance(cause, ConnectionResetError | BrokenPipeError) \
            or code in (errno.ECONNRESET, errno.EPIPE):
        return CLOSED
    return CONNECTION_FAILED


def detail(error: BaseException) -> str:
    """What the error says, for the server's log: its type and message, escaped."""
    return f"{type(error).__name__}: {printable(str(error), 300)}"
