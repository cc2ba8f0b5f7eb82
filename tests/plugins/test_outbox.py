"""The REST-hook outbox against a real server and a real backend (in this process):
retries on 5xx/429/no answer, final 4xx kept dead, replay by REST, order per stream,
Standard Webhooks headers, and a database that cannot be used."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hookcast.server import Server
from tests.backend import Backend
from tests.conftest import make_home
from tests.core.rtc.relay_harness import wait_for
from tests.plugins.test_pull import publish, rest
from tests.plugins.test_rest_hooks import use_backend

Start = Callable[..., Any]
pytestmark = pytest.mark.usefixtures("loopback", "relay_installed")
FAST = {"rest_retry_min_delay": "0.2", "rest_retry_max_delay": "1"}


async def hooked(start_server: Start, tmp_path: Path, backend: Backend,
                 **properties: str) -> Server:
    home = make_home(tmp_path / "home")
    use_backend(home, backend, ("StreamStatusEvent", "ConnectionStatusEvent", "connect",
                                "publishStream", "RecordingStatusEvent"))
    server: Server = await start_server(home, **{**FAST, **properties})
    return server


def statuses(backend: Backend, name: str) -> list[str]:
    return [b["status"] for b in backend.bodies("StreamStatusEvent") if b["name"] == name]


async def test_a_backend_answering_500_then_200_gets_every_event_in_order(
        start_server: Start, connect_client: Callable[..., Any], tmp_path: Path,
        backend: Backend) -> None:
    backend.answers["StreamStatusEvent"] = (500, {}, 0.0)
    server = await hooked(start_server, tmp_path, backend, rest_hook_secret_key="whsec_"
                          + base64.b64encode(b"sixteen byte key").decode())
    client = await connect_client(server)
    stream, _, _ = await publish(client, "cam")
    await client.stop(stream)
    await wait_for(lambda: len(backend.bodies("StreamStatusEvent")) >= 4, 10)
    status, pending = await rest(server, "hooks/outbox/find_all", {"status": "pending"})
    assert status == 200 and {row["method"] for row in pending} == {"StreamStatusEvent"}
    first, second = sorted(pending, key=lambda row: row["id"])
    assert first["attempts"] >= 1 and first["lastResult"] == "http_5xx"
    assert second["attempts"] == 0, "the stream's next event waits for the one before"
    backend.answers.pop("StreamStatusEvent")
    assert await wait_for(lambda: statuses(backend, "cam")[-2:] == ["PUBLISHING", "UNPUBLISHED"],
                          10), "delivered once the backend answers"
    await wait_for(lambda: False, 0.5)  # nothing more comes
    delivered = [s for s in statuses(backend, "cam")]
    # the failed attempts and the delivery, in order: never UNPUBLISHED before PUBLISHING
    first_unpublished = delivered.index("UNPUBLISHED")
    assert "PUBLISHING" in delivered[:first_unpublished]
    # every attempt of one event carries the same id, signed as Standard Webhooks say
    sent = [(h, raw) for method, _, h, raw in backend.received if method == "StreamStatusEvent"]
    ids = {h["webhook-id"] for h, _ in sent}
    assert len(ids) == 2  # PUBLISHING and UNPUBLISHED, retried under the same ids
    for headers, raw in sent:
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + raw
        digest = base64.b64encode(hmac.new(b"sixteen byte key", signed,
                                           hashlib.sha256).digest()).decode()
        assert headers["webhook-signature"] == f"v1,{digest}"
    status, _ = await rest(server, "hooks/outbox/find_all", {"status": "pending"})
    assert status == 404


async def test_final_4xx_is_dead_429_is_retried_and_dead_rows_replay(
        start_server: Start, connect_client: Callable[..., Any], tmp_path: Path,
        backend: Backend) -> None:
    backend.answers["ConnectionStatusEvent"] = (400, {}, 0.0)
    backend.answers["StreamStatusEvent"] = (429, {}, 0.0)
    server = await hooked(start_server, tmp_path, backend)
    client = await connect_client(server)
    await publish(client, "retried")
    assert await wait_for(lambda: len(backend.bodies("StreamStatusEvent")) >= 3, 10), \
        "429 is tried again"
    status, dead = await rest(server, "hooks/outbox/find_all", {"status": "dead"})
    assert status == 200 and [row["method"] for row in dead] == ["ConnectionStatusEvent"]
    assert dead[0]["attempts"] == 1 and "final" in dead[0]["lastResult"]
    # replay: the backend takes it now
    backend.answers.pop("ConnectionStatusEvent")
    status, answer = await rest(server, "hooks/outbox/retry", {"ids": [dead[0]["id"]]})
    assert status == 200 and answer == {"retried": [dead[0]["id"]]}
    assert await wait_for(lambda: [b["status"] for b in backend.bodies(
        "ConnectionStatusEvent")].count("ESTABLISHED") == 2, 10), "the replay arrives"
    for _ in range(50):  # (the backend has it before the server has its answer)
        status, delivered = await rest(server, "hooks/outbox/find_all",
                                       {"status": "delivered", "appKey": "defaultApp"})
        if status == 200 and dead[0]["id"] in {row["id"] for row in delivered}:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"the replayed row is not delivered: {status} {delivered}")
    status, answer = await rest(server, "hooks/outbox/delete", {"status": "delivered"})
    assert status == 200 and answer["deleted"] >= 1
    status, answer = await rest(server, "hooks/outbox/delete", {"status": "pending"})
    assert status == 400 and answer["field"] == "status"  # pending rows are never deleted
    metrics = await _metrics(server)
    assert "hookcast_rest_outbox_depth{status=\"pending\"}" in metrics
    assert 'hookcast_rest_outbox_deliveries_total{result="http_4xx"}' in metrics


async def _metrics(server: Server) -> str:
    import aiohttp
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{server.http_port}/metrics") as response:
            return await response.text()


async def test_a_corrupt_database_is_moved_aside(
        start_server: Start, connect_client: Callable[..., Any], tmp_path: Path,
        backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    home = make_home(tmp_path / "home")
    use_backend(home, backend, ("StreamStatusEvent",))
    (home.root / "state").mkdir()
    (home.root / "state" / "outbox.db").write_bytes(os.urandom(8192))
    server = await start_server(home, **FAST)
    assert "could not be read" in caplog.text and "moved aside" in caplog.text
    assert list((home.root / "state").glob("outbox.db.corrupt-*"))
    await publish(await connect_client(server), "after")
    assert await wait_for(lambda: "PUBLISHING" in statuses(backend, "after"), 10)
    with sqlite3.connect(str(home.root / "state" / "outbox.db")) as db:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] >= 1


async def test_a_database_where_nothing_can_be_written_runs_in_memory(
        start_server: Start, connect_client: Callable[..., Any], tmp_path: Path,
        backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    """A read-only place (here /proc, where not even root can create a file): the
    server starts, says so in one sentence, and delivers from memory."""
    home = make_home(tmp_path / "home")
    use_backend(home, backend, ("StreamStatusEvent",))
    server = await start_server(home, rest_outbox_path="/proc/hookcast-outbox/outbox.db",
                                **FAST)
    said = [r.getMessage() for r in caplog.records if "kept in memory only" in r.getMessage()]
    assert len(said) == 1 and "\n" not in said[0]
    await publish(await connect_client(server), "volatile")
    assert await wait_for(lambda: "PUBLISHING" in statuses(backend, "volatile"), 10)
