"""Finding and loading plugins: declared entry points, then drop-in files.

Order: the distributions that declare entry points in the ``hookcast`` group, hookcast's
own built-ins first (``source`` ``built-in``), then every other ``*.py`` in the home's
plugins/ folder (files starting with ``_`` are ignored). ``disabled_plugins`` blocks any
of them by name. A plugin that fails to import or to register is reported with its file
and line and skipped, whatever it raises (``SystemExit`` included); the server keeps
running. No plugin is loaded twice: a drop-in that is the very file of an entry point
(the checkout as home) is skipped, one that takes a loaded plugin's name is refused.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
import traceback
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType

from hookcast.bus import HookBus, PluginError, PluginRecord

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "hookcast"
#: the distribution whose entry points are the built-in plugins
DISTRIBUTION = "hookcast"
BUILTIN = "built-in"
DROPIN_PREFIX = "hookcast_dropin_"
#: A plugin module may define this factory; its result is registered instead of the
#: module, so each server gets its own plugin object (and state) in one process.
FACTORY = "hookcast_plugin"
#: what ``_read_change`` answers for an entry point's own file (changes need a restart)
_PACKAGE = "the file of an installed plugin"


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


def _entry_points() -> list[EntryPoint]:
    """The group's entry points, hookcast's own first, then by distribution and name."""
    def order(entry: EntryPoint) -> tuple[bool, str, str]:
        dist = entry.dist.name if entry.dist else ""
        return dist != DISTRIBUTION, dist, entry.name
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=order)


def _module_file(entry: EntryPoint) -> Path | None:
    """The file an entry point's module would be imported from (without importing it)."""
    try:
        spec = importlib.util.find_spec(entry.module)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin).resolve() if spec is not None and spec.origin else None


