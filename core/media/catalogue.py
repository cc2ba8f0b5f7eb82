"""The catalogue of media_dir: every file with its duration, codecs and size, kept
current by watching the folder (watchdog); probing runs off the event loop."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hookcast.config.watch import FolderWatcher
from hookcast.recording.files import probe

log = logging.getLogger(__name__)

EXTENSIONS = (".mp4", ".m4v", ".mov", ".webm", ".mkv")


@dataclass(frozen=True)
class MediaFile:
    fileName: str  # the REST answer's own spelling
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


def _probe(path: Path) -> MediaFile | None:
    """Off the loop: what ``path`` holds; None when it is not a media file (any more)."""
    if path.name.startswith(".") or path.suffix.lower() not in EXTENSIONS \
            or not path.is_file():
        return None
    stat = path.stat()
    try:
        found = probe(path)
    except Exception as error:  # not a readable media file: listed, with why
        return MediaFile(path.name, stat.st_size, 0.0, "", "", 0, 0,
                         int(stat.st_mtime * 1000), f"{type(error).__name__}: {error}")
    return MediaFile(path.name, stat.st_size, found.duration, found.video_codec,
                     found.audio_codec, found.width, found.height, int(stat.st_mtime * 1000))


class Catalogue:
    """Files of one folder by name; ``start()`` reads them all and watches for changes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[str, MediaFile] = {}
        self._watcher: FolderWatcher | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.rescan()
        if self.folder.is_dir():
            self._watcher = FolderWatcher(self.folder, "*", self._changed, settle=0.5)
            self._watcher.start()

    async def rescan(self) -> None:
        found = await asyncio.to_thread(self._scan)
        self.files = {f.fileName: f for f in found}

    def _scan(self) -> list[MediaFile]:
        if not self.folder.is_dir():
            return []
        return [f for f in (_probe(p) for p in sorted(self.folder.iterdir())) if f is not None]

    def _changed(self, path: Path) -> None:
        task = asyncio.create_task(self._update(path), name=f"media {path.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _update(self, path: Path) -> None:
        found = await asyncio.to_thread(_probe, path)
        if found is None:
            self.files.pop(path.name, None)
        else:
            self.files[path.name] = found

    def listing(self) -> list[dict[str, Any]]:
        return [{**asdict(f), "uri": f.uri} for f in sorted(self.files.values(),
                                                               key=lambda f: f.fileName)]

    async def close(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
