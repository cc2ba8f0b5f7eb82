"""The engine's recordings: start and stop them, tell plugins of each file, recover.

A file goes through three states, kept on disk beside it (recording.store) so that they
survive a crash: *recording* (its marker ``.<file>.recording`` is written when it is
named, before it exists), *finishing* (complete — an MP4 gets its index at the front — and
renamed when its name holds variables known only at its end; ``on_record_finished`` runs,
the record script included) and *final* (the marker gone, the sidecar ``.<file>.json``
holding its stream name, start and end time). Only final files are listed, downloaded
and deleted. A marker found at start is a file a crash cut short: a *recording* one is
made final and announced with ``recovered=True``, ending at its last write; a
*finishing* one is announced again (at least once). Files are named by the
``record_file_name`` hook (the template ``stream_record_policy_template`` when no plugin
decides) and made safe by the core (recording.naming). All disk work runs off the event
loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from hookcast.bus import HookBus
from hookcast.config.properties import Rotation
from hookcast.config.settings import Settings
from hookcast.engine.broadcast import Broadcast
from hookcast.engine.tasks import Tasks
from hookcast.events import RecordingInfo, StreamInfo
from hookcast.recording import store
from hookcast.recording.files import Probe, finalize, probe
from hookcast.recording.formats import Format, choose
from hookcast.recording.naming import (
    end_variables,
    expand,
    has_end_variable,
    has_time_variable,
    rename_safely,
    safe_path,
    start_variables,
)
from hookcast.recording.recorder import Recorder
from hookcast.recording.writer import FileDone

log = logging.getLogger(__name__)

#: seconds a writer may take to write what it still holds and close its file
WRITER_END_TIMEOUT = 60
#: attempts at claiming a free name for a new file (two recordings may want one name)
CLAIM_ATTEMPTS = 100


@dataclass(frozen=True)
class Naming:
    """How one file was named: kept (and saved in its marker) to rename it when its name
    holds variables known only at its end."""

    template: str
    variables: dict[str, str]
    #: the name the naming hook gave when the file opened
    answer: str
    #: the part number in the file name; None when parts are not numbered
    part: int | None

    @property
    def renamed_at_end(self) -> bool:
        return has_end_variable(self.answer) or has_end_variable(self.template)

    @classmethod
    def from_json(cls, saved: Any) -> Naming | None:
        if not isinstance(saved, dict):
            return None
        part = saved.get("part")
        return cls(str(saved["template"]), {str(k): str(v) for k, v in saved["variables"].items()},
                   str(saved["answer"]), int(part) if part is not None else None)


def sink_key(media_session_id: str) -> str:
    """The key a recording is attached to its broadcast under."""
    return f"recording:{media_session_id}"


class RecordingSink:
    """A recording as a sink of its broadcast (hookcast.engine.broadcast.Sink): not a
    stream; closing it stops the recording (its file is made final in the background)."""

    stream = None

    def __init__(self, recordings: Recordings, media_session_id: str) -> None:
        self._recordings = recordings
        self._media_session_id = media_session_id

    async def close(self) -> None:
        await self._recordings.stop(self._media_session_id)


class Recordings:
    """Active recordings by the mediaSessionId of the stream they record."""

    def __init__(self, settings: Settings, bus: HookBus, folder: Path) -> None:
        self.settings = settings
        self.bus = bus
        self.folder = folder
        self.active: dict[str, Recorder] = {}
        self._streams: dict[Recorder, StreamInfo] = {}
        self._broadcasts: dict[Recorder, Broadcast] = {}
        #: when each open file started (Unix time), for its RecordingInfo
        self._part_started: dict[Path, float] = {}
        #: how each file not yet announced was named (to rename it at its end)
        self._namings: dict[Path, Naming] = {}
        self._tasks = Tasks("recording")
        #: counters for Prometheus (the active recordings' own are added on reading)
        self.failed = 0
        self.finished = 0
        self._bytes_done = 0
        self._gaps_done = 0

    @property
    def bytes(self) -> int:
        return self._bytes_done + sum(r.bytes for r in self.active.values())

    @property
    def gaps(self) -> int:
        return self._gaps_done + sum(r.gaps for r in self.active.values())

    async def start(self, snapshot: StreamInfo, broadcast: Broadcast,
                    template: str | None = None, rotation: Rotation | None = None,
                    login: str = "") -> Path:
        """Record the publisher ``snapshot`` from its next keyframe: a recorder becomes a
        sink of its ``broadcast`` (closed with it); a recording already running for it is
        stopped first. ``template`` and ``rotation`` are a REST request's; ``login`` is the
        publisher's (``{login}``). Returns the first file's path. Raises NotRecordable
        (codecs) or OSError (records/ cannot be written)."""
        stream = snapshot
        fmt = choose(stream.video_codec, stream.audio_codec, self.settings.record_formats,
                     self.settings.record_mp4_audio)
        await self.stop(stream.media_session_id)
        template = template or self.settings.stream_record_policy_template
        rotation = self.bus.record_rotation_policy(snapshot, self.settings.record_rotation,
                                                   rotation)
        numbered = rotation is not None and not has_time_variable(template)

        async def new_file(part: int) -> Path:
            started = time.time()
            variables = start_variables(snapshot, started, login)
            naming = Naming(template, variables, self._name(snapshot, template, variables),
                            part if numbered else None)
            path = await asyncio.to_thread(self._new_file, naming, fmt, snapshot, started, part)
            self._namings[path] = naming
            return path

        try:
            first = await new_file(1)
        except OSError as error:  # records/ not writable, the disk full
            self.failed += 1
            reason = f"{type(error).__name__}: {error.strerror or error}"
            log.error("recording of %s cannot start: %s (%s)", stream.name, reason, self.folder)
            await self.bus.on_record_finished(RecordingInfo(
                stream=snapshot, path=self.folder / f"{stream.name}.{fmt.extension}", part=1,
                started_at=time.time(), finished_at=time.time(), error=reason))
            raise

        recorder = Recorder(
            stream.name, broadcast.tracks, fmt, first, rotation, new_file,
            opened=lambda path, number: self._opened(recorder, path, number),
            closed=lambda done, number: self._closed(recorder, done, number),
        )
        self._streams[recorder] = replace(snapshot, record=True, record_name=first.name)
        self.active[stream.media_session_id] = recorder
        self._broadcasts[recorder] = broadcast
        broadcast.attach(sink_key(stream.media_session_id),
                         RecordingSink(self, stream.media_session_id))
        recorder.start()
        log.info("recording %s (%s) to %s", stream.name, stream.media_session_id, first.name)
        return first

    def _name(self, stream: StreamInfo, template: str, variables: dict[str, str]) -> str:
        decided = self.bus.record_file_name(stream, template, variables)
        return decided if decided is not None else expand(template, variables)

    def _new_file(self, naming: Naming, fmt: Format, stream: StreamInfo, started: float,
                  part: int) -> Path:
        """Off the loop: a free, safe path in records/, claimed by writing its marker."""
        self.folder.mkdir(parents=True, exist_ok=True)
        marker = {"state": "recording", "stream": stream.to_wcs(), "part": part,
                  "startedAt": started, "naming": asdict(naming)}
        for _ in range(CLAIM_ATTEMPTS):
            path = safe_path(self.folder, naming.answer, fmt.extension, naming.part)
            try:
                store.claim_marker(path, marker)
            except FileExistsError:  # another recording took that name meanwhile
                continue
            return path
        raise FileExistsError(f"no free file name for {naming.answer!r} in {self.folder}")

    async def stop_all(self) -> None:
        """Stop every recording (shutdown: sinks end before sources)."""
        await asyncio.gather(*(self.stop(key) for key in list(self.active)))

    async def stop(self, media_session_id: str) -> Recorder | None:
        """Stop recording that stream; its last file is made final in the background."""
        recorder = self.active.pop(media_session_id, None)
        if recorder is not None:
            broadcast = self._broadcasts.pop(recorder, None)
            if broadcast is not None:
                broadcast.detach(sink_key(media_session_id))
            await recorder.stop()
            self._tasks.spawn(self._ended(recorder))
        return recorder

    async def _ended(self, recorder: Recorder) -> None:
        try:
            await asyncio.wait_for(recorder.wait(), WRITER_END_TIMEOUT)
        except TimeoutError:  # a disk that hangs: shutdown goes on, the file stays as it is
            log.error("recording of %s: its writer did not finish within %d s", recorder.name,
                      WRITER_END_TIMEOUT)
        self._bytes_done += recorder.bytes
        self._gaps_done += recorder.gaps
        self._streams.pop(recorder, None)
        # no file was opened at these: their markers must not look like a crash
        for path in recorder.unused_paths:
            self._namings.pop(path, None)
        await asyncio.to_thread(store.unlink_markers, recorder.unused_paths)

    # --- each file ----------------------------------------------------------------------

    def _opened(self, recorder: Recorder, path: Path, part: int) -> None:
        stream = self._streams.get(recorder)
        if stream is None:
            return
        stream = self._streams[recorder] = replace(stream, record_name=path.name)
        self._part_started[path] = started = time.time()
        info = RecordingInfo(stream=stream, path=path, part=part, started_at=started,
                             video_codec=stream.video_codec, audio_codec=stream.audio_codec)
        self._tasks.spawn(self.bus.on_record_started(info))

    def _closed(self, recorder: Recorder, done: FileDone, part: int) -> None:
        stream = self._streams.get(recorder)
        if stream is None:
            return
        if done.error:
            self.failed += 1
            log.error("recording of %s ended: %s (%s)", stream.name, done.error, done.path)
            for media_session_id, active in list(self.active.items()):
                if active is recorder:
                    self._tasks.spawn(self.stop(media_session_id))
        started = self._part_started.pop(done.path, recorder.started_at)
        info = RecordingInfo(stream=replace(stream, record_name=done.path.name), path=done.path,
                             part=part, started_at=started, error=done.error)
        self._tasks.spawn(self._announce(info, recovered=False))

    async def _announce(self, info: RecordingInfo, recovered: bool) -> None:
        """Make the file complete, give it its last name, announce it; it is final once
        every ``on_record_finished`` is over."""
        naming = self._namings.pop(info.path, None)
        size, found, problem, finished_at = await asyncio.to_thread(
            self._finish_file, info.path, recovered, info.error)
        finished = replace(
            info, finished_at=finished_at, size=size, recovered=recovered,
            error=info.error or problem, duration=found.duration if found else 0.0,
            video_codec=found.video_codec if found else info.video_codec,
            audio_codec=found.audio_codec if found else info.audio_codec)
        path = info.path
        if size and naming is not None and naming.renamed_at_end:
            path, problem = await self._rename(finished, naming, found)
            finished = replace(finished, error=finished.error or problem)
        elif size:  # a crash from here on: announced again at the next start
            await _on_disk(f"{path.name}: its state", store.write_marker, path,
                           store.finishing_marker(finished))
        await self._finished(replace(
            finished, path=path, stream=replace(finished.stream, record_name=path.name)))

    async def _finished(self, info: RecordingInfo) -> None:
        """Announce a complete file; then it is final (its sidecar written, its marker
        gone). Cancelled meanwhile (the server stops): it stays unfinished, and is
        announced again at the next start."""
        self.finished += 1
        await self.bus.on_record_finished(info)
        await _on_disk(f"{info.path.name}: its stream name and times", store.make_final,
                       info.path, store.sidecar_for(info) if info.size else None)

    async def _rename(self, finished: RecordingInfo, naming: Naming,
                      found: Probe | None) -> tuple[Path, str]:
        """The complete file renamed with the variables known at its end; the new name's
        marker (state finishing) is written before the file takes that name."""
        path = finished.path
        assert finished.finished_at is not None
        variables = {**naming.variables,
                     **end_variables(finished.finished_at, found.duration if found else 0.0)}
        stream = store.stream_of({"name": variables.get("streamName", ""),
                                  "mediaSessionId": variables.get("mediaSessionId", ""),
                                  "sessionId": variables.get("sessionId", ""),
                                  "audioCodec": variables.get("audioCodec", ""),
                                  "videoCodec": variables.get("videoCodec", ""),
                                  "recordName": path.name})
        name = self._name(stream, naming.template, variables)
        marker = {**store.finishing_marker(finished), "renamedFrom": path.name}
        failure = ""
        try:
            renamed = await asyncio.to_thread(rename_safely, path, name, naming.part, marker)
        except OSError as error:
            failure = f"cannot rename {path.name}: {type(error).__name__}: {error}"
            log.error("%s", failure)
            renamed = path
        if renamed == path:  # kept its name: its own marker says it is finishing
            await _on_disk(f"{path.name}: its state", store.write_marker, path,
                           store.finishing_marker(finished))
        else:  # the new name's marker is there: the former name's goes
            await asyncio.to_thread(store.marker_of(path).unlink, True)
        return renamed, failure

    @staticmethod
    def _finish_file(path: Path, recovered: bool,
                     error: str) -> tuple[int, Probe | None, str, float]:
        """Off the loop: make the file complete and read what it holds (size, probe,
        problem, when it ended: now, or its last write for a file a crash cut short)."""
        try:
            if not path.exists() or path.stat().st_size == 0:
                path.unlink(missing_ok=True)
                return 0, None, error or "no media was written", time.time()
            written = path.stat().st_mtime if recovered else time.time()
            if recovered or path.suffix == ".mp4":
                finalize(path)
            return path.stat().st_size, probe(path), "", written
        except Exception as failure:  # a file a crash or a full disk left unreadable
            problem = f"cannot make {path.name} final: {type(failure).__name__}: {failure}"
            log.error("%s", problem)
            return (path.stat().st_size if path.exists() else 0), None, problem, time.time()

    # --- start and shutdown -------------------------------------------------------------

    async def recover(self) -> int:
        """Finish every file a crash left unfinished (made final and announced); how
        many. Those that were finishing go first: a rename they were in the middle of
        may leave the marker of their former name."""
        markers = await asyncio.to_thread(store.read_markers, self.folder)
        ordered = sorted(markers, key=lambda found: found[1].get("state") != "finishing")
        for marker, saved in ordered:
            if not await asyncio.to_thread(os.path.lexists, marker):
                continue  # a former name, cleared by the rename it belonged to
            if saved.get("state") == "finishing":
                await self._recover_finishing(store.media_of(marker), saved)
            else:
                await self._recover(marker, saved)
        return len(markers)

    async def _recover(self, marker: Path, saved: dict[str, Any]) -> None:
        """A file cut short while it was written: made complete, renamed, announced."""
        path = store.media_of(marker)
        try:
            stream = store.stream_of(saved["stream"])
            part, started = int(saved.get("part", 1)), float(saved.get("startedAt", 0))
            naming = Naming.from_json(saved.get("naming"))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            log.error("%s: unreadable recording marker (%s); removed", marker, error)
            await asyncio.to_thread(marker.unlink, True)
            return
        log.info("recovering %s, cut short when the server stopped", path.name)
        if naming is not None:
            self._namings[path] = naming
        await self._announce(RecordingInfo(stream=stream, path=path, part=part,
                                           started_at=started), recovered=True)

    async def _recover_finishing(self, path: Path, saved: dict[str, Any]) -> None:
        """A complete file whose announcement a crash cut short: announced again."""
        exists = await asyncio.to_thread(store.settle_rename, path, saved.get("renamedFrom"))
        info: RecordingInfo | None = None
        try:
            info = store.finished_info(path, saved)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            log.error("%s: unreadable recording marker (%s)", store.marker_of(path), error)
        if info is None or not exists:
            await asyncio.to_thread(store.marker_of(path).unlink, True)
            return
        log.info("announcing %s again: the server stopped before it was final", path.name)
        try:
            size, found = await asyncio.to_thread(lambda: (path.stat().st_size, probe(path)))
        except Exception as error:  # removed or spoilt meanwhile: announced as it is
            log.error("%s: %s: %s", path.name, type(error).__name__, error)
            size, found = 0, None
        await self._finished(replace(
            info, size=size, duration=found.duration if found else info.duration,
            video_codec=found.video_codec if found else info.video_codec,
            audio_codec=found.audio_codec if found else info.audio_codec))

    async def close(self) -> None:
        """Stop every recording; return once every file is final and announced."""
        for media_session_id in list(self.active):
            await self.stop(media_session_id)
        await self._tasks.wait()


async def _on_disk(what: str, function: Callable[..., None], *args: Any) -> None:
    """Run ``function(*args)`` off the loop; a disk that refuses (full, read-only) is
    logged, never stops the file being announced."""
    try:
        await asyncio.to_thread(function, *args)
    except OSError as error:
        log.error("%s cannot be kept: %s: %s", what, type(error).__name__,
                  error.strerror or error)
