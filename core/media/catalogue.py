"""The catalogue of media_dir: every file with its duration, codecs and size, its
sub-folders' files too (``shows/ep1.mp4``, ``MAX_DEPTH`` levels and ``MAX_FILES`` files
at most), kept current by watching the folder (watchdog); walking and probing run off
the event loop, and a file is probed again only when it changed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from hookcast.config.home import UnsafePath, visible_inside
from hookcast.media.reader import WrongFormat, inspect_file
from hookcast.recording.files import CODEC_NAMES, Probe, probe

log = logging.getLogger(__name__)

EXTENSIONS = (".mp4", ".m4v", ".mov", ".webm", ".mkv")
#: levels of sub-folders listed below media_dir (media/a/b/c.mp4 is 2)
MAX_DEPTH = 8
#: files listed at most (a folder's own files before its sub-folders', by name)
MAX_FILES = 10_000
#: (inode, size, modification time in ns) of a file when it was probed
Key = tuple[int, int, int]


@dataclass(frozen=True)
class MediaFile:
    fileName: str  # the REST answer's own spelling; relative to media_dir, with "/"
    size: int
    duration: float
    videoCodec: str
    audioCodec: str
    width: int
    height: int
    modified: int  # epoch milliseconds
    problem: str = ""  # why it cannot be read, when it cannot

    @property
    def uri(self) -> str:
        return f"vod://{self.fileName}"


def _probe(folder: Path, name: str, before: tuple[Key, MediaFile] | None
           ) -> tuple[Key, MediaFile] | None:
    """Off the loop: what the file ``name`` (relative, with ``/``) of ``folder`` holds,
    probed again only when it is not the file ``before`` was; None when it is not a
    media file of ``folder`` (any more): hidden, another extension, not a regular file,
    or a symlink out of ``folder`` or to a hidden file of it."""
    if name.rsplit("/", 1)[-1].startswith(".") or Path(name).suffix.lower() not in EXTENSIONS:
        return None
    try:
        path = visible_inside(folder, name)
        if not path.is_file():
            return None
        stat = path.stat()
    except (UnsafePath, OSError, RuntimeError):
        return None
    key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if before is not None and before[0] == key:
        return before
    problem = ""
    try:
        inspect_file(path)  # what playing it checks: codecs, B-frames, media in it
        found: Probe | None = probe(path)
    except WrongFormat as error:
        problem, found = str(error), None
    except Exception as error:  # not a readable media file: listed, with why
        problem, found = f"not a readable media file ({type(error).__name__})", None
    if found is None:
        return key, MediaFile(name, stat.st_size, 0.0, "", "", 0, 0,
                              int(stat.st_mtime * 1000), problem or "not a readable media file")
    return key, MediaFile(name, stat.st_size, found.duration, _name(found.video_codec),
                          _name(found.audio_codec), found.width, found.height,
                          int(stat.st_mtime * 1000), problem)


def walk(folder: Path, depth: int = MAX_DEPTH, limit: int = MAX_FILES) -> tuple[list[str], str]:
    """Off the loop: the names (relative, with ``/``) of the files of ``folder`` and its
    sub-folders (``depth`` levels at most) with a media extension, sorted, ``limit`` at
    most; and what was left out ("" when nothing was). Hidden files and folders are
    skipped, and symbolic links to folders are not followed."""
    found: list[str] = []
    deeper = more = False
    pending = [(folder, "", 0)]
    while pending:
        current, prefix, level = pending.pop()
        try:
            with os.scandir(current) as scanned:
                entries = sorted(scanned, key=lambda e: e.name)
        except OSError:
            continue
        folders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                if level < depth:
                    folders.append((Path(entry.path), f"{prefix}{entry.name}/", level + 1))
                else:
                    deeper = True
            elif Path(entry.name).suffix.lower() in EXTENSIONS:
                if len(found) < limit:
                    found.append(prefix + entry.name)
                else:
                    more = True
        pending.extend(reversed(folders))  # the first by name is walked next
    left = [f"folders deeper than {depth} levels" if deeper else "",
            f"files beyond the first {limit}" if more else ""]
    return sorted(found), " and ".join(text for text in left if text)


def _name(codec: str) -> str:
    """The codec names streams use (H264, VP8, AAC, opus); others in capitals."""
    return codec if codec in CODEC_NAMES.values() else codec.upper()


class Catalogue:
    """Files of one folder and its sub-folders by relative name; ``start()`` reads them
    all and watches for changes: after a change (settled), the folder is walked again
    and only the files whose inode, size or time changed are probed again."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[str, MediaFile] = {}
        self._keys: dict[str, Key] = {}
        self._watcher: TreeWatcher | None = None
        self._rescan: asyncio.Task[None] | None = None
        self._again = False
        self._left_out = ""

    async def start(self) -> None:
        await self.rescan()
        if self.folder.is_dir():
            self._watcher = TreeWatcher(self.folder, self._changed, settle=0.5)
            await asyncio.to_thread(self._watcher.start)

    async def rescan(self) -> None:
        before = {name: (self._keys[name], f) for name, f in self.files.items()}
        found, left_out = await asyncio.to_thread(self._scan, before)
        self.files = {f.fileName: f for _, f in found}
        self._keys = {f.fileName: key for key, f in found}
        if left_out and left_out != self._left_out:
            log.warning("%s: %s are not listed", self.folder,
                        left_out)
        self._left_out = left_out

    def _scan(self, before: dict[str, tuple[Key, MediaFile]]
              ) -> tuple[list[tuple[Key, MediaFile]], str]:
        if not self.folder.is_dir():
            return [], ""
        names, left_out = walk(self.folder)
        probed = (_probe(self.folder, name, before.get(name)) for name in names)
        return [f for f in probed if f is not None], left_out

    def _changed(self) -> None:
        """Something changed under the folder: walk it again (once more if a walk is
        under way: what it read may be older than the change)."""
        if self._rescan is not None and not self._rescan.done():
            self._again = True
            return
        self._rescan = asyncio.create_task(self._rescans(), name="media catalogue")

    async def _rescans(self) -> None:
        self._again = True
        while self._again:
            self._again = False
            try:
                await self.rescan()
            except Exception:
                log.exception("%s: the media catalogue could not be read again", self.folder)

    def listing(self) -> list[dict[str, Any]]:
        return [{**asdict(f), "uri": f.uri} for f in sorted(self.files.values(),
                                                               key=lambda f: f.fileName)]

    async def close(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()
            self._watcher = None
        if self._rescan is not None:
            self._rescan.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rescan


class _TreeHandler(FileSystemEventHandler):
    def __init__(self, watcher: TreeWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in ("opened", "closed_no_write"):
            self.watcher.loop.call_soon_threadsafe(self.watcher.touched)


class TreeWatcher:
    """Calls ``callback()`` on the loop once a folder and its sub-folders (watchdog,
    one recursive watch; links to folders not followed) have been quiet for ``settle``
    seconds after a change to any file or folder in them."""

    def __init__(self, folder: Path, callback: Callable[[], None], settle: float) -> None:
        self.folder = folder
        self.callback = callback
        self.settle = settle
        self.loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._observer: Any = None

    def start(self) -> None:
        """Start watching (blocking: call it off the loop)."""
        observer = Observer()
        observer.schedule(_TreeHandler(self), str(self.folder), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def touched(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(self.settle, self._fire)

    def _fire(self) -> None:
        self._timer = None
        try:
            self.callback()
        except Exception:
            log.exception("handling a change under %s failed", self.folder)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            await asyncio.to_thread(observer.join, 5)
