"""The catalogue of records/: what ``/rest-api/records/find_all`` answers, kept current
without probing every file on every call.

Each final file (recording.store's rule, unchanged: a regular file of records/ itself,
not hidden, with a recording extension and no marker) is probed once; its entry is
kept with the inode, size and modification time it was probed at. Two things say
what to read again, and only that is read again (off the loop):

- a watcher on records/ (hookcast.config.watch): a change to a file, its marker, its
  sidecar or one of their temporary files marks that file;
- the folder's own status, looked at on every call (one ``stat``): a name added,
  removed or renamed in records/ changes it, and then the folder's names are read
  again (names and inodes only, nothing opened) and compared with the entries. This
  is what makes a recording listed as soon as it is final, and one deleted on disk
  gone at once, without waiting for the watcher's settle delay. A folder changed in
  the last RACY seconds is read again on the next call too: its time stamp is coarse
  and may not move for a change made in the same tick.

A file deleted through REST is forgotten at once (``forget``). The answer is kept as
JSON bytes, encoded again (off the loop) only when an entry changed. When records/
cannot be watched (no inotify watch left), every call stats every file instead: still
only changed files are probed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hookcast.config.watch import FolderWatcher
from hookcast.recording import store
from hookcast.recording.files import Probe, probe

log = logging.getLogger(__name__)

#: seconds after its last change during which records/'s names are read on every call
RACY = 1.0
#: seconds a burst of changes to one file settles before the file is marked
SETTLE = 0.1
#: the hidden files of the server's own that stand for a recording file, by suffix
_OWN_SUFFIXES = (".recording", ".json", ".tmp")

Entry = dict[str, Any]
#: (inode, size, modification time in ns) of a file when it was probed
Key = tuple[int, int, int]
#: how records/ itself looked: (inode, modification and change times in ns)
Stamp = tuple[int, int, int]


@dataclass(frozen=True)
class _Known:
    key: Key
    media: Probe | None
    entry: Entry


def described(name: str, status: os.stat_result, media: Probe | None,
              sidecar: dict[str, Any]) -> Entry:
    """The find_all entry of the final file ``name``."""
    return {
        "fileName": name, "size": status.st_size, "createDate": int(status.st_mtime * 1000),
        "duration": media.duration if media else 0.0,
        "videoCodec": media.video_codec if media else "",
        "audioCodec": media.audio_codec if media else "",
        "width": media.width if media else 0, "height": media.height if media else 0,
        "url": f"/client/records/{quote(name)}",
        **_recorded(sidecar),
    }


def _recorded(sidecar: dict[str, Any]) -> Entry:
    """The stream and times a file's sidecar keeps ("" and 0 when it has none: a file
    put in records/ by hand, or recorded by an older version)."""
    name = sidecar.get("streamName")
    times = {key: sidecar.get(key) for key in ("startTime", "endTime")}
    return {"streamName": name if isinstance(name, str) else "",
            **{key: value if isinstance(value, int) and not isinstance(value, bool) else 0
               for key, value in times.items()}}


def recording_of(name: str) -> str:
    """The recording file a name of records/ stands for: itself, or the file whose
    marker, sidecar or temporary file it is (``.x.mp4.json`` -> ``x.mp4``)."""
    if not name.startswith("."):
        return name
    for suffix in _OWN_SUFFIXES:
        if name.endswith(suffix):
            return name[1:-len(suffix)]
    return name


class RecordsCatalogue:
    """The final files of ``folder`` as find_all lists them: ``start()`` builds it in
    the background and watches the folder, ``body()`` answers, ``close()`` stops."""

    def __init__(self, folder: Path, extensions: Collection[str]) -> None:
        self.folder = folder
        self.extensions = frozenset(extensions)
        self._known: dict[str, _Known] = {}
        #: names to read again; None: every file (the first build, or no watcher)
        self._dirty: set[str] | None = None
        self._stamp: Stamp | None = None
        self._scanned_at = 0  # time.time_ns() when the folder's names were last read
        self._body: bytes | None = None
        self._lock = asyncio.Lock()
        self._watcher: FolderWatcher | None = None
        self._build: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            watcher = FolderWatcher(self.folder, "*", self._changed, settle=SETTLE)
            await asyncio.to_thread(watcher.start)
            self._watcher = watcher
        except OSError as error:
            log.warning("records/ cannot be watched (%s): /rest-api/records/find_all "
                        "reads the status of every file on each call", error)
        self._build = asyncio.create_task(self._first(), name="records catalogue")

    async def _first(self) -> None:
        """The first build, in the background from the start (a call meanwhile waits)."""
        started = time.monotonic()
        try:
            await self.body()
        except Exception:
            log.exception("records/: the catalogue could not be built; find_all tries again")
            return
        log.info("records/: %d final files catalogued in %.1f s", len(self._known),
                 time.monotonic() - started)

    def _changed(self, path: Path) -> None:
        if path.parent == self.folder and self._dirty is not None:
            self._dirty.add(recording_of(path.name))

    def forget(self, name: str) -> None:
        """``name`` was deleted (through REST): not listed from now on."""
        if self._known.pop(name, None) is not None:
            self._body = None
        if self._dirty is not None:
            self._dirty.add(name)

    async def body(self) -> bytes:
        """The JSON of find_all's answer: every final file, newest first, then by name."""
        async with self._lock:
            dirty, self._dirty = self._dirty, (set() if self._watcher is not None else None)
            try:
                updates, stamp, scanned = await asyncio.to_thread(
                    self._refresh, dict(self._known), dirty)
            except BaseException:
                self._dirty = None  # what was marked is not lost: all is read again
                raise
            self._stamp, self._scanned_at = stamp, scanned or self._scanned_at
            for name, found in updates.items():
                if found is None:
                    self._known.pop(name, None)
                else:
                    self._known[name] = found
            if updates:
                self._body = None
            if self._body is None:
                entries = [each.entry for each in self._known.values()]
                self._body = await asyncio.to_thread(_encoded, entries)
            return self._body

    def _refresh(self, known: dict[str, _Known], dirty: set[str] | None
                 ) -> tuple[dict[str, _Known | None], Stamp | None, int]:
        """Off the loop: the entries that changed (None: gone), the folder's stamp, and
        when its names were read (0: they were not)."""
        stamp = _stamp_of(self.folder)
        to_read = set(dirty or ())
        updates: dict[str, _Known | None] = {}
        scanned = 0
        if dirty is None or stamp is None or stamp != self._stamp or self._racy():
            scanned = time.time_ns()
            finals = _final_names(self.folder, self.extensions)
            changed = (name for name, inode in finals.items()
                       if name not in known or known[name].key[0] != inode)
            to_read.update(finals if dirty is None else changed)
            updates = {name: None for name in known if name not in finals}
        for name in to_read - updates.keys():
            found = _read(self.folder, name, self.extensions, known.get(name))
            if found is None and name in known:
                updates[name] = None
            elif found is not None and (name not in known or found != known[name]):
                updates[name] = found
        return updates, stamp, scanned

    def _racy(self) -> bool:
        return self._stamp is None or self._scanned_at - self._stamp[1] < RACY * 1e9

    async def close(self) -> None:
        if self._build is not None:
            self._build.cancel()
            await asyncio.gather(self._build, return_exceptions=True)
        if self._watcher is not None:
            await self._watcher.stop()
            self._watcher = None


