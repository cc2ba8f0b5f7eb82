"""``hookcast`` as a user runs it: a real subprocess, real ports, real signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.home import Home
from core.settings import known_properties
from tests.conftest import write_plugin


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def hookcast(*args: str, home: Home | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "core.cli", *args]
    if home is not None:
        command += ["--home", str(home.root)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def configure(home: Home, **extra: str) -> dict[str, int]:
    ports = {"ws.port": free_port(), "http.port": free_port()}
    lines = {"bind_address": "127.0.0.1", **{k: str(v) for k, v in ports.items()}, **extra}
    home.properties_file.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    return ports


class Served:
    def __init__(self, process: subprocess.Popen[str], http_port: int) -> None:
        self.process = process
        self.http_port = http_port

    def health(self) -> dict[str, object]:
        url = f"http://127.0.0.1:{self.http_port}/rest-api/health"
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def wait_ready(self, timeout: float = 30) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, self.process.communicate()[1]
            try:
                return self.health()
            except OSError:
                assert time.monotonic() < deadline, "server did not answer health in time"
                time.sleep(0.1)


@pytest.fixture
def serving(home: Home) -> Iterator[Callable[..., Served]]:
    """Start ``hookcast serve`` on free ports (extra properties allowed); killed at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(**properties: str) -> Served:
        ports = configure(home, **properties)
        process = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "serve", "--home", str(home.root)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        started.append(process)
        return Served(process, ports["http.port"])

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_health_and_stops_cleanly(
    serving: Callable[..., Served], signum: int
) -> None:
    serve = serving()
    health = serve.wait_ready()
    assert health["status"] == "ok"
    assert health["version"] == "0.1.0"
    assert isinstance(health["uptime"], float)
    serve.process.send_signal(signum)
    _, stderr = serve.process.communicate(timeout=20)
    assert serve.process.returncode == 0, stderr
    assert "HTTP listening on http://127.0.0.1:" in stderr
    assert "WebSocket listening on ws://127.0.0.1:" in stderr
    assert "shutting down" in stderr and "stopped" in stderr


def test_second_signal_forces_exit(home: Home, serving: Callable[..., Served]) -> None:
    write_plugin(home, "slow_stop", """
    import asyncio
    from core import hookimpl

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
    _, stderr = serve.process.communicate(timeout=10)
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
        [sys.executable, "-m", "core.cli", "config", "--check"],
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
    root = Path(__file__).resolve().parents[2]
    result = hookcast("config", "--check", home=Home(root))
    assert result.returncode == 0, result.stderr


def test_plugins_lists_hooks_and_sources(home: Home) -> None:
    write_plugin(home, "namer", """
    from core import hookimpl

    @hookimpl
    def record_file_name(stream):
        return "x"
    """)
    write_plugin(home, "broken", "raise SystemError('bad')\n")
    result = hookcast("plugins", home=home)
    assert "echo_app  [built-in]\n    hooks: register_rest_routes" in result.stdout
    assert f"namer  [file {home.plugins / 'namer.py'}]\n    hooks: record_file_name" in result.stdout
    assert f"failed: {home.plugins / 'broken.py'}:1: SystemError: bad" in result.stdout
    assert result.returncode == 1


def test_tls_listeners_start_with_a_certificate(home: Home, serving: Callable[..., Served]) -> None:
    import ssl

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
    with socket.create_connection(("127.0.0.1", wss_port)) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() is not None


def test_unreadable_certificate_names_the_properties(home: Home) -> None:
    configure(home, tls_certificate="conf/missing.pem", tls_private_key="conf/missing.pem")
    result = hookcast("serve", home=home)
    assert result.returncode == 1
    assert "tls_certificate=conf/missing.pem, tls_private_key=conf/missing.pem: cannot load" in result.stderr
