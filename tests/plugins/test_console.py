"""The console over plain HTTP, as an attacker's client sends it: sign-in guesses from one
address do not lock out another, actions need the CSRF token, pages escape hostile names.
(tests/e2e/test_console.py drives the same pages in Chromium.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from hookcast.config.home import Home
from hookcast.keys import ENGINE
from hookcast.plugins._console_signin import MAX_WAITING, PENALTY, SignInThrottle, TooMany
from hookcast.server import Server
from tests.core.rtc.relay_harness import PatternVideoTrack

TOKEN = "the-right-token"
CSRF = {"Cookie": "hookcast_csrf=abc", "X-CSRF-Token": "abc",
        "Content-Type": "application/json"}


def client_from(address: str) -> aiohttp.ClientSession:
    """A client whose connections leave from ``address`` (any of 127.0.0.0/8)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(
        local_addr=(address, 0), limit=0, force_close=True))


async def sign_in(http: aiohttp.ClientSession, server: Server,
                  token: str) -> tuple[int, float, str, str]:
    """POST /console/login: (status, seconds it took, the session cookie, the message)."""
    started = time.monotonic()
    async with http.post(f"http://127.0.0.1:{server.http_port}/console/login",
                         json={"token": token}, headers=CSRF) as response:
        answer = await response.json()
        cookie = response.cookies.get("hookcast_console")
        return (response.status, time.monotonic() - started,
                cookie.value if cookie else "", str(answer.get("message", "")))


def console_of(server: Server) -> Any:
    return next(r.plugin for r in server.bus.plugins() if r.name == "console")


async def test_wrong_sign_ins_from_one_address_do_not_lock_out_another(
        home: Home, start_server: Callable[..., Any]) -> None:
    """60 wrong guesses at once from 127.0.0.2; the operator at 127.0.0.3 signs in within
    a second meanwhile. 127.0.0.2 itself gets two guesses a second: MAX_WAITING of them
    queue and are answered 401 one per PENALTY, the others are refused (429) at once."""
    server = await start_server(home, rest_api_token=TOKEN)
    async with client_from("127.0.0.2") as attacker, client_from("127.0.0.3") as operator:
        guesses = [asyncio.create_task(sign_in(attacker, server, f"guess-{n}"))
                   for n in range(60)]
        await asyncio.sleep(0.3)  # every guess has arrived and waits
        status, took, cookie, _ = await asyncio.wait_for(sign_in(operator, server, TOKEN), 5)
        assert status == 200 and cookie, "the right token from another address signs in"
        assert took < 1.0, f"the operator waited {took:.1f} s behind another address's guesses"
        results = await asyncio.gather(*guesses)
        late = await asyncio.wait_for(sign_in(attacker, server, TOKEN), 5)
    answered = sorted(seconds for status, seconds, _, _ in results if status == 401)
    refused = [(seconds, message) for status, seconds, _, message in results if status == 429]
    assert len(answered) == MAX_WAITING and len(refused) == 60 - MAX_WAITING, results
    assert all(seconds < 1.0 and "too many sign-in attempts from your address" in message
               for seconds, message in refused)
    assert answered[-1] >= MAX_WAITING * PENALTY - 0.2, "wrong guesses cost their address"
    assert late[0] == 200 and late[2], "its queue is empty again: the right token signs in"
    assert console_of(server).signin.addresses == 0, "no address is remembered idle"
    async with aiohttp.ClientSession(cookies={"hookcast_console": cookie}) as signed_in:
        async with signed_in.get(f"http://127.0.0.1:{server.http_port}/records") as page:
            assert page.status == 200


async def test_the_throttle_is_bounded() -> None:
    """Addresses with attempts waiting are all it keeps: past max_addresses a new one is
    refused (503), past max_waiting an address's next attempt (429); then it is empty."""
    throttle = SignInThrottle(penalty=0.05, max_waiting=2, max_addresses=2)
    release = asyncio.Event()

    async def attempt(address: str) -> None:
        async with throttle.turn(address):
            await release.wait()

    held = [asyncio.create_task(attempt(a))
            for a in ("10.0.0.1", "10.0.0.1", "2001:db8::1", "2001:db8::1")]
    await asyncio.sleep(0.05)
    assert throttle.addresses == 2
    for address, status in (("10.0.0.1", 429), ("192.0.2.1", 503),
                            ("2001:db8::2", 429)):  # the same /64: the same queue
        with pytest.raises(TooMany) as refused:
            await attempt(address)
        assert refused.value.status == status, address
    release.set()
    await asyncio.gather(*held)
    assert throttle.addresses == 0


