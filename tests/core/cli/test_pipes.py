"""``hookcast ... | head``: a reader that goes away ends the command quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from hookcast.config.home import Home
from tests.served import Served


def into_a_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``hookcast args`` with its stdout a pipe whose reader has already gone, as
    ``| head`` leaves it once head has read enough: every write fails with EPIPE."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return subprocess.run(
            [sys.executable, "-m", "hookcast", *args],
            stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60,
        )
    finally:
        os.close(writer)


def test_no_broken_pipe_traceback_from_any_command(
    home: Home, serving: Callable[..., Served]
) -> None:
    served = serving()
    served.wait_ready()
    at_home = ("--home", str(home.root))
    commands = [
        ("config", "--list"),
        ("config", "--defaults"),
        ("config", "--check", *at_home),
        ("apps", "show", "-d", *at_home),
        ("app-rest-method", "show", "defaultApp", *at_home),
        ("streams", *at_home),
        ("streams", "--json", *at_home),
        ("terminate", "--all", *at_home),
        ("plugins", *at_home),
    ]
    for command in commands:
        result = into_a_closed_pipe(*command)
        assert (result.returncode, result.stderr) == (1, ""), command
    assert served.process.poll() is None
