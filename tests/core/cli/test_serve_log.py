"""What ``hookcast serve`` says in its log: which addresses media uses (and a warning
when there is none), no access lines unless asked, no aioice chatter."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiortc.mediastreams import AudioStreamTrack

from hookcast.signalling.client import WcsClient
from tests.core.rtc.relay_harness import PatternVideoTrack
from tests.served import Served


def test_no_media_address_is_a_warning_naming_ip(serving: Callable[..., Served]) -> None:
    """In the tests' namespace the only interface is loopback, which ICE skips unless
    ``ip`` names it: the first publish could never connect, so the log says it at start."""
    served = serving()
    served.wait_ready()
    log = served.stop()
    warning = next(line for line in log.splitlines() if "no address for media" in line)
    assert "WARNING" in warning and "set ip=127.0.0.1" in warning


def test_media_addresses_are_named_at_start(serving: Callable[..., Served]) -> None:
    served = serving(ip="127.0.0.1")
    served.wait_ready()
    log = served.stop()
    assert "media (ICE host candidates) on 127.0.0.1\n" in log
    assert "no address for media" not in log


async def _publish(ws_port: int) -> None:
    client = WcsClient(f"ws://127.0.0.1:{ws_port}/")
    try:
        await client.connect()
        stream = await client.publish("quiet", [PatternVideoTrack(), AudioStreamTrack()])
        await stream.wait_status("PUBLISHING")
        await asyncio.sleep(0.5)
    finally:
        await client.close()


def test_no_access_lines_and_no_ice_chatter_by_default(
    serving: Callable[..., Served], loopback: None
) -> None:
    served = serving(ip="127.0.0.1")
    served.wait_ready()
    served.get("/rest-api/openapi.json")
    asyncio.run(_publish(served.ws_port))
    log = served.stop()
    assert "GET /rest-api/openapi.json" not in log
    assert '"GET / HTTP/1.1" 101' not in log
    assert "aioice" not in log
    assert "publisher quiet" in log  # the server's own lines are there


def test_access_log_property_turns_access_lines_on(serving: Callable[..., Served]) -> None:
    served = serving(access_log="true")
    served.wait_ready()
    served.get("/rest-api/openapi.json")
    log = served.stop()
    assert '"GET /rest-api/openapi.json HTTP/1.1" 200' in log