HOSTILE = ("<script>alert(1)</script>", "\"'><img src=x onerror=alert(1)>")


@pytest.fixture
async def publishing(home: Home, start_server: Callable[..., Any],
                     connect_client: Callable[..., Any]) -> Callable[..., Any]:
    """``await publishing(*names, **properties)``: a server with those names PUBLISHING
    (recorded), and the client publishing them."""
    async def start(*names: str, **properties: str) -> tuple[Server, Any]:
        server: Server = await start_server(home, **properties)
        client = await connect_client(server)
        for name in names:
            stream = await client.publish(name, [PatternVideoTrack()], record=True)
            await stream.wait_status("PUBLISHING")
        return server, client
    return start


async def post(server: Server, path: str, headers: dict[str, str],
               body: bytes = b"{}") -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{server.http_port}{path}", data=body, headers=headers) as answer:
        return answer.status, await answer.json()


@pytest.mark.usefixtures("loopback")
async def test_console_actions_need_the_csrf_token(publishing: Callable[..., Any]) -> None:
    """A forged action (no X-CSRF-Token, a wrong one, no cookie to match) is refused
    with 403 naming the header, and stops nothing; the page's own token works."""
    server, _ = await publishing("cam", record_streams="false")
    json_type = {"Content-Type": "application/json"}
    for path in ("/console/api/stream/terminate", "/console/login"):
        for headers in ({**json_type},
                        {**json_type, "Cookie": "hookcast_csrf=abc"},
                        {**json_type, "Cookie": "hookcast_csrf=abc", "X-CSRF-Token": "abd"},
                        {**json_type, "X-CSRF-Token": "abc"},
                        {**json_type, "Cookie": "hookcast_csrf=", "X-CSRF-Token": ""}):
            status, answer = await post(server, path, headers)
            assert status == 403, (path, headers)
            assert answer["field"] == "X-CSRF-Token" and "missing or wrong" in answer["message"]
    streams = server.http_app[ENGINE].registry
    assert [s.status for s in streams.find()] == ["PUBLISHING"]
    status, answer = await post(server, "/console/api/stream/terminate", CSRF)
    assert status == 200 and len(answer["terminated"]) == 1


@pytest.mark.usefixtures("loopback")
async def test_pages_show_hostile_stream_names_escaped(
        home: Home, publishing: Callable[..., Any]) -> None:
    """Names published by a real client (recorded under their own name) and a name in
    /play?name= come back as text on the server-rendered pages, never as markup."""
    server, client = await publishing(*HOSTILE, stream_record_policy="streamName")
    await asyncio.sleep(1.5)
    await client.close()  # the recordings are finished, named after the streams
    base = f"http://127.0.0.1:{server.http_port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            async with http.get(f"{base}/rest-api/records/find_all") as answer:
                if len(await answer.json()) == 2:
                    break
            await asyncio.sleep(0.1)
        pages = {}
        for path, query in (("/records", {}), ("/play", {"name": HOSTILE[0]}),
                            ("/play", {"name": HOSTILE[1]})):
            async with http.get(base + path, params=query) as page:
                assert page.status == 200
                pages[(path, query.get("name"))] = await page.text()
    records = pages[("/records", None)]
    for raw, escaped in (("<script>alert(1)<script>.webm",  # (the record name drops "/")
                          "&lt;script&gt;alert(1)&lt;script&gt;.webm"),
                         (HOSTILE[1] + ".webm",
                          "&#34;&#39;&gt;&lt;img src=x onerror=alert(1)&gt;.webm")):
        assert raw not in records and escaped in records
    for name, escaped in zip(HOSTILE, ("&lt;script&gt;alert(1)&lt;/script&gt;",
                                      "&#34;&#39;&gt;&lt;img src=x onerror=alert(1)&gt;"),
                             strict=True):
        page = pages[("/play", name)]
        assert name not in page and f'value="{escaped}"' in page
    for page in pages.values():
        assert "<script>alert" not in page and "<img src=x" not in page
