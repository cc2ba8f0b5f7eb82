"""``hookcast init``: a working home from what the package ships, never overwriting."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from hookcast.config.home import Home
from hookcast.config.skeleton import home_files
from tests.conftest import builtin_properties
from tests.served import REPO, Served, configure, hookcast


def init(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hookcast", "init", str(folder)],
                          capture_output=True, text=True, timeout=60)


def tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"", p.stat().st_mode)
            for p in sorted(folder.rglob("*"))}


def test_init_writes_a_home_that_checks_and_serves(tmp_path: Path) -> None:
    root = tmp_path / "new" / "home"
    result = init(root)
    assert result.returncode == 0, result.stderr
    assert sorted(tree(root)) == [
        "conf", "conf/apps.json", "conf/server.properties", "hooks", "hooks/on_record_hook.sh",
        "media", "plugins", "plugins/README.md", "records", "www", "www/index.html"]
    assert [list((root / d).iterdir()) for d in ("media", "records")] == [[], []]
    script = root / "hooks" / "on_record_hook.sh"
    assert script.stat().st_mode & stat.S_IXUSR
    properties = (root / "conf" / "server.properties").read_text()
    assert "# Media address put into ICE candidates; empty = every host address" in properties
    home = Home(root)
    checked = hookcast("config", "--check", home=home)
    assert checked.returncode == 0, checked.stderr

    configure(home)  # free ports instead of 8080/8081, as an operator would edit them
    served = Served.start(home)
    try:
        assert served.wait_ready()["plugins"] == 11  # the built-ins
        assert "<h1>hookcast web root</h1>" in served.get("/www/")  # www/index.html
    finally:
        served.stop()


def test_init_on_a_populated_folder_changes_nothing_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "apps.json").write_text('{"apps": []}\n')
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "film.mp4").write_bytes(b"mine")
    before = tree(tmp_path)
    result = init(tmp_path)
    assert result.returncode == 1
    assert f"{tmp_path} already holds conf/apps.json; nothing was changed" in result.stderr
    assert tree(tmp_path) == before


def test_serve_on_a_missing_home_suggests_init(tmp_path: Path) -> None:
    missing = tmp_path / "typo"
    for command in (["serve"], ["config", "--check"], ["plugins"], ["apps", "show"]):
        result = hookcast(*command, home=Home(missing))
        assert result.returncode == 2, (command, result.stderr)
        assert f"the server home {missing} does not exist; create one with: hookcast init " \
            f"{missing}" in result.stderr
    assert not missing.exists()


def test_the_checkout_is_the_home_init_writes() -> None:
    """The repository's own conf/, hooks/, plugins/README.md and www/index.html are what
    init writes."""
    for path, (text, mode) in home_files(Home(REPO), builtin_properties()).items():
        assert path.read_text() == text, f"{path} differs from what hookcast init writes"
        assert path.stat().st_mode & 0o777 == mode, path
