"""REST API errors, preflights, auth, OpenAPI and Prometheus: no media needed (the
cross-site guard is tested with live streams in test_security.py)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from hookcast.api.schema import METHODS
from hookcast.config.home import Home
from hookcast.server import Server

Start = Callable[..., Any]


@pytest.fixture
async def server(home: Home, start_server: Start) -> Server:
    return await start_server(home)  # type: ignore[no-any-return]


async def call(server: Server, path: str, *, method: str = "POST", data: Any = None,
               json: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{server.http_port}{path}"
        async with http.request(method, url, data=data, json=json, headers=headers) as response:
            body = await response.json() if response.content_type == "application/json" else await response.text()
            return response.status, body, response.headers


@pytest.mark.parametrize(
    ("path", "kwargs", "message", "field", "expected"),
    [
        ("/rest-api/stream/find", {"data": b"{oops", "headers": {"Content-Type": "application/json"}}, "request body: invalid JSON", "body", "JSON object"),
        ("/rest-api/stream/find", {"json": [1, 2]}, "request body: expected a JSON object, got array", "body", "object"),
        ("/rest-api/stream/find", {"json": {"published": "yes"}}, "published: expected boolean, got string 'yes'", "published", "boolean"),
        ("/rest-api/stream/terminate", {"json": {"mediaSessionIds": "a"}}, "mediaSessionIds: expected array of strings, got string", "mediaSessionIds", "array of strings"),
        ("/rest-api/stream/find", {"json": {"status": "LIVE"}}, "status: expected one of NEW, PENDING", "status", None),
        ("/rest-api/stream/find", {"json": {"nmae": "s"}}, "unknown field 'nmae'; /rest-api/stream/find takes: mediaSessionId", "nmae", None),
        ("/rest-api/stream/metrics", {"json": {}}, "mediaSessionId is required", "mediaSessionId", "string"),
        ("/rest-api/connection/terminate", {"json": {"sessionId": 5}}, "sessionId: expected string, got number", "sessionId", "string"),
        ("/rest-api/stream/find", {"json": {"display": ["everything"]}}, 'display: expected array of "metrics"', "display", None),
    ],
)
async def test_bad_requests_are_400_naming_the_field(
    server: Server, path: str, kwargs: dict[str, Any], message: str, field: str, expected: str | None
) -> None:
    status, body, headers = await call(server, path, **kwargs)
    assert status == 400
    assert body["message"].startswith(message)
    assert body["field"] == field
    if expected is not None:
        assert body["expected"] == expected
    assert "Access-Control-Allow-Origin" not in headers  # no CORS unless origins are listed


async def test_unknown_method_is_404_listing_the_known_ones(server: Server) -> None:
    status, body, _ = await call(server, "/rest-api/stream/explode", json={})
    assert status == 404
    assert body["message"].startswith("unknown method /rest-api/stream/explode; known: ")
    assert "/rest-api/stream/terminate" in body["message"]


async def test_get_is_only_for_bodyless_find_all(server: Server) -> None:
    assert (await call(server, "/rest-api/stream/terminate", method="GET"))[0] == 405
    assert (await call(server, "/rest-api/stream/find_all", method="GET"))[0] == 404  # no streams


async def test_preflight_without_an_origin_lists_the_methods(server: Server) -> None:
    status, _, headers = await call(server, "/rest-api/stream/find", method="OPTIONS")
    assert status == 204
    assert headers["Allow"] == "GET, POST, OPTIONS"
    assert "Access-Control-Allow-Origin" not in headers


async def test_empty_post_body_means_no_filters_for_a_find(server: Server) -> None:
    status, body, _ = await call(server, "/rest-api/stream/find", data=b"")
    assert (status, body["message"]) == (404, "Stream not found")


async def test_a_body_must_be_declared_json(server: Server) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        status, body, _ = await call(server, "/rest-api/stream/find", data=b"{}",
                                     headers={"Content-Type": content_type})
        assert (status, body["field"]) == (415, "Content-Type")
        assert body["message"] == f"Content-Type: expected application/json, got {content_type}"


@pytest.mark.parametrize("scheme", ["token", "basic"])
async def test_auth_on_rejects_without_credentials(home: Home, start_server: Start, scheme: str) -> None:
    props = {"rest_api_token": "s3cret"} if scheme == "token" else {"rest_api_user": "ops", "rest_api_password": "pw"}
    server = await start_server(home, **props)
    status, body, headers = await call(server, "/rest-api/stream/find_all")
    assert status == 401 and "authorization required" in body["message"]
    assert "Bearer" in headers["WWW-Authenticate"]
    wrong = {"Authorization": "Bearer nope"} if scheme == "token" else {
        "Authorization": "Basic " + base64.b64encode(b"ops:wrong").decode()}
    assert (await call(server, "/rest-api/stream/find_all", headers=wrong))[0] == 401
    right = {"Authorization": "Bearer s3cret"} if scheme == "token" else {
        "Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}
    assert (await call(server, "/rest-api/stream/find_all", headers=right))[0] == 404  # authorized, empty
    assert (await call(server, "/rest-api/health", method="GET"))[0] == 200  # readiness stays open


async def test_openapi_document_lists_every_method(server: Server) -> None:
    status, document, _ = await call(server, "/rest-api/openapi.json", method="GET")
    assert status == 200 and document["openapi"].startswith("3.")
    for path, method in METHODS.items():
        operations = document["paths"][path]
        assert "post" in operations
        assert ("get" in operations) == method.get
        schema = operations["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert set(schema["properties"]) == {f.wire for f in method.fields}
        assert schema["additionalProperties"] is False


async def test_prometheus_metrics(server: Server) -> None:
    status, text, headers = await call(server, "/metrics", method="GET")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert "hookcast_sessions 0.0" in text
    assert 'hookcast_streams{role="publisher",status="PUBLISHING"} 0.0' in text
    assert 'hookcast_relay_packets_total{kind="video",result="forwarded"} 0.0' in text
    assert "# TYPE hookcast_stream_players gauge" in text


async def test_prometheus_counts_hook_calls_by_outcome(home: Home, start_server: Start) -> None:
    from tests.conftest import write_plugin

    write_plugin(home, "flaky", """
    from hookcast import hookimpl

    @hookimpl
    def after_server_start():
        pass

    @hookimpl
    def before_server_stop():
        raise RuntimeError("boom")
    """)
    server = await start_server(home)
    await server.bus.before_server_stop(server.info)
    _, text, _ = await call(server, "/metrics", method="GET")
    assert 'hookcast_hook_calls_total{hook="after_server_start",outcome="ok",plugin="flaky"} 1.0' in text
    assert 'hookcast_hook_calls_total{hook="before_server_stop",outcome="error",plugin="flaky"} 1.0' in text


@pytest.mark.parametrize("header", ["Bearer sécret", "Basic wqk=", "Basic é", "Basic !!!", "Digest x"])
async def test_odd_credentials_are_401_not_500(home: Home, start_server: Start, header: str) -> None:
    server = await start_server(home, rest_api_token="s3cret", rest_api_user="ops", rest_api_password="pw")
    status, body, headers = await call(server, "/rest-api/stream/find_all", headers={"Authorization": header})
    assert status == 401 and "authorization required" in body["message"]
    assert "Bearer" in headers["WWW-Authenticate"]


async def test_non_ascii_token_works(home: Home, start_server: Start) -> None:
    server = await start_server(home, rest_api_token="clé-секрет")
    ok = {"Authorization": "Bearer clé-секрет".encode().decode("latin-1")}
    assert (await call(server, "/rest-api/stream/find_all", headers={"Authorization": "Bearer nope"}))[0] == 401
    assert (await call(server, "/rest-api/stream/find_all", headers=ok))[0] == 404  # authorized, empty


async def test_metrics_need_auth_when_it_is_on(home: Home, start_server: Start) -> None:
    server = await start_server(home, rest_api_token="s3cret")
    assert (await call(server, "/metrics", method="GET"))[0] == 401
    status, text, _ = await call(server, "/metrics", method="GET", headers={"Authorization": "Bearer s3cret"})
    assert status == 200 and "hookcast_sessions" in text
