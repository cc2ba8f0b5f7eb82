"""A browser page from another site cannot act on the server; the REST API's guard
(networks, origins, content type, auth) holds on a real server with a live stream."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiortc.mediastreams import AudioStreamTrack

from hookcast.config.home import Home
from hookcast.keys import ENGINE
from hookcast.server import Server
from hookcast.signalling.client import WcsClient
from tests.core.rtc.relay_harness import PatternVideoTrack

EVIL = "https://evil.example"


@pytest.fixture
async def live(home: Home, start_server: Callable[..., Any],
               connect_client: Callable[..., Any]) -> Callable[..., Any]:
    """``await live(**properties)``: a server with one publisher ``cam``, PUBLISHING."""
    async def start(**properties: str) -> Server:
        server: Server = await start_server(home, **properties)
        client: WcsClient = await connect_client(server)
        stream = await client.publish("cam", [PatternVideoTrack(), AudioStreamTrack()])
        await stream.wait_status("PUBLISHING")
        return server
    return start


async def request(server: Server, method: str, path: str, *, data: bytes | None = None,
                  headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    url = f"http://127.0.0.1:{server.http_port}{path}"
    async with aiohttp.ClientSession() as http, http.request(
        method, url, data=data, headers=headers or {}
    ) as response:
        body = await response.read()
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = body
        return response.status, dict(response.headers), parsed


def still_publishing(server: Server) -> bool:
    publisher = server.http_app[ENGINE].registry.publisher("cam")
    return publisher is not None and publisher.status == "PUBLISHING"


@pytest.mark.usefixtures("loopback")
async def test_a_text_plain_terminate_is_refused(live: Callable[..., Any]) -> None:
    """What a cross-site form or fetch without preflight can send: 415, nothing stops."""
    server = await live()
    status, _, body = await request(server, "POST", "/rest-api/stream/terminate",
                                    data=b"{}", headers={"Content-Type": "text/plain"})
    assert status == 415 and body["field"] == "Content-Type"
    assert "expected application/json, got text/plain" in body["message"]
    assert still_publishing(server)


@pytest.mark.usefixtures("loopback")
async def test_a_terminate_without_a_body_stops_nothing(live: Callable[..., Any]) -> None:
    server = await live()
    status, _, body = await request(server, "POST", "/rest-api/stream/terminate")
    assert status == 400 and body["field"] == "body"
    assert "{} means no filter" in body["message"]
    assert still_publishing(server)
    status, _, body = await request(server, "POST", "/rest-api/stream/terminate", data=b"{}",
                                    headers={"Content-Type": "application/json"})
    assert status == 200 and len(body["terminated"]) == 1
    assert not still_publishing(server)


@pytest.mark.usefixtures("loopback")
@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/rest-api/stream/terminate"), ("GET", "/rest-api/connection/find_all"),
    ("GET", "/metrics"), ("OPTIONS", "/rest-api/stream/terminate"),
])
async def test_cross_site_requests_are_refused_by_default(
    live: Callable[..., Any], method: str, path: str
) -> None:
    server = await live()
    status, headers, body = await request(
        server, method, path, data=b"{}" if method == "POST" else None,
        headers={"Origin": EVIL, "Content-Type": "application/json"},
    )
    assert status == 403
    assert f"cross-site requests from {EVIL} are not allowed (rest_api_cors_origins)" \
        in body["message"]
    assert "Access-Control-Allow-Origin" not in headers
    assert still_publishing(server)


@pytest.mark.usefixtures("loopback")
async def test_listed_origins_get_cors_and_same_origin_needs_none(
    live: Callable[..., Any]
) -> None:
    app = "https://app.example"
    server = await live(rest_api_cors_origins=app)
    status, headers, _ = await request(server, "OPTIONS", "/rest-api/stream/find_all", headers={
        "Origin": app, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == app
    assert "Content-Type" in headers["Access-Control-Allow-Headers"]
    status, headers, body = await request(server, "GET", "/rest-api/stream/find_all",
                                          headers={"Origin": app})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == app
    assert [s["name"] for s in body] == ["cam"]
    status, _, _ = await request(server, "GET", "/rest-api/stream/find_all",
                                 headers={"Origin": EVIL})
    assert status == 403
    own = f"http://127.0.0.1:{server.http_port}"  # a page served by this server itself
    status, headers, _ = await request(server, "GET", "/rest-api/stream/find_all",
                                       headers={"Origin": own})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers


@pytest.mark.usefixtures("loopback")
async def test_allowed_networks(live: Callable[..., Any]) -> None:
    server = await live(rest_api_allowed_networks="10.0.0.0/8, 192.168.0.0/16")
    for path in ("/rest-api/stream/find_all", "/metrics", "/rest-api/health"):
        status, _, body = await request(server, "GET", path)
        assert status == 403, path
        assert body["message"] == "client address 127.0.0.1 is not in rest_api_allowed_networks"
    status, _, _ = await request(server, "POST", "/rest-api/stream/terminate", data=b"{}",
                                 headers={"Content-Type": "application/json"})
    assert status == 403 and still_publishing(server)


@pytest.mark.usefixtures("loopback")
async def test_loopback_in_allowed_networks_passes(live: Callable[..., Any]) -> None:
    server = await live(rest_api_allowed_networks="127.0.0.0/8")
    status, _, body = await request(server, "GET", "/rest-api/stream/find_all")
    assert status == 200 and [s["name"] for s in body] == ["cam"]


@pytest.mark.parametrize(("properties", "said"), [
    ({"bind_address": "0.0.0.0"}, "answer clients on this machine only"),
    ({"bind_address": "0.0.0.0", "rest_api_allowed_networks": "10.0.0.0/8"},
     "anyone in rest_api_allowed_networks (10.0.0.0/8) can stop every stream"),
    ({"bind_address": "127.0.0.1", "rest_api_allowed_networks": "10.0.0.0/8"}, None),
    ({"bind_address": "0.0.0.0", "rest_api_token": "secret"}, None),
])
async def test_startup_says_who_may_use_the_api(
    home: Home, start_server: Callable[..., Any], caplog: pytest.LogCaptureFixture,
    properties: dict[str, str], said: str | None,
) -> None:
    caplog.set_level(logging.INFO, logger="hookcast.server")
    await start_server(home, **properties)
    lines = [r for r in caplog.records if "authentication" in r.getMessage()]
    if said is None:
        assert not lines
    else:
        (line,) = lines
        assert said in line.getMessage()
        assert line.levelno == (logging.INFO if "this machine" in said else logging.WARNING)


@pytest.fixture
def other_host() -> Iterator[str]:
    """An address that is not loopback, on this namespace's loopback interface (the
    tests' private network: nothing leaves it), for a client from "another machine"."""
    if [name for _, name in socket.if_nameindex()] != ["lo"]:
        pytest.skip("needs the tests' private network namespace (tests/isolated.sh) to add "
                    "an address without touching the host's network")
    address = "192.0.2.7"  # TEST-NET-1
    subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)
    try:
        yield address
    finally:
        subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", "lo"], check=False)


