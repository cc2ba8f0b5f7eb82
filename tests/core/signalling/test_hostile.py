"""What a hostile client sends is bounded at the door: nesting, ``custom`` size, name
length, the number of sessions; bad connection fields are refused naming the field;
nothing a client sends forges, binarises or bloats a log line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiortc.mediastreams import AudioStreamTrack

from hookcast.config.home import Home
from hookcast.keys import ENGINE
from hookcast.signalling.client import WcsClient, WcsError
from tests.core.rtc.relay_harness import PatternVideoTrack
from tests.served import Served, configure

Start = Callable[..., Any]


async def fails_after(client: WcsClient, count: int) -> dict[str, Any]:
    for _ in range(200):
        if len(client.fails) > count:
            return client.fails[count]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no fail message after {count}: {client.fails}")


async def still_answers(client: WcsClient) -> None:
    """The session goes on: a ping gets its pong (the client records nothing for pong,
    so ask for something that answers: availableStream)."""
    before = len(client.fails)
    await client.send("stopStream", {"mediaSessionId": "nothing"})
    fail = await fails_after(client, before)
    assert fail["apiMethod"] == "stopStream"


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


async def test_deeply_nested_frames_get_a_fail_and_the_session_goes_on(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    await client.send("publishStream", {"mediaSessionId": "m1", "name": "x", "sdp": "v=0",
                                        "custom": nested(1200)})
    fail = await fails_after(client, 0)
    assert (fail["apiMethod"], fail["info"]) == ("publishStream",
                                                 "data: nested deeper than 32 levels")
    await client.send_raw('{"message": "ping", "data": ' + "[" * 100_000 + "]" * 100_000 + "}")
    fail = await fails_after(client, 1)
    assert (fail["apiMethod"], fail["info"]) == ("message", "nested deeper than 32 levels")
    await client.send("publishStream", {"mediaSessionId": "m2", "name": "x", "sdp": "v=0",
                                        "custom": nested(40)})
    fail = await fails_after(client, 2)
    assert (fail["apiMethod"], fail["info"]) == ("publishStream",
                                                 "data: nested deeper than 32 levels")
    await still_answers(client)


async def test_limits_of_names_and_custom_are_named(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    server = await start_server(home, max_custom_size="1000")
    client: WcsClient = await connect_client(server)
    await client.send("publishStream", {"mediaSessionId": "m1", "name": "n" * 300, "sdp": "v=0"})
    fail = await fails_after(client, 0)
    assert fail == {"apiMethod": "publishStream", "id": "m1", "info":
                    "Failed by error: publishStream: name: 300 characters exceeds the limit "
                    "of 256 (max_stream_name_length)"}
    await client.send("playStream", {"mediaSessionId": "m2", "name": "ok", "sdp": "v=0",
                                     "custom": {"pad": "x" * 2000}})
    fail = await fails_after(client, 1)
    assert fail["id"] == "m2" and fail["info"] == (
        "Failed by error: playStream: custom: 2010 bytes as JSON exceeds the limit of 1000 "
        "(max_custom_size)")
    refused = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    with pytest.raises(WcsError, match=r"custom: \d+ bytes as JSON exceeds the limit of 1000"):
        await refused.connect(custom={"pad": "x" * 2000})
    await refused.close()
    assert server.http_app[ENGINE].sessions.refused["invalid"] == 1
    await still_answers(client)


@pytest.mark.parametrize(("fields", "problem"), [
    ({"custom": "not-an-object"}, "custom: expected an object"),
    ({"clientVersion": {"repr": "me"}}, "clientVersion: expected a string"),
    ({"appKey": 7}, "appKey: expected a string"),
])
async def test_bad_connection_fields_are_refused_naming_them(
    home: Home, start_server: Start, connect_client: Callable[..., Any],
    fields: dict[str, Any], problem: str,
) -> None:
    server = await start_server(home)
    good: WcsClient = await connect_client(server, custom={"room": "a"})
    bad = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    with pytest.raises(WcsError, match=problem):
        await bad.connect(**fields)
    await bad.close()
    async with aiohttp.ClientSession() as http, http.get(
        f"http://127.0.0.1:{server.http_port}/rest-api/connection/find_all"
    ) as response:
        (connection,) = await response.json()
    assert connection["sessionId"] == good.session_id
    assert connection["custom"] == {"room": "a"} and connection["clientVersion"] == "2.0"


async def test_max_sessions_refuses_with_a_reason_and_counts(
    home: Home, start_server: Start, connect_client: Callable[..., Any]
) -> None:
    server = await start_server(home, max_sessions="2")
    await connect_client(server)
    await connect_client(server)
    third = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    with pytest.raises(WcsError, match=r"too many sessions: the server has 2 \(max_sessions\)"):
        await third.connect()
    await third.close()
    async with aiohttp.ClientSession() as http, http.get(
        f"http://127.0.0.1:{server.http_port}/metrics"
    ) as response:
        text = await response.text()
    assert 'hookcast_sessions_refused_total{reason="max_sessions"} 1.0' in text
    assert "hookcast_sessions_max 2.0" in text
    assert "hookcast_custom_size_max_bytes 16384.0" in text


def test_client_strings_cannot_forge_or_bloat_log_lines(home: Home) -> None:
    """Through ``hookcast serve``'s own log: a name with a newline and an escape, and a
    200 KB message name, are written escaped and cut."""
    configure(home, ip="127.0.0.1")
    served = Served.start(home)
    served.wait_ready()
    forged = "cam\n2026-01-01 00:00:00,000 INFO hookcast: FORGED\x1b[2J"
    asyncio.run(_hostile_session(served.ws_port, forged))
    stderr = served.stop()
    lines = stderr.splitlines()
    assert not any(line.startswith("2026-01-01") or "FORGED" == line[-6:] for line in lines)
    assert "\x1b" not in stderr
    assert "cam\\n2026-01-01 00:00:00,000 INFO hookcast: FORGED\\x1b[2J" in stderr
    assert max(len(line) for line in lines) < 2200, "a client string bloated a log line"


async def _hostile_session(ws_port: int, name: str) -> None:
    client = WcsClient(f"ws://127.0.0.1:{ws_port}/")
    try:
        await client.connect()
        await client.send("playStream", {"mediaSessionId": "m1", "name": name, "sdp": "v=0"})
        await client.send_raw(json.dumps({"message": "x" * 200_000, "data": []}))
        fail = await fails_after(client, 0)
        assert fail["apiMethod"] == "x" * 100 + "...(199900 more)"
    finally:
        await client.close()




def broken_offers(good: str) -> dict[str, str]:
    """Offers a client may send that aiortc cannot take, each broken another way."""
    lines = good.split("\r\n")
    return {
        "no fingerprint": "\r\n".join(x for x in lines if "fingerprint" not in x),
        "no ICE credentials": "\r\n".join(x for x in lines if "ice-ufrag" not in x),
        "no mid": "\r\n".join(x for x in lines if not x.startswith("a=mid")),
        "a bundle of nothing": good.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 7"),
        "a bad setup": good.replace("a=setup:actpass", "a=setup:bogus"),
        "a bad rtpmap": good.replace("a=rtpmap:", "a=rtpmap:x"),
    }


async def _send_broken_offers(ws_port: int) -> list[str]:
    from tests.core.signalling.test_door import connection, offer_text

    good = await offer_text()
    infos = []
    publisher = WcsClient(f"ws://127.0.0.1:{ws_port}/")  # players' offers are read too
    try:
        await publisher.connect()
        live = await publisher.publish("live", [PatternVideoTrack(), AudioStreamTrack()])
        await live.wait_status("PUBLISHING")
        async with aiohttp.ClientSession() as http, \
                http.ws_connect(f"ws://127.0.0.1:{ws_port}/") as ws:
            assert (await connection(ws))["message"] == "getUserData"
            for n, (what, sdp) in enumerate(broken_offers(good).items()):
                for api, name in (("publishStream", f"bad{n}"), ("playStream", "live")):
                    await ws.send_json({"message": api, "data": [
                        {"mediaSessionId": f"{api}-{n}", "name": name, "sdp": sdp}]})
                    infos.append(await _failed_info(ws, f"{api}-{n}", what))
    finally:
        await publisher.close()
    return infos


async def _failed_info(ws: aiohttp.ClientWebSocketResponse, media_session_id: str,
                       what: str) -> str:
    while True:
        frame = await asyncio.wait_for(ws.receive(), 10)
        assert frame.type is aiohttp.WSMsgType.TEXT, (what, frame)
        message = json.loads(frame.data)
        data = message["data"][0] if message["data"] else None
        if message["message"] == "notifyStreamStatusEvent" \
                and data["mediaSessionId"] == media_session_id and data["status"] == "FAILED":
            return f"{what}: {data['info']}"


@pytest.mark.usefixtures("loopback")
def test_a_malformed_offer_fails_its_stream_and_logs_no_traceback(home: Home) -> None:
    configure(home, ip="127.0.0.1")
    served = Served.start(home)
    served.wait_ready()
    infos = asyncio.run(_send_broken_offers(served.ws_port))
    stderr = served.stop()
    assert all("Failed by error: " in i and "invalid SDP offer" in i for i in infos), infos
    assert "Traceback" not in stderr
    assert "Task exception was never retrieved" not in stderr


async def _flood_bad_frames(ws_port: int, seconds: float) -> int:
    client = WcsClient(f"ws://127.0.0.1:{ws_port}/")
    sent = 0
    try:
        await client.connect()
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            for _ in range(100):
                await client.send_raw('{"message": "nonsense", "data": []}')
                await client.send("stopStream", {"mediaSessionId": "x" * 500})
                sent += 2
            await asyncio.sleep(0)
    finally:
        await client.close()
    return sent


def test_a_client_flooding_bad_frames_adds_little_log(home: Home) -> None:
    """What a client causes is logged at a bounded rate: 10 s of a flood of frames the
    server refuses adds well under 1 MiB of log, and says how much it held back."""
    configure(home, ip="127.0.0.1")
    served = Served.start(home)
    served.wait_ready()
    before = len(served.log().encode())
    sent = asyncio.run(_flood_bad_frames(served.ws_port, 10))
    stderr = served.stop()
    added = len(stderr.encode()) - before
    assert sent > 10_000, f"the flood was too small to tell ({sent} frames)"
    assert added < 1 << 20, f"{sent} bad frames added {added} bytes of log"
    assert "similar lines suppressed" in stderr
