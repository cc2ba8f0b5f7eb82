"""schemathesis drives every operation of /rest-api/openapi.json against a real
``hookcast serve`` process with live streams and sessions: every operation answers 200
to a valid request on that state, no request gets a 5xx, and every response (the
successes included) conforms to the document."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiortc.mediastreams import AudioStreamTrack
from hypothesis import HealthCheck, given, settings

from hookcast.config.home import Home
from hookcast.signalling.client import WcsClient
from tests.cluster.redis_server import RedisServer
from tests.core.rtc.relay_harness import PatternVideoTrack
from tests.plugins.vod_files import make_media
from tests.served import Served, configure


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("home")
    for folder in ("conf", "plugins", "records", "media"):
        (root / folder).mkdir()
    make_media(root / "media" / "clip.mp4", seconds=20)
    home = Home(Path(root))
    # a cluster of one node: the cluster-wide answers and /cluster/find_all are checked
    # against the document too
    redis = RedisServer(tmp_path_factory.mktemp("redis")).start()
    ports = configure(home, ip="127.0.0.1", cluster_redis_url=redis.url,
                      cluster_secret="schema")
    # the echo application, and one whose notifications are answered 404 (dead rows in
    # the outbox, for hooks/outbox/retry)
    home.apps_file.write_text(json.dumps({"apps": [
        {"name": "defaultApp", "appKey": "defaultApp", "url": "/apps/EchoApp",
         "methods": ["connect", "publishStream", "playStream", "ConnectionStatusEvent",
                     "StreamStatusEvent", "unPublishStream", "stopStream"]},
        {"name": "broken", "appKey": "broken",
         "url": f"http://127.0.0.1:{ports['http.port']}/no-such-backend",
         "methods": ["ConnectionStatusEvent"]},
    ]}))
    served = Served.start(home)
    try:
        served.wait_ready()
        yield served
        served.stop()
    finally:
        redis.stop()


async def live_state(ws_port: int) -> tuple[list[WcsClient], dict[str, str]]:
    """Publishers, a player and sessions with custom fields; returns their ids."""
    url = f"ws://127.0.0.1:{ws_port}/"
    clients = [WcsClient(url) for _ in range(4)]
    publisher, player, victim, idle = clients
    await publisher.connect(custom={"room": "a", "tags": ["x"]})
    cam = await publisher.publish("cam", [PatternVideoTrack(), AudioStreamTrack()])
    await cam.wait_status("PUBLISHING")
    await player.connect()
    played = await player.play("cam")
    await played.wait_status("PLAYING")
    await victim.connect()
    doomed = await victim.publish("victim", [PatternVideoTrack()])
    await doomed.wait_status("PUBLISHING")
    await idle.connect(clientVersion="9.9")
    dead = WcsClient(url)  # its ESTABLISHED notification is answered 404: a dead row
    clients.append(dead)
    await dead.connect(appKey="broken")
    return clients, {"cam": cam.media_session_id, "idle": idle.session_id, "url": url}


#: a valid request for each operation, in an order where each can succeed: (method,
#: path, body or None, what to wait for first: None, seconds, or a condition);
#: terminates come last
def valid_requests(ids: dict[str, str], records: Path) -> list[tuple[str, str, Any, Any]]:
    def finished_file() -> bool:
        names = [p.name for p in records.iterdir()]
        return "second-cam-1.webm" in names and not any(n.startswith(".") for n in names)

    cam = {"mediaSessionId": ids["cam"]}
    return [
        ("GET", "/rest-api/health", None, None),
        ("GET", "/rest-api/stream/find_all", None, None),
        ("POST", "/rest-api/stream/find_all", {}, None),
        ("POST", "/rest-api/stream/find", {"name": "cam", "display": ["metrics"]}, None),
        ("POST", "/rest-api/stream/metrics", cam, None),
        ("GET", "/rest-api/connection/find_all", None, None),
        ("POST", "/rest-api/connection/find_all", {}, None),
        ("GET", "/rest-api/plugins/find_all", None, None),
        ("POST", "/rest-api/plugins/find_all", {}, None),
        ("POST", "/rest-api/stream/startRecording", cam, None),
        ("GET", "/rest-api/recorder/find_all", None, 1.0),
        ("POST", "/rest-api/recorder/find_all", {}, None),
        ("POST", "/rest-api/stream/stopRecording", cam, None),
        ("POST", "/rest-api/recorder/startup",
         {**cam, "config": {"fileTemplate": "second-{streamName}", "rotation": "20"}}, None),
        ("POST", "/rest-api/recorder/terminate", cam, 1.5),
        ("GET", "/rest-api/records/find_all", None, finished_file),
        ("POST", "/rest-api/records/find_all", {}, None),
        ("POST", "/rest-api/records/delete", {"fileName": "second-cam-1.webm"}, finished_file),
        ("POST", "/rest-api/vod/startup",
         {"uri": "vod-live://clip.mp4", "localStreamName": "channel", "loop": True}, None),
        ("POST", "/rest-api/vod/find", {"localStreamName": "channel"}, None),
        ("GET", "/rest-api/vod/find_all", None, None),
        ("POST", "/rest-api/vod/find_all", {}, None),
        ("GET", "/rest-api/media/find_all", None, None),
        ("POST", "/rest-api/media/find_all", {}, None),
        ("POST", "/rest-api/vod/terminate", {"localStreamName": "channel"}, 1.0),
        # the server pulls its own "cam" as "copy" and pushes it to itself as "pushed"
        ("POST", "/rest-api/pull/pull", {"uri": ids["url"], "localStreamName": "copy",
                                         "remoteStreamName": "cam"}, None),
        ("POST", "/rest-api/pull/push", {"uri": ids["url"], "localStreamName": "cam",
                                         "remoteStreamName": "pushed", "custom": {"a": 1},
                                         "appKey": "defaultApp"}, None),
        ("GET", "/rest-api/pull/find_all", None, None),
        ("GET", "/rest-api/cluster/find_all", None, None),
        ("POST", "/rest-api/cluster/find_all", {}, None),
        ("GET", "/rest-api/hooks/find_all", None, None),
        ("GET", "/rest-api/hooks/outbox/find_all", None, None),
        ("POST", "/rest-api/hooks/outbox/find_all", {"status": "dead", "appKey": "broken"},
         None),
        ("POST", "/rest-api/hooks/outbox/retry", {"appKey": "broken"}, 2.0),
        ("POST", "/rest-api/hooks/outbox/delete", {"status": "delivered"}, None),
        ("POST", "/rest-api/hooks/find_all", {}, None),
        ("POST", "/rest-api/pull/find_all", {}, None),
        ("POST", "/rest-api/pull/terminate", {"localStreamName": "copy"}, None),
        ("POST", "/rest-api/stream/terminate", {"name": "victim"}, None),
        ("POST", "/rest-api/connection/terminate", {"sessionId": ids["idle"]}, None),
    ]


@pytest.mark.usefixtures("loopback", "relay_installed")
async def test_rest_api_conforms_to_its_openapi_document(served: Served) -> None:
    schema = schemathesis.openapi.from_url(
        f"http://127.0.0.1:{served.http_port}/rest-api/openapi.json"
    )
    operations = {(o.method.upper(), o.path): o
                  for o in (r.ok() for r in schema.get_all_operations())}
    clients, ids = await live_state(served.ws_port)
    try:
        assert served.home is not None
        requests = valid_requests(ids, served.home.records)
        assert {(m, p) for m, p, _, _ in requests} == set(operations), "a valid request each"
        for method, path, body, ready in requests:
            if isinstance(ready, float):  # media flows meanwhile
                await asyncio.sleep(ready)
            for _ in range(200):
                if ready is None or isinstance(ready, float) or ready():
                    break
                await asyncio.sleep(0.05)
            operation = operations[(method, path)]
            case = operation.Case() if body is None else operation.Case(
                body=body, media_type="application/json")
            response = await asyncio.to_thread(case.call_and_validate)
            assert response.status_code == 200, (method, path, response.text, sorted(
                p.name for p in served.home.records.iterdir()))
        for (_, path), operation in operations.items():
            if path in CONNECTS:  # generated URIs would have the server connect anywhere
                continue
            await asyncio.to_thread(_generated, operation)
    finally:
        for client in clients:
            await client.close()


CONNECTS = ("/rest-api/pull/pull", "/rest-api/pull/push")


def _generated(operation: Any) -> None:
    """40 generated requests, every schemathesis check on each response."""

    @given(case=operation.as_strategy())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate()

    check()


