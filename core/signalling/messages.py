"""What clients send over the WCS WebSocket, checked at the door.

Each check names the field that is wrong, so the client's ``fail`` or FAILED status
says what to fix. What a client sends is bounded before anything keeps or echoes it:
nesting depth (every frame), the size of ``custom`` and the length of a stream name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hookcast.config.settings import Settings

#: The ``Amend`` field by which a before_connect plugin hides fields from the client:
#: ``Amend(clientExclude={"StreamStatusEvent": ["custom"], ...})``.
CLIENT_EXCLUDE = "clientExclude"


def exclusions(value: Any) -> dict[str, frozenset[str]]:
    if not isinstance(value, Mapping):
        return {}
    return {str(method): frozenset(map(str, fields)) for method, fields in value.items()
            if isinstance(fields, list | tuple | frozenset | set)}


def custom_problem(value: Any, settings: Settings) -> str | None:
    """What is wrong with a ``custom`` field (absent is fine), naming the property."""
    if value is None:
        return None
    if not isinstance(value, dict):
        return "custom: expected an object"
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > settings.max_custom_size:
        return (f"custom: {size} bytes as JSON exceeds the limit of "
                f"{settings.max_custom_size} (max_custom_size)")
    return None


def connection_problem(fields: Mapping[str, Any], settings: Settings) -> str | None:
    """What is wrong with a ``connection`` payload, naming the field."""
    app_key = fields.get("appKey")
    if app_key is not None and not isinstance(app_key, str):
        return "appKey: expected a string"
    for key in ("clientVersion", "authToken"):
        if key in fields and not isinstance(fields[key], str):
            return f"{key}: expected a string"
    return custom_problem(fields.get("custom"), settings)


def stream_limit_problem(payload: Mapping[str, Any], settings: Settings) -> str | None:
    """A publish/play that is too large to keep or echo back: answered with a ``fail``."""
    name = payload.get("name")
    if isinstance(name, str) and len(name) > settings.max_stream_name_length:
        return (f"name: {len(name)} characters exceeds the limit of "
                f"{settings.max_stream_name_length} (max_stream_name_length)")
    return custom_problem(payload.get("custom"), settings)


def is_unicode(text: str) -> bool:
    """False for a string JSON let through that no file system, argv or log can hold
    (a lone UTF-16 surrogate such as ``"\\ud800"``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def stream_problem(payload: Mapping[str, Any], published: bool) -> str | None:
    """What is wrong with a publishStream/playStream payload, naming the field."""
    for key in ("name", "sdp"):
        value = payload.get(key)
        if value is None:
            return f"{key} is missing"
        if not isinstance(value, str) or not value.strip():
            return f"{key}: expected a non-empty string"
    if published and "\x00" in payload["name"]:  # no file, argv or variable can hold one
        return "name: must not contain a NUL character"
    if not is_unicode(payload["name"]):
        return "name: must be valid Unicode (it holds a lone surrogate)"
    for key in ("hasAudio", "hasVideo", "record"):
        if key in payload and not isinstance(payload[key], bool):
            return f"{key}: expected true or false"
    return None
