"""The thread that writes one recording: a bounded queue in, files out.

The event loop only ever calls ``put`` (never blocks) and ``finish``. Packets go to the
thread in batches (every BATCH_DELAY seconds, or BATCH_MAX packets), so the thread
wakes ten times a second, not at every packet. Overflow policy:
when the disk cannot keep up and the queue is full, packets are dropped from there on
until the next video keyframe (audio included), so the file has a gap, never a broken
picture; each gap is logged once and counted, and ``on_gap`` is called (the recorder
asks the publisher for that keyframe: a browser may send none for minutes unasked).
An error writing (disk full, records/ not writable) ends the recording: the thread
reports it and discards what still comes.

Parts: ``cut(path)`` (from the loop) makes the thread close the current file at the
next video keyframe (or the next packet, audio only) and go on in ``path``; each file's
times start at 0. The thread reports, in order, each file opened and closed and its
own end (``events``, called on the thread).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hookcast.recording.formats import Format
from hookcast.recording.muxer import Muxer
from hookcast.recording.timeline import Timed
from hookcast.rtc.gate import KeyframeGate, OpenGate

log = logging.getLogger(__name__)

BATCH_DELAY = 0.25  # seconds a packet may wait on the loop side before going to the thread
BATCH_MAX = 128  # packets: a batch goes at once when it has this many
QUEUE_SIZE = 24  # batches: about 6 s of media


@dataclass(frozen=True)
class FileOpened:
    """The thread opened a file; ``seconds``: where it starts on the recording clock."""

    path: Path
    seconds: float


@dataclass(frozen=True)
class FileDone:
    """A file the thread has closed: its path, media seconds, and what went wrong."""

    path: Path
    duration: float
    error: str = ""


@dataclass(frozen=True)
class WriterEnded:
    """The thread has ended: every file it opened is closed."""


WriterEvent = FileOpened | FileDone | WriterEnded


@dataclass
class Progress:
    """Counters the loop reads (plain ints: written by the thread, read anywhere)."""

    packets: int = 0
    bytes: int = 0
    gaps: int = 0
    dropped: int = 0
    file_bytes: int = 0  # bytes of media muxed into the current file


_CUT = object()
_END = object()


class Writer:
    """Owns one recording's thread, its queue and its current Muxer."""

    def __init__(self, path: Path, fmt: Format, size: tuple[int, int] | None,
                 events: Callable[[WriterEvent], None], name: str,
                 on_gap: Callable[[], None] | None = None) -> None:
        self.format = fmt
        self.progress = Progress()
        self._path = path
        self._size = size
        self._events = events
        self._queue: queue.Queue[object] = queue.Queue(QUEUE_SIZE)
        self._batch: list[Timed] = []
        self._loop = asyncio.get_running_loop()
        self._flush_at: asyncio.TimerHandle | None = None
        self._has_video = fmt.video is not None
        #: in sync but for a gap: then every packet waits for the next video keyframe
        self._gate = KeyframeGate(on_gap, synced=True) if self._has_video else OpenGate()
        self._next_path: Path | None = None
        self._parts_opened = 0
        self._failed = False
        self._thread = threading.Thread(target=self._run, name=f"recorder {name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # --- the loop's side ------------------------------------------------------------

    def put(self, packet: Timed) -> None:
        """Queue one packet; never blocks (the overflow policy drops to a keyframe)."""
        if not self._gate.synced and not self._gate.passes(
                packet.kind == "video" and packet.keyframe):  # audio waits for it too
            self.progress.dropped += 1
            return
        self._batch.append(packet)
        if len(self._batch) >= BATCH_MAX:
            self._flush()
        elif self._flush_at is None:
            self._flush_at = self._loop.call_later(BATCH_DELAY, self._flush)

    def _flush(self) -> None:
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            self.progress.gaps += 1
            self.progress.dropped += len(batch)
            log.warning("recording %s: the disk is not keeping up; dropping to the next "
                        "keyframe (gap %d)", self._path.name, self.progress.gaps)
            self._gate.unsync()  # and the publisher is asked for that keyframe

    def cut(self, path: Path) -> None:
        """Go on in ``path`` from the next video keyframe (the next packet, audio only)."""
        self._put_control((_CUT, path))

    def finish(self) -> None:
        """No more packets: the thread closes the file and ends."""
        self._put_control(_END)

    def _put_control(self, item: object) -> None:
        self._flush()  # what came before goes first
        while True:  # control items are never dropped: make room by dropping media
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    dropped = self._queue.get_nowait()
                    self.progress.dropped += len(dropped) if isinstance(dropped, list) else 0
                except queue.Empty:
                    pass

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # --- the thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._write_all()
        finally:
            self._events(WriterEnded())

    def _write_all(self) -> None:
        muxer: Muxer | None = None
        start = 0.0  # recording seconds at which the current file starts
        while True:
            item = self._queue.get()
            if item is _END:
                break
            if isinstance(item, tuple) and item[0] is _CUT:
                self._next_path = item[1]
                continue
            if self._failed or not isinstance(item, list):
                continue
            for packet in item:
                muxer, start = self._write(muxer, start, packet)
                if self._failed:
                    break
        if muxer is not None:
            self._close(muxer)

    def _write(self, muxer: Muxer | None, start: float,
               item: Timed) -> tuple[Muxer | None, float]:
        """Write one packet, opening or cutting the file as needed; after an error (disk
        full, not writable, a muxer refusing) the file is closed and the writer failed."""
        try:
            if muxer is not None and self._next_path is not None and self._starts_part(item):
                self._close(muxer)
                muxer, self._path, self._next_path = None, self._next_path, None
            if muxer is None:
                # the first file starts where the recording clock does (its first keyframe,
                # though audio captured just after it may arrive first); a part at its cut
                muxer = Muxer(self._path, self.format, self._size)
                start = item.seconds if self._parts_opened else 0.0
                self._parts_opened += 1
                self.progress.file_bytes = 0
                self._events(FileOpened(self._path, start))
            if item.seconds < start:
                return muxer, start  # captured before this part's first picture
            muxer.write(item.kind, item.data, round((item.seconds - start) * item.rate),
                        item.keyframe)
        except Exception as error:
            self._failed = True
            reason = f"{type(error).__name__}: {error}"
            log.error("recording %s failed: %s", self._path, reason)
            if muxer is not None:
                self._close(muxer, reason)
            else:
                self._events(FileDone(self._path, 0.0, reason))
            return None, start
        self.progress.packets += 1
        self.progress.bytes += len(item.data)
        self.progress.file_bytes += len(item.data)
        return muxer, start

    def _starts_part(self, item: Timed) -> bool:
        return not self._has_video or (item.kind == "video" and item.keyframe)

    def _close(self, muxer: Muxer, error: str = "") -> None:
        try:
            muxer.close()
        except Exception as close_error:
            error = error or f"{type(close_error).__name__}: {close_error}"
        self._events(FileDone(muxer.path, muxer.duration, error))
