"""Which addresses ICE gathers host candidates on (aioice has no per-connection setting:
``get_host_addresses`` is a module function, skipping 127.0.0.1 on its own), and
connectivity checks without PRIORITY, taken per peer connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aioice.ice
from aioice import stun
from aioice.candidate import candidate_priority
from aiortc import RTCPeerConnection

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




def tolerate_checks_without_priority(pc: RTCPeerConnection) -> None:
    """A connectivity check without PRIORITY (RFC 8445 requires one; older FFmpeg WHIP
    muxers send none) from an address the offer did not list raises KeyError in aioice's
    peer-reflexive path (``Connection.check_incoming``), and that client never connects.
    For the ICE connections of ``pc`` only, such a check is taken with the priority a
    peer-reflexive candidate of its component would have. Call it after
    setRemoteDescription (the connections exist) and before checks can arrive."""
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        if transport is None:
            continue
        connection = transport.transport.iceGatherer._connection
        if getattr(connection, "_hookcast_tolerant", False):
            continue  # bundled: one connection for every transceiver
        stock = connection.check_incoming

        def check_incoming(message: stun.Message, addr: tuple[str, int], protocol: Any,
                           stock: Callable[..., None] = stock) -> None:
            if "PRIORITY" not in message.attributes:
                message.attributes["PRIORITY"] = candidate_priority(
                    protocol.local_candidate.component, "prflx")
            stock(message, addr, protocol)

        connection.check_incoming = check_incoming  # type: ignore[method-assign]
        connection._hookcast_tolerant = True  # type: ignore[attr-defined]
