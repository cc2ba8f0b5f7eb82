"""records/ on disk: which files are final, what is known of each, and reaching one
without ever following a link.

Beside each recording file ``<file>`` the server keeps two hidden files of its own:

- ``.<file>.recording``, the *marker*, while the file is not final. It is written when
  the file is named (before the file exists) and its JSON says how far the file got:
  ``"state": "recording"`` while it is written, ``"finishing"`` once it is complete and
  has its last name while ``on_record_finished`` (the record script included) runs. A
  marker found at start is a file a crash (or a kill) left unfinished: the server
  finishes it then (``Recordings.recover``), unless the process its marker names
  (``OWNER``) still runs: records/ may be shared by the workers of one home.
- ``.<file>.json``, the *sidecar*, once it is final: the stream it recorded and when
  (``streamName``, ``mediaSessionId``, ``part``, ``startTime`` and ``endTime`` in epoch
  milliseconds). It goes with the file when the file is deleted.

The rule, one for listing, downloading and deleting: a file is *final* when it is a
regular file of records/ (not a symbolic link, not a folder, not hidden, its name in
records/ itself) and has no marker. Nothing here follows a link: names are looked up
with ``lstat`` and files opened with ``O_NOFOLLOW``. Every function here that touches
the disk is to be called off the event loop; the last ones say what a marker and a
sidecar hold (their JSON is this module's, read back after a restart).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from hookcast.events import RecordingInfo, StreamInfo

log = logging.getLogger(__name__)

MARKER = ".{}.recording"
SIDECAR = ".{}.json"
#: a marker or sidecar being written, renamed over the real one when complete
TEMPORARY = ".{}.tmp"
#: the longest marker or sidecar read (a bigger one is not ours)
JSON_LIMIT = 64 * 1024
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class NotFound(Exception):
    """Not a file of records/ (missing, hidden, a link, a folder, a name that leaves)."""


class NotFinal(Exception):
    """A file still being recorded, or finished but not yet announced."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} is not final yet: it is being recorded, or finished and "
                         "its record script is running; it is listed by "
                         "/rest-api/records/find_all once final")


def marker_of(path: Path) -> Path:
    return path.with_name(MARKER.format(path.name))


def sidecar_of(path: Path) -> Path:
    return path.with_name(SIDECAR.format(path.name))


def is_unfinished(path: Path) -> bool:
    """The file at ``path`` has a marker (a link named like one counts too)."""
    return os.path.lexists(marker_of(path))


def _write_json(target: Path, temporary: Path, data: dict[str, Any]) -> None:
    """Write ``target`` whole or not at all (written aside, then renamed over it)."""
    try:
        temporary.write_text(json.dumps(data))
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_marker(path: Path, data: dict[str, Any]) -> None:
    """Write (or rewrite) the marker of ``path``: the file is not final."""
    _write_json(marker_of(path), path.with_name(TEMPORARY.format(path.name)),
                {**data, OWNER: _this_process()})


def claim_marker(path: Path, data: dict[str, Any]) -> None:
    """Create the marker of ``path``, which must not exist yet (FileExistsError): claims
    the name ``path`` for a file about to take it. The marker appears whole (written
    aside, then linked to its name), so another process never reads half of one."""
    text = json.dumps({**data, OWNER: _this_process()})
    aside = path.with_name(TEMPORARY.format(f"{path.name}.{os.getpid()}"))
    try:
        aside.write_text(text)
        os.link(aside, marker_of(path))
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        with open(marker_of(path), "x") as marker:  # a file system without hard links
            marker.write(text)
    finally:
        aside.unlink(missing_ok=True)


def read_marker(marker: Path) -> dict[str, Any]:
    """A marker's JSON (raises OSError, ValueError)."""
    saved = json.loads(_read(marker, JSON_LIMIT))
    if not isinstance(saved, dict):
        raise ValueError("not a JSON object")
    return saved