class PluginLoader:
    """Loads every plugin into one bus and keeps track of the drop-in files."""

    def __init__(self, bus: HookBus, dropin_folder: Path, disabled: tuple[str, ...] = ()) -> None:
        self.bus = bus
        self.dropin_folder = dropin_folder
        self.disabled = frozenset(disabled)
        #: drop-in name -> the file it was loaded from
        self.dropins: dict[str, Path] = {}
        #: plugin name -> its last load failure (cleared when it loads or its file goes)
        self.failures: dict[str, str] = {}
        #: plugins found but not loaded because disabled_plugins names them
        self.disabled_found: set[str] = set()
        #: files that entry points load (never taken for drop-ins)
        self._package_files: set[Path] = set()
        #: drop-in name -> its loaded module
        self._modules: dict[str, ModuleType] = {}
        #: drop-in name -> held while that file is reloaded (the last write wins)
        self._reloading: dict[str, asyncio.Lock] = {}

    def load_all(self) -> LoadReport:
        report = LoadReport()
        for entry in _entry_points():
            self._load_entry_point(entry, report)
        for path in sorted(self.dropin_folder.glob("*.py")):
            if not path.name.startswith("_") and path.resolve() not in self._package_files:
                self.load_dropin(path, report)
        for problem in report.problems:
            log.error("plugin skipped: %s", problem)
        self.disabled_found.update(report.disabled)
        return report

    def _register(self, plugin: object, name: str, source: str, report: LoadReport) -> bool:
        """Register a module (or what its ``hookcast_plugin()`` factory returns)."""
        factory = getattr(plugin, FACTORY, None)
        try:
            if callable(factory):
                plugin = factory()
        except Exception as error:
            return self._failed(name, f"plugin {name} ({source}): {FACTORY}() raised {error!r}",
                                report)
        try:
            report.loaded.append(self.bus.register(plugin, name, source))
        except PluginError as error:
            return self._failed(name, str(error), report)
        self.failures.pop(name, None)
        return True

    def _failed(self, name: str, problem: str, report: LoadReport) -> bool:
        report.problems.append(problem)
        self.failures[name] = problem
        return False

    def _load_entry_point(self, entry: EntryPoint, report: LoadReport) -> None:
        module_file = _module_file(entry)
        if module_file is not None:
            self._package_files.add(module_file)
        if entry.name in self.disabled:
            report.disabled.append(entry.name)
            return
        dist = entry.dist
        if dist is not None and dist.name == DISTRIBUTION:
            source = BUILTIN
        else:
            source = f"package {dist.name} {dist.version}" if dist else f"package {entry.value}"
        try:
            plugin = entry.load()
        except BaseException as error:  # a plugin's SystemExit must not end the server
            if isinstance(error, KeyboardInterrupt | asyncio.CancelledError):
                raise
            where = describe_import_error(module_file, error) if module_file else str(error)
            self._failed(entry.name, f"{source} ({entry.value}): {where}", report)
            return
        self._register(plugin, entry.name, source, report)

    def load_dropin(self, path: Path, report: LoadReport) -> bool:
        """Import and register one drop-in file; False (and a problem reported) if not."""
        if path.stem in self.disabled:
            report.disabled.append(path.stem)
            return False
        taken = self._name_taken(path)
        if taken is not None:
            return self._failed(path.stem, taken, report)
        return self._register_dropin(path, self._try_import(path), report)

    def _name_taken(self, path: Path) -> str | None:
        """Why ``path`` cannot load under its name (another plugin has it), or None."""
        for record in self.bus.plugins():
            if record.name == path.stem and self.dropins.get(path.stem) != path:
                return (f"{path}: not loaded: a plugin named {path.stem} is already loaded "
                        f"({record.source}); rename the file to load it beside that one")
        return None

    def _try_import(self, path: Path) -> ModuleType | str:
        """The imported module, or the problem as ``file:line: Error: message``."""
        try:
            return self._import_file(path)
        except BaseException as error:  # SystemExit, GeneratorExit...: a plugin's, not ours
            if isinstance(error, KeyboardInterrupt | asyncio.CancelledError):
                raise
            return describe_import_error(path, error)

    def _import_file(self, path: Path) -> ModuleType:
        """Execute a drop-in from its source (never a cached .pyc, which could be stale).

        The module is in ``sys.modules`` while it executes (dataclasses and typing look
        it up there) and stays there while it is loaded."""
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
            self._restore_module(path.stem)
            raise
        return module

    def _restore_module(self, name: str) -> None:
        """Put the loaded version of drop-in ``name`` (if any) back into sys.modules."""
        loaded = self._modules.get(name)
        if loaded is not None:
            sys.modules[DROPIN_PREFIX + name] = loaded
        else:
            sys.modules.pop(DROPIN_PREFIX + name, None)

    def _register_dropin(self, path: Path, module: ModuleType | str, report: LoadReport) -> bool:
        if isinstance(module, str):
            return self._failed(path.stem, module, report)
        if not self._register(module, path.stem, f"file {path}", report):
            self._restore_module(path.stem)
            return False
        self.dropins[path.stem] = path
        self._modules[path.stem] = module
        return True

    def _read_change(self, path: Path) -> ModuleType | str | None:
        """Off the loop: None if the file is gone, else the imported module or a problem.
        An entry point's own file (the checkout as home) is never a drop-in: ``_PACKAGE``."""
        if not path.exists():
            return None
        if path.resolve() in self._package_files:
            return _PACKAGE
        return self._name_taken(path) or self._try_import(path)

    async def reload_dropin(self, path: Path) -> LoadReport:
        """Apply a change to one drop-in file: load, replace or remove it.

        The file is imported off the event loop. A new version that fails to load is
        reported and the previous version stays registered, so a typo in an edited
        plugin never takes away working behaviour. Changes to one file are applied one
        at a time, each reading the file as it is then, so the last write wins.
        """
        name = path.stem
        if name.startswith("_") or name in self.disabled:
            return LoadReport()
        async with self._reloading.setdefault(name, asyncio.Lock()):
            return await self._reload(path)

    async def _reload(self, path: Path) -> LoadReport:
        report = LoadReport()
        name = path.stem
        module = await asyncio.to_thread(self._read_change, path)
        if module is _PACKAGE:
            return report
        if module is None:
            self.failures.pop(name, None)
            if self.dropins.pop(name, None) is not None:
                self.bus.unregister(name)
                self._modules.pop(name, None)
                self._restore_module(name)
                log.info("plugin %s removed (%s deleted)", name, path)
            return report
        previous = self.bus.unregister(name) if name in self.dropins else None
        if self._register_dropin(path, module, report):
            log.info("plugin %s %s from %s", name, "reloaded" if previous else "loaded", path)
            return report
        if previous is not None:
            self.bus.register(previous.plugin, previous.name, previous.source)
        for problem in report.problems:
            kept = "previous version kept: " if previous is not None else ""
            log.error("plugin %s not loaded, %s%s", name, kept, problem)
        return report
