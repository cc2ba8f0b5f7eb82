"""Which addresses ICE gathers host candidates on (aioice has no per-connection setting:
``get_host_addresses`` is a module function, skipping 127.0.0.1 on its own)."""

from __future__ import annotations

import aioice.ice

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