def markers(folder: Path) -> list[Path]:
    """Every marker in ``folder``, sorted."""
    return sorted(folder.glob(MARKER.format("*"))) if folder.is_dir() else []


def media_of(marker: Path) -> Path:
    """The recording file a marker stands beside."""
    return marker.with_name(marker.name[1:-len(".recording")])


def make_final(path: Path, sidecar: dict[str, Any] | None) -> None:
    """The file is final: its sidecar written (when there is a file), its marker gone —
    gone even when the sidecar cannot be written (a full disk: OSError, raised after)."""
    try:
        if sidecar is not None and os.path.lexists(path):
            _write_json(sidecar_of(path), path.with_name(TEMPORARY.format(path.name)),
                        sidecar)
    finally:
        marker_of(path).unlink(missing_ok=True)


# --- reading and deleting final files ----------------------------------------------------


def _checked_name(name: str) -> None:
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\x00" in name \
            or len(name.encode("utf-8", "surrogatepass")) > 255:
        raise NotFound(name)


def _regular(path: Path) -> os.stat_result:
    """``path``'s own status (a link is not followed): a regular file's, or NotFound."""
    try:
        status = path.lstat()
    except (OSError, ValueError) as error:
        raise NotFound(path.name) from error
    if not stat.S_ISREG(status.st_mode):
        raise NotFound(path.name)
    return status


def final_path(folder: Path, name: str) -> Path:
    """The final file ``name`` of ``folder``. Raises NotFound or NotFinal."""
    _checked_name(name)
    path = folder / name
    _regular(path)
    if is_unfinished(path):
        raise NotFinal(name)
    return path


def open_final(folder: Path, name: str) -> tuple[IO[bytes], os.stat_result]:
    """The final file ``name`` of ``folder``, open for reading (the caller closes it),
    and its status: the file opened is the one checked (no link followed, no swap in
    between). Raises NotFound or NotFinal."""
    path = final_path(folder, name)
    try:
        descriptor = os.open(path, _OPEN_FLAGS)
    except OSError as error:  # gone, or a link put in its place meanwhile (ELOOP)
        raise NotFound(name) from error
    file = os.fdopen(descriptor, "rb")
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode):
        file.close()
        raise NotFound(name)
    return file, status


def delete(folder: Path, name: str) -> None:
    """Delete the final file ``name`` of ``folder`` and its sidecar. Raises NotFound or
    NotFinal. A link is never followed: at worst a link put in the file's place
    meanwhile is what goes."""
    path = final_path(folder, name)
    try:
        path.unlink()
    except FileNotFoundError as error:
        raise NotFound(name) from error
    sidecar_of(path).unlink(missing_ok=True)


