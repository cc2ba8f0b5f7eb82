"""The server home: the folder holding conf/, media/, records/, hooks/, plugins/ and www/."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "HOOKCAST_HOME"


class UnsafePath(ValueError):
    """A name that would lead outside the folder it must stay in."""


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def locate(cls, explicit: str | os.PathLike[str] | None = None) -> Home:
        """``--home DIR``, else ``$HOOKCAST_HOME``, else the current directory."""
        chosen = explicit or os.environ.get(HOME_ENV) or os.getcwd()
        return cls(Path(chosen).expanduser().resolve())

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def properties_file(self) -> Path:
        return self.conf / "server.properties"

    @property
    def apps_file(self) -> Path:
        return self.conf / "apps.json"

    @property
    def media(self) -> Path:
        return self.root / "media"

    @property
    def records(self) -> Path:
        return self.root / "records"

    @property
    def hooks(self) -> Path:
        return self.root / "hooks"

    @property
    def plugins(self) -> Path:
        return self.root / "plugins"

    @property
    def www(self) -> Path:
        """The web root ``hookcast init`` makes (``web_root_dir``'s default)."""
        return self.root / "www"

    def resolve(self, relative: str) -> Path:
        """A path named in configuration: absolute as given, else relative to the home."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.root / path

    def ensure(self) -> None:
        """Create the folders the server writes into (records/); others may be absent."""
        self.records.mkdir(parents=True, exist_ok=True)


def inside(folder: Path, name: str) -> Path:
    """``folder / name``, refusing any name that would leave ``folder``.

    Absolute names, ``..`` components, NUL bytes and symlinks pointing out of the
    folder are all refused with :class:`UnsafePath`.
    """
    if not name or "\x00" in name:
        raise UnsafePath(f"{name!r} is not a file name")
    candidate = Path(name)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise UnsafePath(f"{name!r} leads outside {folder.name}/")
    base = folder.resolve()
    target = (base / candidate).resolve()
    if target != base and base not in target.parents:
        raise UnsafePath(f"{name!r} leads outside {folder.name}/")
    return target


def visible_inside(folder: Path, name: str) -> Path:
    """``inside(folder, name)``, refusing hidden files too (UnsafePath): a name with a
    component starting with ``.``, or symlinks that lead to a hidden file or folder of
    ``folder``."""
    target = inside(folder, name)
    shown = Path(name).parts + target.relative_to(folder.resolve()).parts
    if any(part.startswith(".") for part in shown):
        raise UnsafePath(f"{name!r} is a hidden file of {folder.name}/")
    return target


def media_folder(home: Path, media_dir: str) -> Path:
    """The folder ``media_dir`` names: as given when absolute, else inside the home."""
    folder = Path(media_dir).expanduser()
    return folder if folder.is_absolute() else home / folder