async def from_host(address: str, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as http, \
            http.request(method, url, **kwargs) as response:
        body = await response.read()
        try:
            return response.status, json.loads(body)
        except ValueError:
            return response.status, body


@pytest.mark.usefixtures("loopback")
async def test_without_auth_the_api_and_console_answer_this_machine_only(
    live: Callable[..., Any], other_host: str,
) -> None:
    server = await live(bind_address="0.0.0.0")
    base = f"http://{other_host}:{server.http_port}"
    json_post = {"data": b"{}", "headers": {"Content-Type": "application/json"}}
    for method, path, kwargs in [
        ("POST", "/rest-api/stream/terminate", json_post),
        ("POST", "/rest-api/pull/pull", {"data": b'{"uri": "ws://127.0.0.1:1/"}',
                                         "headers": {"Content-Type": "application/json"}}),
        ("POST", "/rest-api/records/delete", {"data": b'{"fileName": "x.mp4"}',
                                              "headers": {"Content-Type": "application/json"}}),
        ("GET", "/rest-api/stream/find_all", {}), ("GET", "/metrics", {}), ("GET", "/", {}),
        ("GET", "/records", {}),
    ]:
        status, body = await from_host(other_host, method, f"{base}{path}", **kwargs)
        assert status == 403, (path, status, body)
        assert "rest_api_token" in str(body) and "rest_api_allowed_networks" in str(body), body
    assert still_publishing(server)
    # what stays open: health, the API's description, downloads, signalling
    for path in ("/rest-api/health", "/rest-api/openapi.json", "/client/records/none.mp4"):
        status, _ = await from_host(other_host, "GET", f"{base}{path}")
        assert status in (200, 404), path
    status, _ = await from_host("127.0.0.1", "GET",
                                f"http://127.0.0.1:{server.http_port}/rest-api/stream/find_all")
    assert status == 200
    client = WcsClient(f"ws://{other_host}:{server.ws_port}/")
    try:
        assert (await client.connect())["sessionId"]
    finally:
        await client.close()


@pytest.mark.usefixtures("loopback")
@pytest.mark.parametrize("properties", [{"rest_api_token": "t0ken"},
                                        {"rest_api_allowed_networks": "192.0.2.0/24"}])
async def test_a_token_or_a_network_opens_the_api_to_other_machines(
    live: Callable[..., Any], other_host: str, properties: dict[str, str],
) -> None:
    server = await live(bind_address="0.0.0.0", **properties)
    status, body = await from_host(
        other_host, "GET", f"http://{other_host}:{server.http_port}/rest-api/stream/find_all",
        headers={"Authorization": "Bearer t0ken"})
    assert status == 200, body


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"name":' + b"[" * 40 + b"]" * 40 + b"}"])
async def test_deep_json_is_a_400_naming_the_problem(
    home: Home, start_server: Callable[..., Any], body: bytes
) -> None:
    server = await start_server(home)
    status, _, answer = await request(server, "POST", "/rest-api/stream/find", data=body,
                                      headers={"Content-Type": "application/json"})
    assert status == 400
    assert answer["message"] == "request body: nested deeper than 32 levels"
    status, _, _ = await request(server, "GET", "/rest-api/health")
    assert status == 200


@pytest.mark.usefixtures("loopback")
@pytest.mark.parametrize("path", ["/rest-api/stream/find_all", "/metrics", "/",
                                  "/console/events", "/client/records/x.webm"])
async def test_dns_rebinding_is_refused_while_there_is_no_auth(
        live: Callable[..., Any], path: str) -> None:
    """A page of evil.example whose name now points at this server sends Host:
    evil.example: refused unless the name is listed or auth is on."""
    server = await live()
    status, _, body = await request(server, "GET", path, headers={"Host": "evil.example"})
    assert status == 403 and "rest_api_allowed_hosts" in str(body), (path, body)
    if path != "/console/events":  # (a stream that does not end)
        status, _, _ = await request(server, "GET", path, headers={"Host": "localhost"})
        assert status != 403


@pytest.mark.usefixtures("loopback")
async def test_listed_hosts_and_auth_lift_the_host_check(live: Callable[..., Any]) -> None:
    listed = await live(rest_api_allowed_hosts="media.example")
    status, _, _ = await request(listed, "GET", "/rest-api/stream/find_all",
                                 headers={"Host": "media.example:8081"})
    assert status == 200
    guarded = await live(rest_api_token="t0ken")
    status, _, _ = await request(guarded, "GET", "/rest-api/stream/find_all",
                                 headers={"Host": "media.example", "Authorization": "Bearer t0ken"})
    assert status == 200


@pytest.mark.usefixtures("loopback")
async def test_console_actions_refuse_bad_bodies_and_long_names(live: Callable[..., Any]) -> None:
    server = await live()
    csrf = {"Cookie": "hookcast_csrf=abc", "X-CSRF-Token": "abc",
            "Content-Type": "application/json"}
    for data, expected in ((b"[" * 50_000, 400), (b'{"custom":' + b"[" * 40 + b"]" * 40 + b"}", 400),
                           (b"x" * 70_000, 413)):
        status, _, _ = await request(server, "POST", "/console/api/pull/pull", data=data,
                                     headers=csrf)
        assert status == expected
    status, _, _ = await request(server, "POST", "/console/api/records/delete", headers=csrf,
                                 data=json.dumps({"fileName": "a" * 5000 + ".mp4"}).encode())
    assert status == 404
    status, _, _ = await request(server, "GET", "/client/records/" + "a" * 300 + ".mp4")
    assert status == 404


@pytest.mark.usefixtures("loopback")
async def test_console_pages_ask_for_basic_credentials(live: Callable[..., Any]) -> None:
    server = await live(rest_api_user="admin", rest_api_password="pw")
    status, headers, _ = await request(server, "GET", "/")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    basic = {"Authorization": "Basic YWRtaW46cHc="}  # admin:pw
    status, headers, body = await request(server, "GET", "/records", headers=basic)
    assert status == 200 and b"Records" in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
