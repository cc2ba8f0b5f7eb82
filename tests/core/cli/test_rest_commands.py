"""``hookcast pull``, ``push``, ``records`` and ``vod`` against a real ``hookcast serve``:
tables and ``--json``, the server's refusals naming the field (status 1), a wrong command
line (status 2), and a push terminated without touching a pull of the same name."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from hookcast.config.home import Home
from tests.plugins.vod_files import make_media
from tests.served import Served, hookcast


@pytest.fixture
def served(home: Home, serving: Callable[..., Served]) -> Served:
    """A server with media/clip.mp4 and records/old.mp4 (media only on 127.0.0.1)."""
    make_media(home.media / "clip.mp4", seconds=4)
    make_media(home.records / "old.mp4", seconds=2)
    server = serving(ip="127.0.0.1", vod_live_idle_timeout="600")
    server.wait_ready()
    return server


def ok(*args: str, home: Home) -> str:
    result = hookcast(*args, home=home)
    assert (result.returncode, result.stderr) == (0, ""), (args, result.stdout)
    return result.stdout


def refused(*args: str, home: Home, code: int = 1) -> str:
    result = hookcast(*args, home=home)
    assert result.returncode == code, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr


def test_vod_start_list_terminate(home: Home, served: Served) -> None:
    assert ok("vod", "list", home=home).split() == ["MEDIA", "SESSION", "NAME", "URI", "LOOP"]
    assert json.loads(ok("vod", "list", "--json", home=home)) == []
    assert ok("vod", "start", "vod-live://clip.mp4", "--name", "channel", "--loop",
              home=home) == "started vod-live://clip.mp4 as channel (looping)\n"
    table = ok("vod", "list", home=home).splitlines()
    assert len(table) == 2 and table[1].split()[1:] == ["channel", "vod-live://clip.mp4", "yes"]
    [entry] = json.loads(ok("vod", "list", "--json", home=home))
    assert (entry["localStreamName"], entry["loop"]) == ("channel", True)
    assert "channel" in ok("streams", home=home)
    assert "localStreamName: 'channel' is already in use" in refused(
        "vod", "start", "vod-live://clip.mp4", "--name", "channel", home=home)
    assert "uri: 'vod://clip.mp4' is not a shared source" in refused(
        "vod", "start", "vod://clip.mp4", home=home)
    assert "File not found" in refused("vod", "start", "vod-live://missing.mp4", home=home)
    assert ok("vod", "terminate", "channel", home=home) == "terminated 1 reading\n"
    assert "hookcast: Not found" in refused("vod", "terminate", "channel", home=home)
    assert "argument --loop/--no-loop: ignored explicit argument" in refused(
        "vod", "start", "vod-live://clip.mp4", "--loop=yes", home=home, code=2)


def test_records_list_and_delete(home: Home, served: Served) -> None:
    lines = ok("records", "list", home=home).splitlines()
    assert lines[0].split() == ["FILE", "SIZE", "DURATION", "CODECS", "PICTURE", "MADE"]
    assert lines[1].split()[:6] == ["old.mp4", lines[1].split()[1], "KB", "2.0", "s",
                                    "H264/AAC"]
    assert "320x240" in lines[1]
    [record] = json.loads(ok("records", "list", "--json", home=home))
    assert record["fileName"] == "old.mp4" and record["url"] == "/client/records/old.mp4"
    errors = refused("records", "delete", "ghost.mp4", "../conf/server.properties", home=home)
    assert errors.splitlines() == ["hookcast: ghost.mp4: File not found",
                                   "hookcast: ../conf/server.properties: File not found"]
    assert home.properties_file.exists()
    assert ok("records", "delete", "old.mp4", home=home) == "deleted old.mp4\n"
    assert not (home.records / "old.mp4").exists()
    assert ok("records", "list", home=home).splitlines()[1:] == []
    assert json.loads(ok("records", "list", "--json", home=home)) == []


def test_pull_and_push_are_listed_and_terminated_apart(home: Home, served: Served) -> None:
    """The server pulls its own vod-live "channel" as "copy", then pushes "copy" to
    itself as "copy2": a push of "copy" and a pull into "copy". ``push terminate copy``
    stops the push alone (``/pull/terminate`` by name would stop both)."""
    ws = f"ws://127.0.0.1:{served.ws_port}/"
    ok("vod", "start", "vod-live://clip.mp4", "--name", "channel", "--loop", home=home)
    assert ok("pull", "start", ws, "copy", "--remote", "channel",
              home=home) == f"pull {ws} channel as copy: ACTIVE\n"
    assert ok("push", "start", ws, "copy", "--remote", "copy2",
              home=home) == f"push copy to {ws} as copy2: ACTIVE\n"
    pulls = ok("pull", "list", home=home).splitlines()
    assert pulls[0].split() == ["LOCAL", "REMOTE", "URI", "STATUS", "RETRIES", "ERROR"]
    assert [line.split()[:4] for line in pulls[1:]] == [["copy", "channel", ws, "ACTIVE"]]
    [push] = json.loads(ok("push", "list", "--json", home=home))
    assert (push["direction"], push["localStreamName"], push["remoteStreamName"]) == (
        "push", "copy", "copy2")
    assert "localStreamName: 'copy' is already in use here" in refused("pull", "start", ws, "copy", "--remote",
                                                 "channel", home=home)
    assert ok("push", "terminate", "copy", home=home) == "terminated 1 push\n"
    assert ok("push", "list", home=home).splitlines()[1:] == []
    assert [line.split()[:4] for line in ok("pull", "list", home=home).splitlines()[1:]] == [
        ["copy", "channel", ws, "ACTIVE"]]
    assert "Not found: no push of localStreamName 'copy'" in refused(
        "push", "terminate", "copy", home=home)
    assert "Not found: no pull of localStreamName 'copy', remoteStreamName 'other'" in refused(
        "pull", "terminate", "copy", "--remote", "other", home=home)
    assert ok("pull", "terminate", "copy", home=home) == "terminated 1 pull\n"
    assert json.loads(ok("pull", "list", "--json", home=home)) == []


def test_pull_refusals_name_the_field(home: Home, served: Served) -> None:
    assert "uri: " in refused("pull", "start", "http://127.0.0.1:1/", "x", home=home)
    assert "argument --custom: expected a JSON object, got '[1]'" in refused(
        "pull", "start", "ws://127.0.0.1:1/", "x", "--custom", "[1]", home=home, code=2)
    assert "localStreamName: no stream 'ghost' is published here" in refused(
        "push", "start", "ws://127.0.0.1:1/", "ghost", home=home)
    # nothing answers there: the pull is made, its first attempt failed, it goes on trying
    result = hookcast("pull", "start", "ws://127.0.0.1:1/", "x", home=home)
    assert result.returncode == 1 and result.stdout.endswith(": RETRYING\n"), result.stdout
    assert "the first attempt failed: " in result.stderr
    assert "hookcast pull terminate x stops it" in result.stderr
    assert ok("pull", "terminate", "x", home=home) == "terminated 1 pull\n"


@pytest.mark.parametrize("command", [("pull", "list"), ("push", "list"), ("records", "list"),
                                     ("vod", "list"), ("vod", "terminate", "x"),
                                     ("records", "delete", "x")])
def test_the_websocket_port_and_a_bad_url_are_named(
        home: Home, serving: Callable[..., Served], command: tuple[str, ...]) -> None:
    served = serving()
    served.wait_ready()
    url = f"http://127.0.0.1:{served.ws_port}"
    errors = refused(*command, "--url", url, home=home)
    assert f"is {url} hookcast's HTTP port (http.port)?" in errors
    assert "--url: expected http://host:port, got '127.0.0.1:8081'" in refused(
        *command, "--url", "127.0.0.1:8081", home=home, code=2)
    unreachable = refused(*command, "--url", "http://127.0.0.1:1", home=home)
    assert "cannot reach hookcast at http://127.0.0.1:1" in unreachable


def test_without_the_pull_plugin_the_unknown_method_is_said(
        home: Home, serving: Callable[..., Served]) -> None:
    served = serving(disabled_plugins="pull")
    served.wait_ready()
    assert "unknown method /rest-api/pull/find_all" in refused("pull", "list", home=home)
