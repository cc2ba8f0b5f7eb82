"""The wheel as a user installs it: built, ``pip install``-ed into a fresh venv outside the
checkout (tests/wheel/install.sh, which ``make test`` runs first), then ``hookcast init``,
``hookcast serve`` from that venv and a real publish/play round trip against it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest
from aiortc.mediastreams import AudioStreamTrack

from hookcast.config.home import Home
from hookcast.signalling.client import WcsClient
from tests.core.rtc.relay_harness import DecodingSink, PatternVideoTrack
from tests.served import REPO, Served, configure

VENV = Path(os.environ.get("HOOKCAST_WHEEL_VENV")
            or Path(os.environ.get("TMPDIR", "/tmp")) / "hookcast-wheel-venv")


@pytest.fixture(scope="module")
def venv() -> Path:
    if not (VENV / "bin" / "hookcast").exists():
        reason = f"no wheel installed in {VENV}: run sh tests/wheel/install.sh (make test does)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return VENV


def run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_the_wheel_is_hookcast_alone(venv: Path, tmp_path: Path) -> None:
    """``import core`` fails, ``from hookcast import hookimpl`` works, from the venv's
    site-packages and never from the checkout; every subpackage and data file shipped."""
    probe = run(venv, "python", "-c", (
        "import importlib.util, json, hookcast, hookcast.plugins;"
        "from hookcast import hookimpl;"
        "print(json.dumps({'file': hookcast.__file__, 'plugins': hookcast.plugins.__path__[0],"
        "'core': importlib.util.find_spec('core') is not None,"
        "'plugins_top': importlib.util.find_spec('plugins') is not None}))"
    ), cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert not found["core"] and not found["plugins_top"], "core/plugins at the top of site-packages"
    package = Path(found["file"]).parent
    assert package.is_relative_to(venv) and not package.is_relative_to(REPO)
    assert Path(found["plugins"]) == package / "plugins"
    failing = run(venv, "python", "-c", "import core", cwd=tmp_path)
    assert "ModuleNotFoundError: No module named 'core'" in failing.stderr
    shipped = {p.relative_to(package) for p in package.rglob("*") if "__pycache__" not in p.parts}
    for source_root, installed in ((REPO / "core", Path()), (REPO / "plugins", Path("plugins"))):
        for path in source_root.rglob("*"):
            if "__pycache__" in path.parts or path.is_dir() or path.name == "README.md":
                continue
            assert installed / path.relative_to(source_root) in shipped, f"{path} not in the wheel"


@pytest.mark.usefixtures("loopback", "relay_installed")
async def test_init_serve_publish_and_play_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    root = tmp_path / "home"
    initialised = run(venv, "hookcast", "init", str(root), cwd=tmp_path)
    assert initialised.returncode == 0, initialised.stderr
    home = Home(root)
    checked = run(venv, "hookcast", "config", "--check", "--home", str(root), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    configure(home, ip="127.0.0.1")
    served = Served.start(home, command=(str(venv / "bin" / "hookcast"),), cwd=tmp_path)
    try:
        health = await asyncio.to_thread(served.wait_ready)
        assert health["status"] == "ok" and health["plugins"] == 11
        await _round_trip(served.ws_port)
        # the console's pages and scripts come from the installed package
        assert "Dashboard" in await asyncio.to_thread(served.get, "/")
        assert "class WcsSession" in await asyncio.to_thread(served.get, "/console/static/wcs.js")
        # the web root hookcast init wrote from the package's files
        assert "hookcast web root" in await asyncio.to_thread(served.get, "/www/")
    finally:
        stderr = served.stop()
    assert served.process.returncode == 0, stderr
    assert "stopped" in stderr


async def _round_trip(ws_port: int) -> None:
    """Publish VP8 + Opus, play it back, decode frames."""
    publisher, player = WcsClient(f"ws://127.0.0.1:{ws_port}/"), WcsClient(f"ws://127.0.0.1:{ws_port}/")
    try:
        await publisher.connect()
        await player.connect()
        published = await publisher.publish("wheel", [PatternVideoTrack(), AudioStreamTrack()])
        await published.wait_status("PUBLISHING")
        played = await player.play("wheel")
        await played.wait_status("PLAYING")
        video = next(t for t in played.tracks if t.kind == "video")
        sink = DecodingSink(video, "video/vp8")
        for _ in range(200):
            if sink.frames >= 30:
                break
            await asyncio.sleep(0.05)
        assert sink.frames >= 30 and sink.errors == 0
        await sink.close()
    finally:
        await player.close()
        await publisher.close()
