from __future__ import annotations

import os
from pathlib import Path

import pytest

from hookcast.config.home import HOME_ENV, Home, UnsafePath, inside


def test_home_is_explicit_then_environment_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "env"))
    assert Home.locate(tmp_path / "explicit").root == tmp_path / "explicit"
    assert Home.locate().root == tmp_path / "env"
    monkeypatch.delenv(HOME_ENV)
    monkeypatch.chdir(tmp_path)
    assert Home.locate().root == tmp_path


def test_folders(tmp_path: Path) -> None:
    home = Home(tmp_path)
    assert home.properties_file == tmp_path / "conf" / "server.properties"
    assert home.apps_file == tmp_path / "conf" / "apps.json"
    assert (home.media, home.records, home.hooks, home.plugins) == tuple(
        tmp_path / name for name in ("media", "records", "hooks", "plugins")
    )
    assert home.resolve("hooks/x.sh") == tmp_path / "hooks" / "x.sh"
    assert home.resolve("/abs/x.sh") == Path("/abs/x.sh")


def test_inside_keeps_names_in_the_folder(tmp_path: Path) -> None:
    assert inside(tmp_path, "a/b.mp4") == tmp_path.resolve() / "a" / "b.mp4"


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../x", "", "a\x00b"])
def test_inside_refuses_escapes(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafePath):
        inside(tmp_path, name)


def test_inside_refuses_symlink_out(tmp_path: Path) -> None:
    (tmp_path / "media").mkdir()
    os.symlink("/etc", tmp_path / "media" / "link")
    with pytest.raises(UnsafePath):
        inside(tmp_path / "media", "link/passwd")
