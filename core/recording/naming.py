"""Record file names: the variables a template can use, and the core's safe-name rule.

Whatever a naming plugin returns, ``safe_path`` makes it a file name that stays inside
records/: no path separators, no NUL or control characters, no leading dot, at most
MAX_BYTES of UTF-8 with the part number and extension, and never the name of an
existing file (a number is added). The rule lives here, in the core, so no plugin can
break it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hookcast.config.home import inside
from hookcast.config.properties import RECORD_END_VARIABLES, TEMPLATE_VARIABLE
from hookcast.events import StreamInfo
from hookcast.recording.store import claim_marker, marker_of

#: longest file name: 255 bytes less the 11 of the marker written beside it while it is
#: recorded (``.<name>.recording``), so that the marker's own name fits too
MAX_BYTES = 244
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")
_TIME_VARIABLES = ("startTime", "startTimeMillis", "endTime", "endTimeMillis")


def start_variables(stream: StreamInfo, started_at: float, login: str = "") -> dict[str, str]:
    """The template variables known when a file opens (``started_at``: Unix time)."""
    return {
        "streamName": stream.name, "mediaSessionId": stream.media_session_id,
        "sessionId": stream.session_id, "login": login,
        "audioCodec": stream.audio_codec, "videoCodec": stream.video_codec,
        "startTime": str(int(started_at)), "startTimeMillis": str(int(started_at * 1000)),
    }


def end_variables(finished_at: float, duration: float) -> dict[str, str]:
    """The variables known once a file is finished (``duration`` in seconds)."""
    return {"endTime": str(int(finished_at)), "endTimeMillis": str(int(finished_at * 1000)),
            "duration": str(round(duration * 1000))}


def expand(template: str, variables: dict[str, str]) -> str:
    """``template`` with each ``{variable}`` it knows replaced, in one pass (a value is
    never expanded again); the others are left as they are."""
    return TEMPLATE_VARIABLE.sub(lambda m: variables.get(m.group(1), m.group(0)), template)


def has_time_variable(template: str) -> bool:
    """Names from this template differ by time: rotated parts are not numbered."""
    return any(f"{{{name}}}" in template for name in _TIME_VARIABLES)


def has_end_variable(text: str) -> bool:
    """A name (or template) holding a variable known only when the file is finished."""
    return any(f"{{{name}}}" in text for name in RECORD_END_VARIABLES)


def clean(name: str) -> str:
    """A name with every character a file name must not hold replaced by ``_``."""
    cleaned = _UNSAFE.sub("_", name).encode("utf-8", "replace").decode("utf-8")
    cleaned = cleaned.lstrip(".").strip()
    return cleaned or f"recording-{int(time.time())}"


def _fit(stem: str, suffix: str) -> str:
    """``stem + suffix`` cut (at a character boundary) to MAX_BYTES of UTF-8."""
    budget = MAX_BYTES - len(suffix.encode())
    encoded = stem.encode("utf-8", "replace")[:budget]
    return encoded.decode("utf-8", "ignore") + suffix


def safe_path(folder: Path, name: str, extension: str, part: int | None = None) -> Path:
    """A new file in ``folder`` for ``name``: cleaned, fitted, never an existing file."""
    stem = clean(name)
    numbered = "" if part is None else f"-{part}"
    for attempt in range(10_000):
        unique = numbered if attempt == 0 else f"{numbered}_{attempt}"
        candidate = inside(folder, _fit(stem, f"{unique}.{extension}"))
        if not os.path.lexists(candidate) and not os.path.lexists(marker_of(candidate)):
            return candidate
    raise FileExistsError(f"no free file name for {name!r} in {folder}")


def login_of(client: Mapping[str, Any]) -> str:
    """``{login}``: what the connection says of its user: ``login``, else ``sipLogin``,
    else ``custom.login``; empty when none is a string."""
    custom = client.get("custom")
    for value in (client.get("login"), client.get("sipLogin"),
                  custom.get("login") if isinstance(custom, Mapping) else None):
        if isinstance(value, str) and value:
            return value
    return ""


def rename_safely(path: Path, name: str, part: int | None = None,
                  marker: dict[str, Any] | None = None) -> Path:
    """Give the finished file ``path`` the safe name for ``name`` (same extension),
    never replacing another file; returns the path it now has. With ``marker``, the new
    name's marker is written (exclusively: it claims the name) before the file takes it,
    so the file is never seen under its new name without one."""
    extension = path.suffix.lstrip(".")
    numbered = "" if part is None else f"-{part}"
    if _fit(clean(name), f"{numbered}.{extension}") == path.name:
        return path
    for _ in range(100):
        target = safe_path(path.parent, name, extension, part)
        try:
            if marker is not None:
                claim_marker(target, marker)
        except FileExistsError:  # claimed meanwhile
            continue
        try:
            _link(path, target)
        except FileExistsError:  # taken meanwhile
            if marker is not None:
                marker_of(target).unlink(missing_ok=True)
            continue
        except BaseException:
            if marker is not None:
                marker_of(target).unlink(missing_ok=True)
            raise
        return target
    raise FileExistsError(f"no free file name for {name!r} in {path.parent}")


def _link(path: Path, target: Path) -> None:
    """Move ``path`` to ``target`` unless ``target`` exists (FileExistsError)."""
    try:
        os.link(path, target)  # fails if the name was taken meanwhile: never replaces
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links
        if os.path.lexists(target):
            raise FileExistsError(target) from None
        path.rename(target)
        return
    path.unlink()
