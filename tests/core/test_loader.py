"""Loading plugins: built-in, installed packages, drop-in files; reloading drop-ins."""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hookcast import SessionInfo, StreamInfo
from hookcast.bus import HookBus
from hookcast.config.home import Home
from hookcast.keys import LOADER
from hookcast.loader import PluginLoader
from tests.conftest import write_plugin

SESSION = SessionInfo(session_id="s1", app_key="defaultApp", status="PENDING", remote="127.0.0.1")
STREAM = StreamInfo(
    media_session_id="m1", name="cam", published=True, status="PENDING",
    session_id="s1", app_key="defaultApp",
)

REFUSE_WITH = """
    from hookcast import hookimpl, Refuse

    @hookimpl
    def before_publish(stream):
        return Refuse("{reason}")
"""

#: the built-in plugins, in the order they load
BUILT_INS = ["cluster", "console", "echo_app", "pull", "record_naming", "record_rotation", "record_script", "rest_hooks",
             "stream_scripts", "vod", "whip"]


def load(home: Home, disabled: tuple[str, ...] = ()) -> tuple[HookBus, Any]:
    bus = HookBus()
    report = PluginLoader(bus, home.plugins, disabled).load_all()
    return bus, report


async def test_good_dropin_is_loaded_and_called(home: Home) -> None:
    path = write_plugin(home, "reserve", REFUSE_WITH.format(reason="reserved"))
    bus, report = load(home)
    record = next(r for r in report.loaded if r.name == "reserve")
    assert record.source == f"file {path}"
    assert record.hooks == ("before_publish",)
    assert (await bus.before_publish(SESSION, STREAM)).reason == "reserved"


