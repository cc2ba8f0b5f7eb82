"""``hookcast apps`` / ``hookcast app-rest-method``: round trips on conf/apps.json, and a
running server picking the edits up."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

from hookcast.config.apps import REST_METHODS
from hookcast.config.home import Home
from hookcast.signalling.client import WcsClient
from tests.backend import Backend


async def cli(home: Home, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hookcast", *args, "--home", str(home.root),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


def apps(home: Home) -> dict[str, Any]:
    return {a["name"]: a for a in json.loads(home.apps_file.read_text())["apps"]}


async def test_apps_round_trip(home: Home) -> None:
    code, out, _ = await cli(home, "apps", "show", "-d")
    assert code == 0 and "defaultApp  key=defaultApp  url=/apps/EchoApp" in out
    assert (await cli(home, "apps", "add", "MyApp", "myKey", "http://127.0.0.1:9/api"))[0] == 0
    assert apps(home)["MyApp"] == {"name": "MyApp", "appKey": "myKey", "url": "http://127.0.0.1:9/api", "methods": []}
    code, _, err = await cli(home, "apps", "add", "MyApp", "other", "http://x")
    assert code == 2 and "exists" in err
    assert (await cli(home, "apps", "update", "--url", "https://b.example/x", "--key", "k2", "MyApp"))[0] == 0
    assert (apps(home)["MyApp"]["url"], apps(home)["MyApp"]["appKey"]) == ("https://b.example/x", "k2")
    code, _, err = await cli(home, "apps", "update", "--url", "ftp://nope", "MyApp")
    assert code == 2 and "expected an http:// or https:// URL" in err
    assert apps(home)["MyApp"]["url"] == "https://b.example/x", "a refused edit changes nothing"

    assert (await cli(home, "app-rest-method", "add", "k2", "connect"))[0] == 0
    assert (await cli(home, "app-rest-method", "show", "k2"))[1].split() == ["connect"]
    assert (await cli(home, "app-rest-method", "add", "-a", "k2"))[0] == 0
    assert apps(home)["MyApp"]["methods"] == list(REST_METHODS)
    assert (await cli(home, "app-rest-method", "remove", "k2", "StreamKeepAliveEvent"))[0] == 0
    assert "StreamKeepAliveEvent" not in apps(home)["MyApp"]["methods"]
    code, _, err = await cli(home, "app-rest-method", "add", "k2", "conect")
    assert code == 2 and f"unknown method conect; valid: {', '.join(REST_METHODS)}" in err
    assert (await cli(home, "app-rest-method", "remove", "-a", "k2"))[0] == 0
    assert apps(home)["MyApp"]["methods"] == []
    assert (await cli(home, "apps", "remove", "MyApp"))[0] == 0
    assert list(apps(home)) == ["defaultApp"]
    code, _, err = await cli(home, "apps", "remove", "Ghost")
    assert code == 2 and "no application named Ghost" in err
    assert not list(home.conf.glob(".apps.*")), "no temporary file is left behind"


async def test_running_server_picks_up_edits(
    home: Home, backend: Backend, start_server: Callable[..., Any]
) -> None:
    home.apps_file.write_text(json.dumps({"apps": [
        {"name": "defaultApp", "appKey": "defaultApp", "url": backend.url, "methods": []}]}))
    server = await start_server(home)
    first = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
    await first.connect()
    await first.close()
    assert backend.received == []
    assert (await cli(home, "app-rest-method", "add", "defaultApp", "connect"))[0] == 0
    for _ in range(100):
        client = WcsClient(f"ws://127.0.0.1:{server.ws_port}/")
        await client.connect()
        await client.close()
        if backend.bodies("connect"):
            break
        await asyncio.sleep(0.1)
    assert backend.bodies("connect"), "the running server did not reload apps.json"
