"""``hookcast init DIR``: write a working server home from what the package ships.

The home gets a commented conf/server.properties made from the settings table, the
default conf/apps.json, an executable hooks/on_record_hook.sh, empty media/ and
records/, plugins/ with a short README, and the web root www/ with an index.html that
says what it is for. Nothing that exists is overwritten: if any of those files is
already there, nothing at all is written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

from hookcast.config.apps import default_applications
from hookcast.config.home import Home
from hookcast.config.properties import Property
from hookcast.config.settings import render_default_properties

FILES = files("hookcast.config") / "home-files"


class HomeExists(Exception):
    """``hookcast init`` would overwrite files; the message names them."""


def home_files(home: Home, declared: Sequence[tuple[str, Property]] = ()
               ) -> dict[Path, tuple[str, int]]:
    """Every file of a new home: path -> (text, mode); ``declared``: the plugins'
    properties, written after the core's."""
    apps = json.dumps(default_applications().to_json(), indent=2) + "\n"
    return {
        home.properties_file: (render_default_properties(declared), 0o644),
        home.apps_file: (apps, 0o644),
        home.hooks / "on_record_hook.sh": ((FILES / "on_record_hook.sh").read_text(), 0o755),
        home.plugins / "README.md": ((FILES / "plugins-README.md").read_text(), 0o644),
        home.www / "index.html": ((FILES / "www-index.html").read_text(), 0o644),
    }


def init_home(home: Home, declared: Sequence[tuple[str, Property]] = ()) -> list[Path]:
    """Write a new home (``declared``: the plugins' properties, for server.properties);
    returns the files written. Raises HomeExists, writing nothing, when any of them is
    already there."""
    planned = home_files(home, declared)
    existing = [path for path in planned if path.exists() or path.is_symlink()]
    if existing:
        names = ", ".join(str(path.relative_to(home.root)) for path in existing)
        raise HomeExists(f"{home.root} already holds {names}; nothing was changed "
                         "(hookcast init never overwrites a file)")
    for folder in (home.conf, home.hooks, home.plugins, home.media, home.records, home.www):
        folder.mkdir(parents=True, exist_ok=True)
    for path, (text, mode) in planned.items():
        with open(path, "x", encoding="utf-8") as handle:  # "x": never overwrite
            handle.write(text)
        path.chmod(mode)
    return list(planned)
