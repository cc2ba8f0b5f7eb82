"""Downloads of a real recording with HTTP byte ranges (RFC 9110, section 14), over real
HTTP: satisfiable ranges answer 206, unsatisfiable or invalid ones 416 with
``Content-Range: bytes */<size>``, ranges the server ignores the whole file (200)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from hookcast.config.home import Home
from hookcast.keys import ENGINE
from hookcast.server import Server
from tests.core.recording.test_recording import http, publish, settled

Start = Callable[..., Any]
pytestmark = pytest.mark.usefixtures("loopback")


async def recorded(server: Server, client: Any) -> str:
    stream, _ = await publish(client, "cam", record=True)
    await asyncio.sleep(2)
    await server.http_app[ENGINE].terminate([server.http_app[ENGINE].registry.publisher("cam")])
    await settled(server)
    return str(stream.last["recordName"])


async def test_byte_ranges(home: Home, start_server: Start,
                           connect_client: Callable[..., Any]) -> None:
    server = await start_server(home)
    name = await recorded(server, await connect_client(server))
    content = (home.records / name).read_bytes()
    size = len(content)
    path = f"/client/records/{name}"

    async def get(range_: str, **headers: str) -> tuple[int, bytes, dict[str, str]]:
        status, body, answer = await http(server, "GET", path, headers={"Range": range_, **headers})
        return status, body if isinstance(body, bytes) else b"", answer

    unsatisfiable = ["bytes=-0", "bytes=-00", f"bytes={size}-", f"bytes={size}-{size + 5}",
                     "bytes=5-2", "bytes=abc", "bytes=", "bytes=-", "bytes=1-2-3",
                     "bytes=" + "9" * 5000 + "-"]
    for header in unsatisfiable:
        status, body, answer = await get(header)
        assert status == 416, (header, status)
        assert answer["Content-Range"] == f"bytes */{size}" and len(body) < 200, header
    satisfiable = {
        "bytes=0-0": (0, 0), "bytes=100-1099": (100, 1099), "bytes=100-": (100, size - 1),
        "bytes=-10": (size - 10, size - 1), f"bytes=-{size * 10}": (0, size - 1),
        f"bytes=0-{size * 10}": (0, size - 1), f"bytes={size - 1}-": (size - 1, size - 1),
        "BYTES=5-9": (5, 9),
    }
    for header, (first, last) in satisfiable.items():
        status, body, answer = await get(header)
        assert status == 206 and body == content[first:last + 1], header
        assert answer["Content-Range"] == f"bytes {first}-{last}/{size}", header
        assert int(answer["Content-Length"]) == last - first + 1
    for ignored in ("bytes=0-1,5-6", "items=0-5", "nonsense"):
        status, body, _ = await get(ignored)
        assert status == 200 and body == content, ignored
    # If-Range: the range applies only to the very file named
    status, _, answer = await http(server, "GET", path)
    etag, modified = answer["Etag"], answer["Last-Modified"]  # as aiohttp spells it
    assert (await get("bytes=0-9", **{"If-Range": etag}))[:2] == (206, content[:10])
    assert (await get("bytes=0-9", **{"If-Range": modified}))[:2] == (206, content[:10])
    assert (await get("bytes=0-9", **{"If-Range": '"another"'}))[:2] == (200, content)
    status, _, _ = await http(server, "GET", path, headers={"If-None-Match": etag})
    assert status == 304
    async with aiohttp.ClientSession() as session, session.head(
            f"http://127.0.0.1:{server.http_port}{path}") as response:
        assert response.status == 200 and int(response.headers["Content-Length"]) == size
        assert await response.read() == b""
