"""The Opus that a media file's AAC becomes, made once and kept for every later reading.

The first reading of an AAC file starts its ``Transcode``: a thread of its own that
makes the file's Opus, faster than real time (SPEED), into a temporary file of
``state/vod-opus/`` in the home. That reading, and every other one of the same file
while the transcode goes on, follows it: reads the packets written so far, nothing
decoded or encoded (one transcode, however many readings start together). Once the
whole file's audio is done the file is renamed into place, so a half-written one is
never taken for a complete one; later readings of the same, unchanged file read it
back (issue 27: the transcode is most of a personal reading's cost).

A file is known by its resolved path, size and modification time (and the encoder's
settings): a changed file has another name, and the old one of the same path is
removed when the new one is made. The folder is bounded (``vod_opus_cache_mb``): the
least recently used files go first. A cached file that does not check (its CRC, its
length) is removed and the reading transcodes as if there were none.

Every method here blocks (file IO): call them on a reading's thread, never on the loop.

Format: ``MAGIC``, then per packet ``<q pts (1/48000, from the file's start)><I length>``
and the bytes, then ``<Q packet count><I CRC-32 of everything before>``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

MAGIC = b"HCOPUS1\n"
RECORD = struct.Struct("<qI")
TRAILER = struct.Struct("<QI")
SUFFIX = ".opus-cache"
#: the longest Opus packet (RFC 6716: 1275 bytes a frame, 120 ms); longer is corrupt
MAX_PACKET = 8 * 1275
#: a temporary file not written to for this long belongs to a reading that died
STALE_SECONDS = 3600.0
CHUNK = 1 << 20
#: samples a second of the cached packets' times
RATE = 48_000
#: a shared transcode makes its first HEAD_START seconds at once, then SPEED seconds of
#: audio per second at most (a two-hour film in 15 minutes, gently)
SPEED = 8.0
HEAD_START = 5.0
#: seconds of audio written between two points where followers may read up to
FLUSH_EVERY = 0.5
#: seconds a follower waits at most for a transcode that makes no progress
STALL = 10.0


class CorruptCache(ValueError):
    """A cached file that does not read back as it was written."""


@dataclass(frozen=True)
class CacheKey:
    """One version of one media file: ``name`` is its cache file's, ``stem`` is shared
    by every version of the same path."""

    path: Path
    size: int
    mtime_ns: int
    stem: str
    name: str

    def same_file(self) -> bool:
        """The media file is still this version (blocking)."""
        try:
            found = self.path.stat()
        except OSError:
            return False
        return (found.st_size, found.st_mtime_ns) == (self.size, self.mtime_ns)


@dataclass
class CacheCounts:
    """What the cache did, since the server started (read by tests and logs)."""

    hits: int = 0  # readings whose audio came from the cache
    made: int = 0  # cache files completed
    abandoned: int = 0  # writes given up (reading stopped, file changed, too big, IO error)
    corrupt: int = 0  # cache files that did not check, removed
    followed: int = 0  # readings that followed a transcode going on (its first included)


class TranscodeFailed(Exception):
    """The shared transcode stopped before the end: its followers make their own."""


class OpusCache:
    """The cache folder, at most ``max_bytes`` of complete files (0: no cache).
    ``settings`` names the encoder's settings: other settings, other files."""

    def __init__(self, folder: Path, max_bytes: int, settings: str = "") -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.settings = settings
        self.counts = CacheCounts()
        self._lock = threading.RLock()
        self._writing: set[str] = set()  # names being written by this process
        self._jobs: dict[str, Transcode] = {}  # the transcodes going on, by name
        self._closed = False

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def key(self, path: Path) -> CacheKey:
        """The cache key of ``path`` as it is now (raises OSError if it is gone)."""
        resolved = path.resolve()
        found = resolved.stat()
        stem = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:32]
        version = hashlib.sha256(f"{found.st_size}:{found.st_mtime_ns}:{self.settings}:"
                                 f"{MAGIC!r}".encode()).hexdigest()[:16]
        return CacheKey(resolved, found.st_size, found.st_mtime_ns, stem,
                        f"{stem}-{version}{SUFFIX}")

    def read(self, key: CacheKey) -> StoredOpus | None:
        """The cached packets of ``key``, checked; None when there are none (or they did
        not check: then the file is removed)."""
        if not self.enabled:
            return None
        path = self.folder / key.name
        try:
            handle = path.open("rb")
        except OSError:
            return None
        try:
            count = _check(handle)
            os.utime(path)  # recently used: the last to go when the folder is full
        except (OSError, CorruptCache) as error:
            handle.close()
            self._counted("corrupt")
            log.warning("Opus cache %s is unreadable (%s): removed, transcoding instead",
                        path.name, error)
            _remove(path)
            return None
        self._counted("hits")
        return StoredOpus(handle, count)

    def follow(self, key: CacheKey, make: Callable[[], Iterator[tuple[int, bytes]]],
               size: int) -> StoredOpus | tuple[Transcode, BinaryIO] | None:
        """What a reading of ``key`` takes its Opus from: the complete file; else the
        transcode going on (started here if none is: ``make`` yields the file's
        packets), with a handle on what it writes; None when the cache is off or
        ``size`` (the Opus's estimated bytes) does not fit in it: the reading transcodes."""
        if not self.enabled:
            return None
        stored = self.read(key)
        if stored is not None:
            return stored
        with self._lock:  # (a transcode finishing puts its file in place under it)
            job = self._jobs.get(key.name)
            if job is None and self._closed:  # the server stops: no new transcode
                return None
            if job is None:
                stored = self.read(key)  # made meanwhile
                if stored is not None:
                    return stored
                writer = self.writer(key) if size <= self.max_bytes else None
                if writer is None:
                    return None
                job = Transcode(self, key, writer, make)
                try:
                    job.begin()
                except OSError as error:
                    log.warning("Opus cache %s: cannot write (%s)", writer.temporary.name, error)
                    writer.close()
                    return None
                self._jobs[key.name] = job
                job.thread.start()
            try:
                handle = job.writer.temporary.open("rb")
            except OSError:
                return None
            self._counted("followed")
            return job, handle

    def close(self, timeout: float = 5.0) -> None:
        """Stop the transcodes going on (their temporary files are removed); none starts
        after."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        for job in jobs:
            job.stop()
        deadline = time.monotonic() + timeout
        for job in jobs:
            job.thread.join(max(0.0, deadline - time.monotonic()))

    def writer(self, key: CacheKey) -> OpusWriter | None:
        """A writer for ``key``; None when the cache is off or this process is already
        writing it (that reading's file serves this one's successors)."""
        if not self.enabled:
            return None
        with self._lock:
            if key.name in self._writing:
                return None
            self._writing.add(key.name)
        return OpusWriter(self, key)

    def _counted(self, what: str) -> None:
        with self._lock:  # readings' threads count at once
            setattr(self.counts, what, getattr(self.counts, what) + 1)

    def _done(self, key: CacheKey) -> None:
        with self._lock:
            self._writing.discard(key.name)

    def _ended(self, job: Transcode) -> None:
        with self._lock:
            if self._jobs.get(job.writer.key.name) is job:
                del self._jobs[job.writer.key.name]

    def _installed(self, key: CacheKey) -> None:
        """``key``'s file is in place: older versions of its path go, then the oldest
        files until the folder fits."""
        self._counted("made")
        for old in self.folder.glob(f"{key.stem}-*{SUFFIX}"):
            if old.name != key.name:
                _remove(old)
        self.trim()

    def trim(self) -> None:
        """Remove the least recently used files until the rest fit in ``max_bytes``,
        and temporary files left by readings that died."""
        files: list[tuple[float, int, Path]] = []
        now = time.time()
        with os.scandir(self.folder) as entries:
            for entry in entries:
                try:
                    found = entry.stat()
                except OSError:
                    continue
                if entry.name.endswith(SUFFIX) and not entry.name.startswith("."):
                    files.append((found.st_mtime, found.st_size, Path(entry.path)))
                elif entry.name.endswith(".tmp") and now - found.st_mtime > STALE_SECONDS:
                    _remove(Path(entry.path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            _remove(path)
            total -= size


@dataclass
class StoredOpus:
    """Cached packets, checked, read back in order: ``packets()`` yields (pts, bytes)."""

    handle: BinaryIO
    count: int

    def packets(self) -> Iterator[tuple[int, bytes]]:
        """Raises CorruptCache if the records do not add up (the CRC matched: a bug)."""
        self.handle.seek(len(MAGIC))
        for _ in range(self.count):
            header = self.handle.read(RECORD.size)
            if len(header) < RECORD.size:
                raise CorruptCache("fewer packets than it says")
            pts, length = RECORD.unpack(header)
            data = self.handle.read(length) if length <= MAX_PACKET else b""
            if len(data) != length:
                raise CorruptCache("a packet cut short")
            yield pts, data

    def close(self) -> None:
        self.handle.close()


class OpusWriter:
    """Writes one file's packets to a temporary file; ``finish()`` puts it in place if
    the whole audio was written and the media file did not change, ``close()`` drops
    what was not finished. A failure to write only ends the writing (logged)."""

    def __init__(self, cache: OpusCache, key: CacheKey) -> None:
        self.cache = cache
        self.key = key
        self.temporary = cache.folder / f".{key.name}.{os.getpid()}-{threading.get_ident()}.tmp"
        self._handle: BinaryIO | None = None
        self._crc = 0
        self._count = 0
        self._size = 0
        self._open = True
        #: bytes written to the temporary file so far
        self.written = 0

    @property
    def writing(self) -> bool:
        """Not finished, not given up."""
        return self._open

    def begin(self) -> None:
        """Create the temporary file, with its magic (raises OSError)."""
        if self._handle is None:
            self.cache.folder.mkdir(parents=True, exist_ok=True)
            self._handle = self.temporary.open("wb")
            self._write(MAGIC)

    def flush(self) -> None:
        """What was written so far can be read from the temporary file (raises OSError)."""
        if self._handle is not None:
            self._handle.flush()

    def add(self, pts: int, data: bytes) -> None:
        if not self._open:
            return
        record = RECORD.pack(pts, len(data)) + data
        self._size += len(record)
        if self._size > self.cache.max_bytes:
            log.info("Opus of %s is larger than vod_opus_cache_mb: not cached", self.key.path.name)
            self.close()
            return
        try:
            self.begin()
            self._write(record)
        except OSError as error:
            log.warning("Opus cache %s: cannot write (%s)", self.temporary.name, error)
            self.close()
            return
        self._count += 1

    def _write(self, data: bytes) -> None:
        assert self._handle is not None
        self._handle.write(data)
        self._crc = zlib.crc32(data, self._crc)
        self.written += len(data)

    def finish(self) -> bool:
        """The audio is all written: put the file in place (True when it was)."""
        if not self._open or self._handle is None:
            self.close()
            return False
        try:
            self._handle.write(TRAILER.pack(self._count, self._crc))
            self._handle.close()
            self._handle = None
            if not self.key.same_file():
                log.info("%s changed while it was read: its Opus is not cached",
                         self.key.path.name)
                self.close()
                return False
            self.temporary.replace(self.cache.folder / self.key.name)
            self._open = False
            self.cache._done(self.key)
            self.cache._installed(self.key)
        except OSError as error:
            log.warning("Opus cache %s: cannot finish (%s)", self.key.name, error)
            self.close()
            return False
        log.info("Opus of %s cached as %s", self.key.path.name, self.key.name)
        return True

    def close(self) -> None:
        """Drop what was written unless ``finish()`` put it in place."""
        if not self._open:
            return
        self._open = False
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        _remove(self.temporary)
        self.cache._counted("abandoned")
        self.cache._done(self.key)


class Transcode:
    """One file's Opus, made by a thread of its own into ``writer`` (SPEED times faster
    than real time after HEAD_START), for every reading that follows it: each reads the
    temporary file up to ``flushed`` (whole records), and waits there for more. It goes
    on to the end of the file whoever follows it (a later reading then finds the file
    complete); it stops at the server's stop, or on an error (its followers then make
    their own Opus from where they are)."""

    def __init__(self, cache: OpusCache, key: CacheKey, writer: OpusWriter,
                 make: Callable[[], Iterator[tuple[int, bytes]]]) -> None:
        self.cache = cache
        self.writer = writer
        self.make = make
        self.thread = threading.Thread(target=self._run, name=f"opus {key.path.name[:40]}",
                                       daemon=True)
        self._changed = threading.Condition()
        self._stop = threading.Event()
        #: bytes of the temporary file that followers may read (whole records)
        self.flushed = 0
        #: every packet is written: followers read up to ``flushed`` and are done
        self.complete = False
        self.failed = False

    def begin(self) -> None:
        self.writer.begin()
        self.writer.flush()
        self.flushed = self.writer.written

    def stop(self) -> None:
        self._stop.set()

    def wait_past(self, position: int, timeout: float = STALL,
                  stopped: threading.Event | None = None) -> int | None:
        """How many bytes may be read, once more than ``position`` may; None when the
        transcode is complete and ``position`` is its end. Raises TranscodeFailed when it
        stopped before, made no progress for ``timeout`` seconds, or ``stopped`` is set
        (looked at every half second)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.flushed <= position and not self.complete and not self.failed:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TranscodeFailed(f"no progress for {timeout:.0f} s")
                if stopped is not None and stopped.is_set():
                    raise TranscodeFailed("the reading stops")
                self._changed.wait(min(left, 0.5))
            if self.flushed > position:
                return self.flushed
            if self.complete:
                return None
            raise TranscodeFailed("the transcode stopped")

    def _publish(self) -> None:
        self.writer.flush()
        with self._changed:
            self.flushed = self.writer.written
            self._changed.notify_all()

    def _run(self) -> None:
        writer, name = self.writer, self.writer.key.path.name
        started = time.monotonic()
        published = 0
        try:
            for pts, data in self.make():
                if self._stop.is_set():
                    raise TranscodeFailed("the server stops")
                writer.add(pts, data)
                if not writer.writing:
                    raise TranscodeFailed("its cache file could not be written")
                if pts - published >= FLUSH_EVERY * RATE:
                    self._publish()
                    published = pts
                    ahead = pts / RATE - HEAD_START - SPEED * (time.monotonic() - started)
                    if ahead > 0:
                        self._stop.wait(ahead / SPEED)
            self._publish()
            with self._changed:
                self.complete = True
                self._changed.notify_all()
            with self.cache._lock:  # in place and forgotten at once (see follow)
                writer.finish()
                self.cache._ended(self)
        except TranscodeFailed as error:
            log.info("Opus of %s: transcode stopped (%s)", name, error)
        except (OSError, ValueError) as error:  # the file changed, or could not be read
            log.warning("Opus of %s: transcode failed (%s: %s)", name, type(error).__name__,
                        error)
        except Exception:  # a bug: the followers make their own
            log.exception("Opus of %s: transcode failed", name)
        finally:
            writer.close()  # (nothing once finished)
            self.cache._ended(self)
            with self._changed:
                if not self.complete:
                    self.failed = True
                self._changed.notify_all()


def _check(handle: BinaryIO) -> int:
    """The packet count of a cache file, after checking its magic, length and CRC."""
    size = os.fstat(handle.fileno()).st_size
    if size < len(MAGIC) + TRAILER.size or handle.read(len(MAGIC)) != MAGIC:
        raise CorruptCache("not a cache file")
    body = size - TRAILER.size
    crc = zlib.crc32(MAGIC)
    left = body - len(MAGIC)
    while left > 0:
        chunk = handle.read(min(CHUNK, left))
        if not chunk:
            raise CorruptCache("shorter than it says")
        crc = zlib.crc32(chunk, crc)
        left -= len(chunk)
    count, stored_crc = TRAILER.unpack(handle.read(TRAILER.size))
    if crc != stored_crc or count * RECORD.size > body:
        raise CorruptCache("CRC mismatch")
    return int(count)


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        log.warning("cannot remove %s: %s", path, error)
