"""Running ``hookcast`` as a user does: the command in a subprocess, on free ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from hookcast.config.home import Home

#: the checkout (a working server home)
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def hookcast(*args: str, home: Home | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "hookcast", *args]
    if home is not None:
        command += ["--home", str(home.root)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def configure(home: Home, **extra: str) -> dict[str, int]:
    ports = {"ws.port": free_port(), "http.port": free_port()}
    lines = {"bind_address": "127.0.0.1", **{k: str(v) for k, v in ports.items()}, **extra}
    home.properties_file.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    return ports


class Served:
    """A ``hookcast serve`` process. Its stderr goes to a file (appended, never a pipe
    that nobody reads, which would block the server's logging once full)."""

    def __init__(self, process: subprocess.Popen[str], http_port: int, ws_port: int = 0,
                 log: Path | None = None, home: Home | None = None) -> None:
        self.process = process
        self.home = home
        self.http_port = http_port
        self.ws_port = ws_port
        self._log = log

    @classmethod
    def start(cls, home: Home, command: tuple[str, ...] = (sys.executable, "-m", "hookcast"),
              cwd: Path | None = None, args: tuple[str, ...] = (),
              env: dict[str, str] | None = None) -> Served:
        """Serve ``home`` (ports from its server.properties, as ``configure`` wrote them);
        ``args`` go after ``serve`` (``--workers 2``), ``env`` replaces the environment."""
        properties = dict(line.split("=", 1) for line in home.properties_file.read_text()
                          .splitlines() if "=" in line and not line.startswith("#"))
        handle, name = tempfile.mkstemp(prefix="hookcast-serve-", suffix=".log")
        os.close(handle)
        with open(name, "a") as log:  # O_APPEND: the server's writes always land at the end
            process = subprocess.Popen(
                [*command, "serve", "--home", str(home.root), *args], cwd=cwd,
                stdout=subprocess.DEVNULL, stderr=log, text=True, env=env,
            )
        return cls(process, int(properties["http.port"]), int(properties["ws.port"]), Path(name),
                   home)

    def log(self) -> str:
        """What the server has written to stderr so far."""
        return self._log.read_text(errors="replace") if self._log is not None else ""

    def log_size(self) -> int:
        """Bytes the server has written to stderr so far (without reading them)."""
        return self._log.stat().st_size if self._log is not None else 0

    def remove_log(self) -> None:
        """Delete the stderr file (a test that may make it big cleans up after itself)."""
        if self._log is not None:
            self._log.unlink(missing_ok=True)

    def wait(self, timeout: float = 20) -> str:
        """Wait for the process to exit (killing it past ``timeout``); returns its stderr."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"hookcast serve did not stop within {timeout} s\n"
                                 f"{self.log()[-3000:]}") from None
        return self.log()

    def stop(self, timeout: float = 20, signum: int = signal.SIGTERM) -> str:
        """Send ``signum`` (SIGTERM), then wait; returns what the server wrote to stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.wait(timeout)

    def get(self, path: str) -> str:
        """The text a GET of ``path`` on the HTTP port answers."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}",
                                    timeout=5) as response:
            return str(response.read().decode())

    def health(self) -> dict[str, object]:
        url = f"http://127.0.0.1:{self.http_port}/rest-api/health"
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def wait_ready(self, timeout: float = 30) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, self.log()
            try:
                return self.health()
            except OSError:
                assert time.monotonic() < deadline, "server did not answer health in time"
                time.sleep(0.1)
