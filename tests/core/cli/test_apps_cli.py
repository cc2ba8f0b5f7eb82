"""``hookcast apps`` / ``hookcast app-rest-method``: round trips on conf/apps.json, and a
running server picking the edits up."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from hookcast.config.apps import REST_METHODS, default_applications
from hookcast.config.home import Home
from hookcast.signalling.client import WcsClient
from tests.backend import Backend
from tests.served import hookcast


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


def write_default_apps(home: Home, mode: int) -> None:
    home.apps_file.write_text(json.dumps(default_applications().to_json(), indent=2) + "\n")
    home.apps_file.chmod(mode)


def mode_of(home: Home) -> int:
    return stat.S_IMODE(home.apps_file.stat().st_mode)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o664])
def test_an_edit_keeps_the_mode_of_apps_json(home: Home, mode: int) -> None:
    """A server running as a service user must still read the file after an edit."""
    write_default_apps(home, mode)
    result = hookcast("apps", "add", "MyApp", "myKey", "http://127.0.0.1:9/api", home=home)
    assert result.returncode == 0, result.stderr
    assert "MyApp" in apps(home)
    assert oct(mode_of(home)) == oct(mode)
    result = hookcast("app-rest-method", "add", "-a", "myKey", home=home)
    assert result.returncode == 0, result.stderr
    assert oct(mode_of(home)) == oct(mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may give a file to another user")
def test_an_edit_keeps_the_owner_and_group_of_apps_json(home: Home) -> None:
    write_default_apps(home, 0o640)
    os.chown(home.apps_file, 4321, 4322)
    result = hookcast("apps", "add", "MyApp", "myKey", "http://127.0.0.1:9/api", home=home)
    assert result.returncode == 0, result.stderr
    info = home.apps_file.stat()
    assert (info.st_uid, info.st_gid, oct(stat.S_IMODE(info.st_mode))) == (4321, 4322, oct(0o640))


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_a_new_apps_json_is_0644_less_the_umask(home: Home, umask: int, mode: int) -> None:
    assert not home.apps_file.exists()
    result = subprocess.run(
        ["sh", "-c", f'umask {umask:03o} && exec "$@"', "sh", sys.executable, "-m", "hookcast",
         "apps", "add", "MyApp", "myKey", "http://127.0.0.1:9/api", "--home", str(home.root)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert list(apps(home)) == ["defaultApp", "MyApp"]
    assert oct(mode_of(home)) == oct(mode)


def test_apps_update_without_an_option_names_the_options(home: Home) -> None:
    assert hookcast("apps", "add", "MyApp", "myKey", "http://127.0.0.1:9/api", home=home).returncode == 0
    before = home.apps_file.read_bytes()
    result = hookcast("apps", "update", "MyApp", home=home)
    assert result.returncode == 2
    assert "nothing to change" in result.stderr
    assert "--url" in result.stderr and "--key" in result.stderr
    assert "updated" not in result.stdout
    assert home.apps_file.read_bytes() == before
    result = hookcast("apps", "update", "--url", "", "MyApp", home=home)
    assert result.returncode == 2 and "url: expected a non-empty string" in result.stderr
    assert home.apps_file.read_bytes() == before


def test_an_apps_rest_client_config_is_checked_shown_and_kept_by_edits(home: Home) -> None:
    """A bad restClientConfig stops ``config --check``, ``apps`` and ``serve`` with the
    application and the field named; a good one is shown and survives an edit."""
    entry = {"name": "Guarded", "appKey": "guarded", "url": "http://127.0.0.1:9/api",
             "methods": ["publishStream"],
             "restClientConfig": {"publishStream": {"restOnError": "FAIL!"}}}
    home.apps_file.write_text(json.dumps({"apps": [entry]}))
    expected = (f"{home.apps_file}: application 'Guarded' (apps[0]).restClientConfig."
                "publishStream.restOnError: expected LOG or FAIL, got 'FAIL!'")
    for command in (("config", "--check"), ("apps", "show", "-d"), ("serve",)):
        result = hookcast(*command, home=home)
        assert result.returncode == 2 and expected in result.stderr, (command, result.stderr)
    entry["restClientConfig"] = {"publishStream": {"restOnError": "FAIL"}}
    home.apps_file.write_text(json.dumps({"apps": [entry]}))
    assert hookcast("config", "--check", home=home).returncode == 0
    shown = hookcast("apps", "show", "-d", home=home)
    assert "    restClientConfig publishStream: restOnError=FAIL, restPolicy=NOTIFY" in shown.stdout
    result = hookcast("apps", "update", "--url", "https://b.example/x", "Guarded", home=home)
    assert result.returncode == 0, result.stderr
    kept = apps(home)["Guarded"]["restClientConfig"]["publishStream"]
    assert (kept["restOnError"], apps(home)["Guarded"]["url"]) == ("FAIL", "https://b.example/x")
