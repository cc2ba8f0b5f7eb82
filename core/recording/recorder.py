"""The recorder: a sink on a broadcast, beside the players.

It attaches to the source's tracks (asking for a keyframe, as a joining player does)
and is handed every shared encoded packet synchronously as the relay reads it: no queue,
task or wake-up of its own on the loop. It puts each packet on the recording clock
(timeline) and hands it to its writer thread, which muxes it into the file; nothing here
decodes, and nothing here touches the disk. Rotation: once a part is ``rotation`` long
(seconds or megabytes), the writer is told to go on in a new file from the next
keyframe, which is asked for at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from hookcast.config.properties import Rotation
from hookcast.recording.formats import Format
from hookcast.recording.timeline import Arrived, Timed, Timeline
from hookcast.recording.writer import FileDone, FileOpened, Writer, WriterEnded, WriterEvent
from hookcast.rtc.gate import KeyframeGate, gate_for
from hookcast.rtc.packets import EncodedPacket, FrameMeta
from hookcast.rtc.relay import PublishedTrack

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class _Track:
    """The recorder's sink on one kind of the broadcast: a video file starts at a
    keyframe and, after frames were lost upstream, goes on at the next one (its gate)."""

    kind: str
    gate: KeyframeGate
    offer: Callable[[EncodedPacket], None]


class Recorder:
    """One recording of one broadcast: every part, from ``start()`` to ``stop()``.

    ``next_path(part)`` (a coroutine, off the loop) names the file of a part;
    ``opened(path, part)`` and ``closed(done, part)`` report each file, on the loop.
    """

    def __init__(
        self, name: str, tracks: dict[str, PublishedTrack], fmt: Format, first: Path,
        rotation: Rotation | None, next_path: Callable[[int], Awaitable[Path]],
        opened: Callable[[Path, int], None], closed: Callable[[FileDone, int], None],
    ) -> None:
        self.name = name
        self.format = fmt
        self.rotation = rotation
        self.path = first
        self.part = 1
        self.started_at = time.time()
        self._tracks = {kind: track for kind, track in tracks.items()
                        if (kind == "video" and fmt.video) or (kind == "audio" and fmt.audio_in)}
        self._next_path = next_path
        self._opened, self._closed = opened, closed
        self._timeline = Timeline(frozenset(self._tracks))
        self._sinks: list[tuple[PublishedTrack, _Track]] = []
        self._writer: Writer | None = None
        self._loop = asyncio.get_running_loop()
        self._size: tuple[int, int] | None = None
        self._part_started = 0.0  # recording seconds at which the current part began
        self._cutting: asyncio.Task[None] | None = None
        self._finished = asyncio.Event()
        self._parts: dict[Path, int] = {}
        self._named: list[Path] = [first]
        self._opened_paths: set[Path] = set()

    @property
    def bytes(self) -> int:
        return self._writer.progress.bytes if self._writer is not None else 0

    @property
    def gaps(self) -> int:
        return self._writer.progress.gaps if self._writer is not None else 0

    def start(self) -> None:
        for kind, track in self._tracks.items():
            rate = 90000 if kind == "video" else (48000 if self.format.audio_in == "opus" else 8000)
            sink = _Track(kind, gate_for(kind, track.request_keyframe),
                          partial(self._on_packet, kind, rate))
            self._sinks.append((track, sink))
            track.attach(sink)

    async def stop(self) -> None:
        """Stop taking packets; the writer closes the current file. Returns at once;
        ``wait()`` returns once every file of this recording is closed."""
        for track, sink in self._sinks:
            track.detach(sink)
        if self._cutting is not None:
            self._cutting.cancel()
            await asyncio.gather(self._cutting, return_exceptions=True)
        try:
            for timed in self._timeline.drain():
                self._deliver(timed)
        finally:  # whatever happened, the writer is told to end (and so ends)
            if self._writer is not None:
                self._writer.finish()
            else:
                self._finished.set()

    async def wait(self) -> None:
        await self._finished.wait()

    def _on_packet(self, kind: str, rate: int, packet: EncodedPacket) -> None:
        """Called by the relay with every packet (the shared one: never mutated)."""
        meta = packet.opaque
        if isinstance(meta, FrameMeta):
            if meta.width and meta.height:
                self._size = (meta.width, meta.height)
            arrival = meta.arrival
        else:
            arrival = time.monotonic()
        arrived = Arrived(kind, bytes(packet), int(packet.pts or 0), rate,
                          bool(packet.is_keyframe), arrival)
        for timed in self._timeline.feed(arrived):
            self._deliver(timed)

    def _deliver(self, packet: Timed) -> None:
        if self._writer is None:
            self._writer = Writer(self.path, self.format, self._size, self._from_writer,
                                  self.name, on_gap=self._request_keyframe)
            self._writer.start()
        elif self._due(packet):
            self._cutting = asyncio.create_task(self._cut(), name=f"recorder {self.name} cut")
        self._writer.put(packet)

    def _due(self, packet: Timed) -> bool:
        """A new part is due (it starts at the next keyframe)."""
        rotation = self.rotation
        if rotation is None or self._cutting is not None or self._writer is None:
            return False
        if rotation.seconds is not None:
            return packet.seconds - self._part_started >= rotation.seconds
        limit = (rotation.megabytes or 0) * 1_000_000
        return self._writer.progress.file_bytes >= limit

    @property
    def unused_paths(self) -> list[Path]:
        """Paths named for this recording that no file was ever opened at (it stopped
        before its first packet, or before the keyframe of a new part)."""
        return [p for p in self._named if p not in self._opened_paths]

    async def _cut(self) -> None:
        path = await self._next_path(self.part + 1)
        self._named.append(path)
        assert self._writer is not None
        self._writer.cut(path)
        self._request_keyframe()  # the next part starts at it: ask now rather than wait

    def _request_keyframe(self) -> None:
        """Ask the publisher for a keyframe (a new part or the end of a gap waits for one)."""
        video = self._tracks.get("video")
        if video is not None:
            video.request_keyframe()

    def _from_writer(self, event: WriterEvent) -> None:
        """On the writer's thread: hand each event to the loop, in order."""
        try:
            self._loop.call_soon_threadsafe(self._on_writer_event, event)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            log.warning("recording %s: %s after the event loop closed", self.name, event)

    def _on_writer_event(self, event: WriterEvent) -> None:
        if isinstance(event, FileOpened):
            if event.path != self.path:  # the next part
                self.part += 1
                self.path = event.path
                self._cutting = None
            self._part_started = event.seconds
            self._parts[event.path] = self.part
            self._opened_paths.add(event.path)
            self._opened(event.path, self.part)
        elif isinstance(event, FileDone):
            self._closed(event, self._parts.pop(event.path, self.part))
        elif isinstance(event, WriterEnded):
            self._finished.set()
