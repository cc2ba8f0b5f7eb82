"""``hookcast streams``, ``terminate`` and ``plugins`` against a real ``hookcast serve``:
a wrong ``--url``, an empty server, and a table of streams with awkward names."""

from __future__ import annotations

import asyncio
import json
import unicodedata
from collections.abc import Callable

import pytest
from aiortc.mediastreams import AudioStreamTrack

from hookcast.config.home import Home
from hookcast.signalling.client import WcsClient
from tests.core.rtc.relay_harness import PatternVideoTrack
from tests.served import Served, hookcast

REST_COMMANDS = (("streams",), ("terminate", "--all"), ("plugins",))


def test_the_websocket_port_is_not_taken_for_the_rest_api(
    home: Home, serving: Callable[..., Served]
) -> None:
    """The WebSocket port answers HTTP, but not with the REST API's JSON: say so."""
    served = serving()
    served.wait_ready()
    url = f"http://127.0.0.1:{served.ws_port}"
    for command in REST_COMMANDS:
        result = hookcast(*command, "--url", url, home=home)
        assert result.returncode == 1, (command, result.stderr)
        assert "Traceback" not in result.stderr, command
        assert "which is not the REST API's JSON" in result.stderr, command
        assert f"is {url} hookcast's HTTP port (http.port)?" in result.stderr, command
        assert "loading the plugins here" not in result.stderr, "a server did answer"
    assert served.process.poll() is None


def test_a_url_without_a_scheme_is_refused_naming_the_option(home: Home) -> None:
    for command in REST_COMMANDS:
        result = hookcast(*command, "--url", "127.0.0.1:8081", home=home)
        assert result.returncode == 2, (command, result.stderr)
        assert "Traceback" not in result.stderr and "unknown url type" not in result.stderr
        assert "--url: expected http://host:port, got '127.0.0.1:8081'" in result.stderr
    for url in ("localhost:8081", "ftp://127.0.0.1:8081", "http://h:port"):
        result = hookcast("streams", "--url", url, home=home)
        assert result.returncode == 2, (url, result.stderr)
        assert "Traceback" not in result.stderr and "argument --url: " in result.stderr, url


def test_terminate_all_on_an_empty_server_says_no_streams(
    home: Home, serving: Callable[..., Served]
) -> None:
    served = serving()
    served.wait_ready()
    result = hookcast("terminate", "--all", home=home)
    assert (result.returncode, result.stdout, result.stderr) == (0, "no streams\n", "")
    named = hookcast("terminate", "--name", "ghost", home=home)
    assert named.returncode == 1, "a filter that matches nothing is still an error"
    assert "Stream not found" in named.stderr


def display_width(text: str) -> int:
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def from_column(line: str, column: int) -> str:
    """What ``line`` shows from terminal column ``column`` on."""
    used = 0
    for index, ch in enumerate(line):
        if used == column:
            return line[index:]
        used += display_width(ch)
        assert used <= column, f"a character straddles column {column}: {line!r}"
    return ""


LONG = "long-" + "x" * 295
NAMES = (LONG, "東京カメラ-live", "cafe\u0301 ünïcödé", "📹 cam", "line\nbreak\x1b[31m")


@pytest.mark.usefixtures("loopback")
async def test_streams_table_keeps_its_columns_with_long_and_unicode_names(
    home: Home, serving: Callable[..., Served]
) -> None:
    served = serving(ip="127.0.0.1", max_stream_name_length="1000")
    await asyncio.to_thread(served.wait_ready)
    publisher = WcsClient(f"ws://127.0.0.1:{served.ws_port}/")
    try:
        await publisher.connect()
        for name in NAMES:
            stream = await publisher.publish(name, [PatternVideoTrack(), AudioStreamTrack()])
            await stream.wait_status("PUBLISHING")
        result = await asyncio.to_thread(hookcast, "streams", home=home)
        as_json = await asyncio.to_thread(hookcast, "streams", "--json", home=home)
    finally:
        await publisher.close()
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 + len(NAMES), result.stdout
    header = lines[0]
    for title in ("ROLE", "STATUS", "CODECS", "SIZE"):
        column = display_width(header[:header.index(title)])
        for line in lines[1:]:
            cell = from_column(line, column)
            assert cell.startswith({"ROLE": "publisher ", "STATUS": "PUBLISHING ",
                                    "CODECS": "VP8/", "SIZE": "320x240"}[title]), (title, line)
    assert LONG[:30] in result.stdout and "x" * 60 not in result.stdout
    assert "…" in next(line for line in lines if LONG[:30] in line), "the cut is visible"
    for name in NAMES[1:4]:
        assert name in result.stdout
    assert "line\\nbreak\\x1b[31m" in result.stdout and "\x1b" not in result.stdout
    assert sorted(s["name"] for s in json.loads(as_json.stdout)) == sorted(NAMES)
