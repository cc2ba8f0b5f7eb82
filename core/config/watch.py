"""Watching a folder for changed files (watchdog), delivered on the event loop.

watchdog calls back on its own thread; ``FolderWatcher`` hands each changed path
to the loop and waits until a path has been quiet for ``settle`` seconds, so an
editor's write-rename-chmod burst becomes one callback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger(__name__)


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: FolderWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                path = Path(raw if isinstance(raw, str) else raw.decode())
                if path.match(self.watcher.pattern):
                    self.watcher.loop.call_soon_threadsafe(self.watcher.touched, path)


class FolderWatcher:
    """Calls ``callback(path)`` on the loop for each settled change to a matching file."""

    def __init__(
        self,
        folder: Path,
        pattern: str,
        callback: Callable[[Path], None],
        settle: float = 0.2,
    ) -> None:
        self.folder = folder
        self.pattern = pattern
        self.callback = callback
        self.settle = settle
        self.loop = asyncio.get_running_loop()
        self._timers: dict[Path, asyncio.TimerHandle] = {}
        self._observer: Observer | None = None  # type: ignore[valid-type]

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        observer = Observer()
        observer.schedule(_Handler(self), str(self.folder), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def touched(self, path: Path) -> None:
        timer = self._timers.pop(path, None)
        if timer is not None:
            timer.cancel()
        self._timers[path] = self.loop.call_later(self.settle, self._fire, path)

    def _fire(self, path: Path) -> None:
        self._timers.pop(path, None)
        try:
            self.callback(path)
        except Exception:
            log.exception("handling a change to %s failed", path)

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            await asyncio.to_thread(observer.join, 5)