def test_builtins_load_first(home: Home) -> None:
    _, report = load(home)
    assert [r.name for r in report.loaded if r.source == "built-in"] == BUILT_INS
    assert report.problems == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def broken(:\n    pass\n", "broken.py:1: SyntaxError"),
        ("import json\n\nraise RuntimeError('no config')\n", "broken.py:3: RuntimeError: no config"),
        ("import hookcast_no_such_module\n", "broken.py:1: ModuleNotFoundError"),
        (
            "from hookcast import hookimpl\n\n@hookimpl\ndef before_publsh(stream):\n    pass\n",
            "before_publsh is not a hookcast hook; did you mean before_publish?",
        ),
        (
            "from hookcast import hookimpl\n\n@hookimpl\nasync def record_file_name(stream):\n    pass\n",
            "broken.py:3): record_file_name is a decide hook",
        ),
    ],
)
async def test_broken_dropin_is_skipped_with_file_and_line(
    home: Home, source: str, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    write_plugin(home, "broken", source)
    write_plugin(home, "good", REFUSE_WITH.format(reason="good ran"))
    bus, report = load(home)
    assert [r.name for r in report.loaded] == [*BUILT_INS, "good"]
    assert len(report.problems) == 1 and expected in report.problems[0]
    assert str(home.plugins / "broken.py") in report.problems[0]
    assert expected in caplog.text
    assert (await bus.before_publish(SESSION, STREAM)).reason == "good ran"
    assert "hookcast_dropin_broken" not in sys.modules


def test_disabled_plugins_blocks_builtin_and_dropin(home: Home) -> None:
    write_plugin(home, "reserve", REFUSE_WITH.format(reason="x"))
    bus, report = load(home, disabled=(*BUILT_INS, "reserve"))
    assert bus.plugins() == []
    assert sorted(report.disabled) == sorted([*BUILT_INS, "reserve"])


def test_dropin_cannot_shadow_a_builtin(home: Home) -> None:
    """A copied home with its own echo_app.py: the built-in loads once, the copy is refused
    (and never imported) with a sentence saying why."""
    write_plugin(home, "echo_app", "raise SystemExit('the copy must not even be imported')\n")
    _, report = load(home)
    assert [(r.name, r.source) for r in report.loaded] == [(n, "built-in") for n in BUILT_INS]
    assert report.problems == [
        f"{home.plugins / 'echo_app.py'}: not loaded: a plugin named echo_app is already "
        "loaded (built-in); rename the file to load it beside that one"]


def test_builtins_are_the_declared_entry_points() -> None:
    """Built-ins come from hookcast's own entry points, not from a folder listing."""
    from importlib.metadata import entry_points

    declared = {e.name: e.value for e in entry_points(group="hookcast") if e.dist
                and e.dist.name == "hookcast"}
    assert declared == {name: f"hookcast.plugins.{name}" for name in BUILT_INS}


def test_checkout_plugins_folder_is_not_loaded_twice() -> None:
    """When the checkout is the home, plugins/ holds the built-ins' own files."""
    import hookcast.plugins

    folder = Path(hookcast.plugins.__path__[0])
    assert (folder / "echo_app.py").exists(), "the tests run from the checkout"
    _, report = load(Home(folder.parent))
    assert report.problems == []
    assert [(r.name, r.source) for r in report.loaded] == [(n, "built-in") for n in BUILT_INS]


async def test_dropin_in_the_checkout_home_is_a_dropin_and_reloads(
    start_server: Callable[..., Any],
) -> None:
    """``make run`` serves the checkout: a guard.py dropped into its plugins/ (beside the
    built-ins' files) is a drop-in, listed by the server and reloaded when edited."""
    import aiohttp

    import hookcast.plugins

    folder = Path(hookcast.plugins.__path__[0])
    guard = folder / f"guard_{os.getpid()}.py"
    guard.write_text(textwrap.dedent(REFUSE_WITH.format(reason="first")))
    try:
        server = await start_server(Home(folder.parent))
        url = f"http://127.0.0.1:{server.http_port}/rest-api/plugins/find_all"

        async def listed() -> dict[str, Any]:
            async with aiohttp.ClientSession() as http, http.get(url) as response:
                assert response.status == 200
                report = await response.json()
                return {p["name"]: p for p in report["plugins"]}

        plugins = await listed()
        assert [n for n, p in plugins.items() if p["source"] == "built-in"] == BUILT_INS
        assert plugins[guard.stem]["source"] == f"file {guard}"
        assert plugins[guard.stem]["hooks"] == ["before_publish"]
        guard.write_text(textwrap.dedent("""
            from hookcast import hookimpl, Refuse

            @hookimpl
            def before_play(stream):
                return Refuse("second")
        """))
        await wait_for(lambda: _hooks_are(listed, guard.stem, ["before_play"]))
        assert len(await listed()) == len(BUILT_INS) + 1, "nothing loaded twice"
    finally:
        guard.unlink(missing_ok=True)


async def _hooks_are(listed: Callable[[], Any], name: str, hooks: list[str]) -> bool:
    return bool((await listed())[name]["hooks"] == hooks)


def test_installed_package_entry_point_is_loaded(
    tmp_path: Path, home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    (site / "hookcast_example_plugin-1.2.dist-info").mkdir(parents=True)
    (site / "hookcast_example_plugin-1.2.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: hookcast-example-plugin\nVersion: 1.2\n"
    )
    (site / "hookcast_example_plugin-1.2.dist-info" / "entry_points.txt").write_text(
        "[hookcast]\nexample = hookcast_example_plugin\n"
    )
    (site / "hookcast_example_plugin.py").write_text(textwrap.dedent("""
        from hookcast import hookimpl

        @hookimpl
        def record_file_name(stream):
            return "from-package"
    """))
    monkeypatch.syspath_prepend(str(site))
    bus, report = load(home)
    record = next(r for r in report.loaded if r.name == "example")
    assert record.source == "package hookcast-example-plugin 1.2"
    assert bus.record_file_name(STREAM, "", {}) == "from-package"
    sys.modules.pop("hookcast_example_plugin", None)


async def wait_for(condition: Callable[[], Any], limit: float = 10.0) -> Any:
    """Poll ``condition`` (plain or async) until it is truthy."""
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_editing_a_dropin_changes_behaviour_without_restart(
    home: Home, start_server: Callable[..., Any]
) -> None:
    path = write_plugin(home, "reserve", REFUSE_WITH.format(reason="first version"))
    server = await start_server(home)
    bus = server.bus

    async def reason_is(text: str) -> bool:
        return (await bus.before_publish(SESSION, STREAM)).reason == text

    assert await reason_is("first version")
    path.write_text(textwrap.dedent(REFUSE_WITH.format(reason="second version")))
    await wait_for(lambda: reason_is("second version"))

    # A broken edit is reported and the last good version keeps working.
    path.write_text("def broken(:\n")
    loader = server.http_app[LOADER]
    await wait_for(lambda: "SyntaxError" in loader.failures.get("reserve", ""))
    assert await reason_is("second version")

    # A new file is picked up; a deleted one is unloaded.
    write_plugin(home, "late", """
        from hookcast import hookimpl

        @hookimpl
        def record_file_name(stream):
            return "late"
    """)
    await wait_for(lambda: bus.record_file_name(STREAM, "", {}) == "late")
    path.unlink()
    await wait_for(lambda: "reserve" not in [p.name for p in bus.plugins()])
    assert (await bus.before_publish(SESSION, STREAM)).admitted


async def test_stopping_the_server_stops_the_watcher(home: Home) -> None:
    import threading

    from hookcast.server import Server
    from tests.conftest import make_settings

    before = set(threading.enumerate())
    server = Server(home, make_settings())
    await server.start()
    assert len(set(threading.enumerate()) - before) >= 1, "the watcher runs a thread"
    await server.stop()
    leftover = set(threading.enumerate()) - before
    # the loop's own executor threads (asyncio_N) belong to the loop, not to the server
    assert {t for t in leftover if t.is_alive() and not t.name.startswith("asyncio_")} == set()


async def test_a_dropin_that_exits_at_import_never_stops_the_server(
    home: Home, start_server: Callable[..., Any]
) -> None:
    """A module-level argparse (SystemExit) at start and on reload: reported with file and
    line, the server goes on, the previous version stays in service."""
    write_plugin(home, "cli_tool", """
        import argparse
        argparse.ArgumentParser().parse_args(["--no-such-option"])
    """)
    path = write_plugin(home, "reserve", REFUSE_WITH.format(reason="kept"))
    server = await start_server(home)
    loader = server.http_app[LOADER]
    assert loader.failures["cli_tool"].startswith(f"{home.plugins / 'cli_tool.py'}:3: SystemExit: 2")
    assert (await server.bus.before_publish(SESSION, STREAM)).reason == "kept"
    path.write_text("import sys\nsys.exit('bye')\n")
    await wait_for(lambda: "SystemExit: bye" in loader.failures.get("reserve", ""))
    assert loader.failures["reserve"].startswith(f"{path}:2: SystemExit")
    assert (await server.bus.before_publish(SESSION, STREAM)).reason == "kept"
    path.write_text("raise GeneratorExit('odd')\n")
    await wait_for(lambda: "GeneratorExit" in loader.failures.get("reserve", ""))
    assert (await server.bus.before_publish(SESSION, STREAM)).reason == "kept"


SLOW_VERSION = """
    import time
    from pathlib import Path
    from hookcast import hookimpl, Refuse

    MARKS = Path(__file__).parent.parent / "marks"
    (MARKS / "{version}-start").touch()
    time.sleep({seconds})
    (MARKS / "{version}-end").touch()

    @hookimpl
    def before_publish(stream):
        return Refuse("{version}")
"""


async def test_two_quick_edits_of_a_slow_dropin_leave_the_last_in_service(
    home: Home, start_server: Callable[..., Any]
) -> None:
    """Reloads of one file are applied one at a time, each reading the file as it is
    then: the last write wins, whatever the imports' speeds."""
    marks = home.root / "marks"
    marks.mkdir()
    path = write_plugin(home, "slow", SLOW_VERSION.format(version="v0", seconds=0))
    server = await start_server(home)
    path.write_text(textwrap.dedent(SLOW_VERSION.format(version="v1", seconds=1.5)))
    await wait_for(lambda: (marks / "v1-start").exists())
    path.write_text(textwrap.dedent(SLOW_VERSION.format(version="v2", seconds=0.1)))
    await wait_for(lambda: (marks / "v1-end").exists() and (marks / "v2-end").exists())

    async def in_service() -> str:
        return (await server.bus.before_publish(SESSION, STREAM)).reason

    await wait_for(lambda: _is(in_service, "v2"))
    await asyncio.sleep(0.5)  # nothing older comes back after the last write is in service
    assert await in_service() == "v2"


async def _is(value: Callable[[], Any], expected: str) -> bool:
    return bool(await value() == expected)