def read_sidecar(path: Path) -> dict[str, Any]:
    """What the sidecar of ``path`` says (``{}`` when there is none, or it is not ours)."""
    try:
        saved = json.loads(_read(sidecar_of(path), JSON_LIMIT))
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def _read(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of the regular file ``path`` (a link is not followed)."""
    descriptor = os.open(path, _OPEN_FLAGS)
    with os.fdopen(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise OSError(f"{path.name}: not a regular file")
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path.name}: over {limit} bytes")
    return data


def final_files(folder: Path, extensions: Collection[str]) -> list[Path]:
    """Every final file of ``folder`` with one of ``extensions`` (lower case, dotted)."""
    found = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                path = Path(entry.path)
                if path.suffix.lower() in extensions and not is_unfinished(path):
                    found.append(path)
    return found


# --- what a marker and a sidecar hold -------------------------------------------------


def finishing_marker(info: RecordingInfo) -> dict[str, Any]:
    """The marker of a complete file being announced: enough to announce it again
    (``finished_info``)."""
    return {"state": "finishing", "stream": info.stream.to_wcs(), "part": info.part,
            "startedAt": info.started_at, "finishedAt": info.finished_at,
            "error": info.error, "duration": info.duration}


def finished_info(path: Path, saved: dict[str, Any]) -> RecordingInfo:
    """The RecordingInfo a finishing marker stands for (recovered: announced again)."""
    return RecordingInfo(
        stream=replace(stream_of(saved["stream"]), record_name=path.name), path=path,
        part=int(saved.get("part", 1)), started_at=float(saved.get("startedAt", 0)),
        finished_at=float(saved["finishedAt"]), error=str(saved.get("error", "")),
        duration=float(saved.get("duration", 0.0)), recovered=True)


def sidecar_for(info: RecordingInfo) -> dict[str, Any]:
    """What is kept with a final file: the stream it recorded, and when."""
    return {"streamName": info.stream.name, "mediaSessionId": info.stream.media_session_id,
            "part": info.part, "startTime": int(info.started_at * 1000),
            "endTime": int((info.finished_at or info.started_at) * 1000)}


def read_markers(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Off the loop: every marker of ``folder`` with its JSON, but those of another
    process still running (another worker of ``hookcast serve --workers N`` on this
    home: the files are its own to finish); unreadable ones are removed (logged)."""
    found = []
    for marker in markers(folder):
        try:
            saved = read_marker(marker)
        except (OSError, ValueError) as error:
            log.error("%s: unreadable recording marker (%s); removed", marker, error)
            marker.unlink(missing_ok=True)
            continue
        if not _running_elsewhere(saved.get(OWNER)):
            found.append((marker, saved))
    return found


# --- which process a marker belongs to --------------------------------------------------

#: the key of a marker naming the process that writes its file: "<pid>:<start>", where
#: start is when that process started (Linux: clock ticks after boot), so a pid used
#: again by another process is not taken for the writer
OWNER = "owner"


def _started(pid: int) -> str | None:
    """When process ``pid`` started ("" where /proc does not say), None if it is gone."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        stat_line = ""
    fields = stat_line.rsplit(")", 1)[-1].split()
    if len(fields) > 19:
        return None if fields[0] == "Z" else fields[19]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


def _this_process() -> str:
    return f"{os.getpid()}:{_started(os.getpid()) or ''}"


def _running_elsewhere(owner: object) -> bool:
    """Whether ``owner`` (a marker's OWNER) is another process that still runs."""
    if not isinstance(owner, str):
        return False  # a marker of a version before owners: the starting server's
    pid, _, start = owner.partition(":")
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    return _started(int(pid)) == start


def settle_rename(path: Path, former: Any) -> bool:
    """Off the loop: finish a rename to ``path`` that a crash interrupted (the former
    name, when it is still the same file, and its marker go); whether ``path`` exists."""
    exists = os.path.lexists(path)
    if isinstance(former, str) and former and not former.startswith(".") and exists \
            and "/" not in former and "\x00" not in former:
        old = path.with_name(former)
        try:
            if os.path.lexists(old) and os.path.samefile(old, path):
                old.unlink()
            if not os.path.lexists(old):
                marker_of(old).unlink(missing_ok=True)
        except OSError as error:
            log.error("%s: cannot finish its rename from %s: %s", path.name, former, error)
    return exists


def unlink_markers(paths: list[Path]) -> None:
    for path in paths:
        marker_of(path).unlink(missing_ok=True)


def stream_of(wcs: dict[str, Any]) -> StreamInfo:
    """The stream a marker names (as WCS spells it: ``to_wcs``)."""
    return StreamInfo(
        media_session_id=str(wcs.get("mediaSessionId", "")), name=str(wcs.get("name", "")),
        published=True, status=str(wcs.get("status", "")),
        session_id=str(wcs.get("sessionId", "")), app_key=str(wcs.get("appKey", "")),
        record=True, record_name=str(wcs.get("recordName", "")),
        audio_codec=str(wcs.get("audioCodec", "")), video_codec=str(wcs.get("videoCodec", "")),
    )
