"""The README's promises hold: its two commands come first and its plugin example works."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hookcast import SessionInfo, StreamInfo
from hookcast.config.home import Home

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"\n### {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def test_readme_opens_with_the_two_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block is not None and README.index(first_block.group(0)) < README.index("\n## ")
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make run", "make test"]


async def test_writing_a_plugin_example_loads_and_works(
    home: Home, start_server: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    code = re.search(r"```python\n(.*?)```", section("Writing a plugin"), re.S)
    assert code is not None
    (home.plugins / "guard.py").write_text(code.group(1))
    server = await start_server(home)
    assert "guard" in [p.name for p in server.bus.plugins()]

    session = SessionInfo("s1", "defaultApp", "ESTABLISHED", "127.0.0.1")
    stream = StreamInfo("m1", "private-room", True, "PENDING", "s1", "defaultApp")
    verdict = await server.bus.before_publish(session, stream)
    assert (verdict.admitted, verdict.reason) == (False, "Stream name private-room is reserved")
    public = StreamInfo("m2", "lobby", True, "PENDING", "s1", "defaultApp")
    assert (await server.bus.before_publish(session, public)).admitted

    caplog.set_level(logging.INFO, logger="guard")
    await server.bus.after_stream_status(
        StreamInfo("m2", "lobby", True, "PUBLISHING", "s1", "defaultApp"), "PENDING"
    )
    assert "publisher lobby: PENDING -> PUBLISHING" in caplog.text
