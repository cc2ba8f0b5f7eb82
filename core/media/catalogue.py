"""The catalogue of media_dir: every file with its duration, codecs and size, kept
current by watching the folder (watchdog); probing runs off the event loop."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hookcast.config.home import UnsafePath, visible_inside
from hookcast.config.watch import FolderWatcher
from hookcast.media.reader import WrongFormat, inspect_file
from hookcast.recording.files import CODEC_NAMES, Probe, probe

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


def _probe(folder: Path, path: Path) -> MediaFile | None:
    """Off the loop: what ``path`` holds; None when it is not a media file of ``folder``
    (any more): hidden, another extension, not a regular file, or a symlink out of
    ``folder`` or to a hidden file of it."""
    if path.name.startswith(".") or path.suffix.lower() not in EXTENSIONS:
        return None
    try:
        visible_inside(folder, path.name)
        if not path.is_file():
            return None
        stat = path.stat()
    except (UnsafePath, OSError, RuntimeError):
        return None
    problem = ""
    try:
        inspect_file(path)  # what playing it checks: codecs, B-frames, media in it
        found: Probe | None = probe(path)
    except WrongFormat as error:
        problem, found = str(error), None
    except Exception as error:  # not a readable media file: listed, with why
        problem, found = f"not a readable media file ({type(error).__name__})", None
    if found is None:
        return MediaFile(path.name, stat.st_size, 0.0, "", "", 0, 0,
                         int(stat.st_mtime * 1000), problem or "not a readable media file")
    return MediaFile(path.name, stat.st_size, found.duration, _name(found.video_codec),
                     _name(found.audio_codec), found.width, found.height,
                     int(stat.st_mtime * 1000), problem)


def _name(codec: str) -> str:
    """The codec names streams use (H264, VP8, AAC, opus); others in capitals."""
    return codec if codec in CODEC_NAMES.values() else codec.upper()


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
        return [f for f in (_probe(self.folder, p) for p in sorted(self.folder.iterdir()))
                if f is not None]

    def _changed(self, path: Path) -> None:
        task = asyncio.create_task(self._update(path), name=f"media {path.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _update(self, path: Path) -> None:
        found = await asyncio.to_thread(_probe, self.folder, path)
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
