"""Record file names: the variables a template can use, and the core's safe-name rule.

Whatever a naming plugin returns, ``safe_path`` makes it a file name that stays inside
records/: no path separators, no NUL or control characters, no leading dot, at most 255
bytes with the part number and extension, and never the name of an existing file (a
number is added). The rule lives here, in the core, so no plugin can break it.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from hookcast.config.home import inside
from hookcast.events import StreamInfo

MAX_BYTES = 255
#: variables known when a recording starts
START_VARIABLES = ("streamName", "mediaSessionId", "sessionId", "login", "audioCodec",
                   "videoCodec", "startTime", "startTimeMillis")
_VARIABLE = re.compile(r"\{(\w+)\}")
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")


def start_variables(stream: StreamInfo, started_at: float, login: str = "") -> dict[str, str]:
    """The template variables known at the start of a recording."""
    return {
        "streamName": stream.name, "mediaSessionId": stream.media_session_id,
        "sessionId": stream.session_id, "login": login,
        "audioCodec": stream.audio_codec, "videoCodec": stream.video_codec,
        "startTime": str(int(started_at)), "startTimeMillis": str(int(started_at * 1000)),
    }


def expand(template: str, variables: dict[str, str]) -> str:
    """``template`` with each ``{variable}`` it knows replaced; others left as they are."""
    return _VARIABLE.sub(lambda m: variables.get(m.group(1), m.group(0)), template)


def unknown_variables(template: str, known: tuple[str, ...]) -> list[str]:
    return [name for name in _VARIABLE.findall(template) if name not in known]


def clean(name: str) -> str:
    """A name with every character a file name must not hold replaced by ``_``."""
    cleaned = _UNSAFE.sub("_", name).lstrip(".").strip()
    return cleaned or f"recording-{int(time.time())}"


def _fit(stem: str, suffix: str) -> str:
    """``stem + suffix`` cut (at a character boundary) to MAX_BYTES of UTF-8."""
    budget = MAX_BYTES - len(suffix.encode())
    encoded = stem.encode()[:budget]
    return encoded.decode("utf-8", "ignore") + suffix


def safe_path(folder: Path, name: str, extension: str, part: int | None = None) -> Path:
    """A new file in ``folder`` for ``name``: cleaned, fitted, never an existing file."""
    stem = clean(name)
    numbered = "" if part is None else f"-{part}"
    for attempt in range(10_000):
        unique = numbered if attempt == 0 else f"{numbered}_{attempt}"
        candidate = inside(folder, _fit(stem, f"{unique}.{extension}"))
        marker = candidate.with_name(f".{candidate.name}.recording")
        if not candidate.exists() and not marker.exists():
            return candidate
    raise FileExistsError(f"no free file name for {name!r} in {folder}")
