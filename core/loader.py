"""Finding and loading plugins: built-in, installed packages, then drop-in files.

Order: the modules of the ``plugins`` package shipped with hookcast, then
distributions that declare an entry point in the ``hookcast`` group, then every
other ``*.py`` in the home's plugins/ folder. ``disabled_plugins`` blocks any of
them by name. A plugin that fails to import or to register is reported with its
file and line and skipped; the server keeps running.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import pkgutil
import sys
import traceback
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

import plugins as builtin_package
from core.bus import HookBus, PluginError, PluginRecord

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "hookcast"
DROPIN_PREFIX = "hookcast_dropin_"
#: A plugin module may define this factory; its result is registered instead of the
#: module, so each server gets its own plugin object (and state) in one process.
FACTORY = "hookcast_plugin"
#: what ``_read_change`` returns for a built-in module's own file (never reloaded)
_BUILTIN = "built-in"


@dataclass
class LoadReport:
    """What one loading pass did: plugins loaded, skipped on purpose, and failures."""

    loaded: list[PluginRecord] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def describe_import_error(path: Path, error: BaseException) -> str:
    """``file:line: ErrorType: message`` for the deepest frame inside ``path``."""
    if isinstance(error, SyntaxError) and error.filename:
        return f"{error.filename}:{error.lineno}: SyntaxError: {error.msg}"
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if Path(frame.filename).resolve() == path.resolve():
            line = frame.lineno
    location = f"{path}:{line}" if line else str(path)
    return f"{location}: {type(error).__name__}: {error}"


class PluginLoader:
    """Loads every plugin into one bus and keeps track of the drop-in files."""

    def __init__(self, bus: HookBus, dropin_folder: Path, disabled: tuple[str, ...] = ()) -> None:
        self.bus = bus
        self.dropin_folder = dropin_folder
        self.disabled = frozenset(disabled)
        #: drop-in name -> the file it was loaded from
        self.dropins: dict[str, Path] = {}
        self._builtin_files: set[Path] = set()

    def load_all(self) -> LoadReport:
        report = LoadReport()
        self._load_builtins(report)
        self._load_entry_points(report)
        for path in sorted(self.dropin_folder.glob("*.py")):
            if path.resolve() not in self._builtin_files and not path.name.startswith("_"):
                self.load_dropin(path, report)
        for problem in report.problems:
            log.error("plugin skipped: %s", problem)
        return report

    def _register(self, plugin: object, name: str, source: str, report: LoadReport) -> None:
        """Register a module (or what its ``hookcast_plugin()`` factory returns)."""
        factory = getattr(plugin, FACTORY, None)
        try:
            if callable(factory):
                plugin = factory()
        except Exception as error:
            report.problems.append(f"plugin {name} ({source}): {FACTORY}() raised {error!r}")
            return
        try:
            report.loaded.append(self.bus.register(plugin, name, source))
        except PluginError as error:
            report.problems.append(str(error))

    def _load_builtins(self, report: LoadReport) -> None:
        for info in sorted(pkgutil.iter_modules(builtin_package.__path__), key=lambda i: i.name):
            if info.name.startswith("_"):
                continue
            module_name = f"{builtin_package.__name__}.{info.name}"
            spec = importlib.util.find_spec(module_name)
            origin = Path(spec.origin) if spec and spec.origin else Path(module_name)
            self._builtin_files.add(origin.resolve())
            if info.name in self.disabled:
                report.disabled.append(info.name)
                continue
            try:
                module = importlib.import_module(module_name)
            except Exception as error:
                report.problems.append(describe_import_error(origin, error))
                continue
            self._register(module, info.name, "built-in", report)

    def _load_entry_points(self, report: LoadReport) -> None:
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            if entry.name in self.disabled:
                report.disabled.append(entry.name)
                continue
            dist = entry.dist
            source = f"package {dist.name} {dist.version}" if dist else f"package {entry.value}"
            try:
                plugin = entry.load()
            except Exception as error:
                report.problems.append(f"{source} ({entry.value}): {type(error).__name__}: {error}")
                continue
            self._register(plugin, entry.name, source, report)

    def load_dropin(self, path: Path, report: LoadReport) -> bool:
        """Import and register one drop-in file; False (and a problem reported) if not."""
        if path.stem in self.disabled:
            report.disabled.append(path.stem)
            return False
        return self._register_dropin(path, self._try_import(path), report)

    def _try_import(self, path: Path) -> ModuleType | str:
        """The imported module, or the problem as ``file:line: Error: message``."""
        try:
            return self._import_file(path)
        except Exception as error:
            return describe_import_error(path, error)

    def _read_change(self, path: Path) -> ModuleType | str | None:
        """Off the loop: None if the file is gone, _BUILTIN for a built-in, else import it."""
        if not path.exists():
            return None
        if path.resolve() in self._builtin_files:
            return _BUILTIN
        return self._try_import(path)

    def _register_dropin(self, path: Path, module: ModuleType | str, report: LoadReport) -> bool:
        if isinstance(module, str):
            report.problems.append(module)
            return False
        before = len(report.problems)
        self._register(module, path.stem, f"file {path}", report)
        if len(report.problems) > before:
            sys.modules.pop(module.__name__, None)
            return False
        self.dropins[path.stem] = path
        return True

    def _import_file(self, path: Path) -> ModuleType:
        """Execute a drop-in from its source (never a cached .pyc, which could be stale)."""
        module_name = DROPIN_PREFIX + path.stem
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        code = compile(path.read_bytes(), str(path), "exec")
        sys.modules[module_name] = module
        try:
            exec(code, module.__dict__)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        return module

    async def reload_dropin(self, path: Path) -> LoadReport:
        """Apply a change to one drop-in file: load, replace or remove it.

        The file is imported off the event loop. A new version that fails to load is
        reported and the previous version stays registered, so a typo in an edited
        plugin never takes away working behaviour.
        """
        report = LoadReport()
        name = path.stem
        if name.startswith("_") or name in self.disabled:
            return report
        module = await asyncio.to_thread(self._read_change, path)
        if module is None:
            if self.dropins.pop(name, None) is not None:
                self.bus.unregister(name)
                sys.modules.pop(DROPIN_PREFIX + name, None)
                log.info("plugin %s removed (%s deleted)", name, path)
            return report
        if module is _BUILTIN:
            return report
        previous = self.bus.unregister(name) if name in self.dropins else None
        if self._register_dropin(path, module, report):
            log.info("plugin %s %s from %s", name, "reloaded" if previous else "loaded", path)
            return report
        if previous is not None:
            self.bus.register(previous.plugin, previous.name, previous.source)
            sys.modules[DROPIN_PREFIX + name] = previous.plugin  # type: ignore[assignment]
        for problem in report.problems:
            kept = "previous version kept: " if previous is not None else ""
            log.error("plugin %s not loaded, %s%s", name, kept, problem)
        return report