def _encoded(entries: list[Entry]) -> bytes:
    ordered = sorted(entries, key=lambda f: (-f["createDate"], f["fileName"]))
    return json.dumps(ordered).encode()


def _stamp_of(folder: Path) -> Stamp | None:
    try:
        status = folder.stat()
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_ctime_ns


def _final_names(folder: Path, extensions: Collection[str]) -> dict[str, int]:
    """The final files of ``folder`` by name, with their inodes, from its names alone
    (recording.store.final_files' rule, read from one listing of the folder)."""
    files: dict[str, int] = {}
    markers: set[str] = set()
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    if entry.name.endswith(".recording"):
                        markers.add(entry.name)
                elif Path(entry.name).suffix.lower() in extensions \
                        and entry.is_file(follow_symlinks=False):
                    files[entry.name] = entry.inode()
    return {name: inode for name, inode in files.items()
            if store.MARKER.format(name) not in markers}


def _read(folder: Path, name: str, extensions: Collection[str], before: _Known | None
          ) -> _Known | None:
    """Off the loop: the entry of ``name`` if it is a final file (probed again only when
    it is not the file ``before`` was)."""
    if Path(name).suffix.lower() not in extensions:
        return None
    try:
        file, status = store.open_final(folder, name)
    except (store.NotFound, store.NotFinal):
        return None
    with file:
        key = (status.st_ino, status.st_size, status.st_mtime_ns)
        if before is not None and before.key == key:
            media = before.media
        else:
            try:
                media = probe(file)
            except Exception:  # a file that is not (or no longer) a readable recording
                media = None
    sidecar = store.read_sidecar(folder / name)
    return _Known(key, media, described(name, status, media, sidecar))
