"""``hookcast`` as a user runs it: a real subprocess, real ports, real signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from hookcast.config.home import Home
from hookcast.config.settings import known_properties
from tests.conftest import write_plugin
from tests.served import REPO, Served, configure, free_port, hookcast


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_health_and_stops_cleanly(
    serving: Callable[..., Served], signum: int
) -> None:
    serve = serving()
    health = serve.wait_ready()
    assert health["status"] == "ok"
    assert health["version"] == "0.1.0"
    assert isinstance(health["uptime"], float)
    stderr = serve.stop(signum=signum)
    assert serve.process.returncode == 0, stderr
    assert "HTTP listening on http://127.0.0.1:" in stderr
    assert "WebSocket listening on ws://127.0.0.1:" in stderr
    assert "shutting down" in stderr and "stopped" in stderr


def test_second_signal_forces_exit(home: Home, serving: Callable[..., Served]) -> None:
    write_plugin(home, "slow_stop", """
    import asyncio
    from hookcast import hookimpl

    @hookimpl
    async def before_server_stop():
        await asyncio.sleep(60)
    """)
    serve = serving(plugin_hook_timeout="120")
    serve.wait_ready()
    serve.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert serve.process.poll() is None, "the first signal waits for the graceful stop"
    serve.process.send_signal(signal.SIGTERM)
    stderr = serve.wait(timeout=10)
    assert serve.process.returncode == 130
    assert "second SIGTERM: exiting now" in stderr


def test_port_taken_exits_non_zero_naming_the_property(home: Home) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        configure(home, **{"ws.port": str(port)})
        result = hookcast("serve", home=home)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port} (ws.port): address already in use" in result.stderr


def test_bad_configuration_stops_start_naming_file_and_property(home: Home) -> None:
    home.properties_file.write_text("record_rotation=abc\nws.port=http\n")
    result = hookcast("serve", home=home)
    assert result.returncode == 2
    assert (
        f"{home.properties_file}: record_rotation=abc: expected seconds (20) or megabytes (20M)"
        in result.stderr
    )
    assert f"{home.properties_file}: ws.port=http: expected a whole number" in result.stderr


def test_bad_apps_json_stops_start(home: Home) -> None:
    home.apps_file.write_text('{"apps": [{"name": "a", "appKey": "k", "url": "ftp://x"}]}')
    result = hookcast("config", "--check", home=home)
    assert result.returncode == 2
    assert "apps[0].url: expected an http:// or https:// URL" in result.stderr


def test_home_from_environment(home: Home) -> None:
    home.properties_file.write_text("ws.port=nope\n")
    result = subprocess.run(
        [sys.executable, "-m", "hookcast", "config", "--check"],
        capture_output=True, text=True, env={**os.environ, "HOOKCAST_HOME": str(home.root)},
        cwd=Path(__file__).parent,
    )
    assert result.returncode == 2 and str(home.properties_file) in result.stderr


def test_config_list_prints_every_property() -> None:
    result = hookcast("config", "--list")
    assert result.returncode == 0
    for info in known_properties():
        assert f"\n{info.name}=" in "\n" + result.stdout
        assert info.description in result.stdout


def test_config_check_accepts_the_checkout() -> None:
    result = hookcast("config", "--check", home=Home(REPO))
    assert result.returncode == 0, result.stderr


def test_config_list_prints_defaults_as_the_shipped_file_does() -> None:
    """``ip=`` (empty), never ``ip=""``: the same assignment as conf/server.properties."""
    result = hookcast("config", "--list")
    assert result.returncode == 0, result.stderr
    listed = [line for line in result.stdout.splitlines() if not line.startswith(" ")]
    shipped = [line for line in (REPO / "conf" / "server.properties").read_text().splitlines()
               if line and not line.startswith("#")]
    assert "ip=" in listed
    assert listed == shipped


def test_config_check_reports_unknown_properties_as_warnings(home: Home) -> None:
    """As serve: a warning with the nearest known name, and the check still passes."""
    home.properties_file.write_text("ws.prot=9000\nhttp.port=9001\nrecord_rotatoin=20\n")
    result = hookcast("config", "--check", home=home)
    assert result.returncode == 0, result.stderr
    source = home.properties_file
    assert result.stderr.splitlines() == [
        f"hookcast: warning: {source}: unknown property ws.prot; did you mean ws.port? (ignored)",
        f"hookcast: warning: {source}: unknown property record_rotatoin; "
        "did you mean record_rotation? (ignored)",
    ]
    assert result.stdout == f"{home.conf}: configuration is valid (2 warnings)\n"


def test_config_check_lists_warnings_beside_errors(home: Home) -> None:
    """A bad value does not hide an unknown property: every problem at once, status 2;
    serve says the same before it refuses to start."""
    home.properties_file.write_text("ws.prot=9000\nws.port=http\nrecord_rotatoin=20\n")
    source = home.properties_file
    expected = [
        f"hookcast: warning: {source}: unknown property ws.prot; did you mean ws.port? (ignored)",
        f"hookcast: warning: {source}: unknown property record_rotatoin; "
        "did you mean record_rotation? (ignored)",
        f"hookcast: {source}: ws.port=http: expected a whole number from 0 to 65535 "
        "(TCP port, 0 picks a free one)",
    ]
    for command in (("config", "--check"), ("serve",)):
        result = hookcast(*command, home=home)
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr.splitlines() == expected, command
        assert "configuration is valid" not in result.stdout


def test_config_check_and_serve_refuse_an_ip_not_of_this_machine(home: Home) -> None:
    """192.0.2.1 (TEST-NET-1) is never an address of this machine: an error, status 2,
    reported with every other problem; serve refuses it the same way."""
    configure(home, ip="192.0.2.1", **{"ws.prot": "1"})
    home.apps_file.write_text('{"apps": [{"name": "a", "appKey": "k", "url": "ftp://x"}]}')
    checked = hookcast("config", "--check", home=home)
    assert checked.returncode == 2
    refused = f"hookcast: {home.properties_file}: ip=192.0.2.1: not an address of this machine"
    assert refused in checked.stderr
    assert "apps[0].url: expected an http:// or https:// URL" in checked.stderr
    assert "unknown property ws.prot; did you mean ws.port?" in checked.stderr
    assert "configuration is valid" not in checked.stdout
    home.apps_file.unlink()
    served = hookcast("serve", home=home)
    assert served.returncode == 2 and refused in served.stderr
    configure(home, ip="127.0.0.1")
    assert hookcast("config", "--check", home=home).returncode == 0


def test_plugins_without_a_server_loads_them_here_and_says_so(home: Home) -> None:
    write_plugin(home, "namer", """
    from hookcast import hookimpl

    @hookimpl
    def record_file_name(stream):
        return "x"
    """)
    write_plugin(home, "broken", "raise SystemError('bad')\n")
    result = hookcast("plugins", home=home)
    assert "cannot reach hookcast at http://127.0.0.1:8081" in result.stderr
    assert "loading the plugins here instead" in result.stderr
    assert "echo_app  [built-in]\n    hooks: register_rest_routes" in result.stdout
    assert f"namer  [file {home.plugins / 'namer.py'}]\n    hooks: record_file_name" in result.stdout
    assert f"failed: {home.plugins / 'broken.py'}:1: SystemError: bad" in result.stdout
    assert result.returncode == 1


def test_plugins_asks_the_running_server(home: Home, serving: Callable[..., Served]) -> None:
    """The server's own view: a drop-in whose edit broke stays loaded (previous version) and
    its failure is listed once, the latest one; a dry load could show neither."""
    namer = write_plugin(home, "namer", """
    from hookcast import hookimpl

    @hookimpl
    def record_file_name(stream):
        return "x"
    """)
    serve = serving()
    serve.wait_ready()
    namer.write_text("raise SystemError('first')\n")
    wait_until(lambda: "first" in hookcast("plugins", home=home).stdout)
    namer.write_text("raise SystemError('second')\n")
    wait_until(lambda: "second" in hookcast("plugins", home=home).stdout)
    result = hookcast("plugins", home=home)
    assert result.stderr == ""
    assert f"namer  [file {namer}]\n    hooks: record_file_name" in result.stdout
    assert result.stdout.count("failed:") == 1
    assert f"failed: {namer}:1: SystemError: second" in result.stdout
    assert result.stdout.count("echo_app  [built-in]") == 1
    assert result.returncode == 1


def wait_until(condition: Callable[[], bool], limit: float = 20) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_tls_listeners_start_with_a_certificate(home: Home, serving: Callable[..., Served]) -> None:
    import trustme

    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certificate.private_key_and_cert_chain_pem.write_to_path(str(home.conf / "server.pem"))
    https_port, wss_port = free_port(), free_port()
    serve = serving(**{
        "tls_certificate": "conf/server.pem", "tls_private_key": "conf/server.pem",
        "https.port": str(https_port), "wss.port": str(wss_port),
    })
    serve.wait_ready()
    context = ssl.create_default_context()
    authority.configure_trust(context)
    url = f"https://127.0.0.1:{https_port}/rest-api/health"
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        assert json.loads(response.read())["status"] == "ok"
    asyncio.run(_signalling_over_tls(wss_port, context))


async def _signalling_over_tls(port: int, context: ssl.SSLContext) -> None:
    """A WCS session over wss://: connection answered by getUserData."""
    async with aiohttp.ClientSession() as http, http.ws_connect(
        f"wss://127.0.0.1:{port}/", ssl=context
    ) as ws:
        await ws.send_json({"message": "connection", "data": [{"appKey": "defaultApp"}]})
        answer = await ws.receive_json(timeout=10)
        assert answer["message"] == "getUserData" and answer["data"][0]["sessionId"]


def test_unreadable_certificate_names_the_properties(home: Home) -> None:
    configure(home, tls_certificate="conf/missing.pem", tls_private_key="conf/missing.pem")
    result = hookcast("serve", home=home)
    assert result.returncode == 1
    assert "tls_certificate=conf/missing.pem, tls_private_key=conf/missing.pem: cannot load" in result.stderr
