"""What clients send over the WCS WebSocket, checked at the door.

Each check names the field that is wrong, so the client's ``fail`` or FAILED status
says what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The ``Amend`` field by which a before_connect plugin hides fields from the client:
#: ``Amend(clientExclude={"StreamStatusEvent": ["custom"], ...})``.
CLIENT_EXCLUDE = "clientExclude"


def exclusions(value: Any) -> dict[str, frozenset[str]]:
    if not isinstance(value, Mapping):
        return {}
    return {str(method): frozenset(map(str, fields)) for method, fields in value.items()
            if isinstance(fields, list | tuple | frozenset | set)}


def stream_problem(payload: Mapping[str, Any]) -> str | None:
    """What is wrong with a publishStream/playStream payload, naming the field."""
    for key in ("name", "sdp"):
        value = payload.get(key)
        if value is None:
            return f"{key} is missing"
        if not isinstance(value, str) or not value.strip():
            return f"{key}: expected a non-empty string"
    for key in ("hasAudio", "hasVideo", "record"):
        if key in payload and not isinstance(payload[key], bool):
            return f"{key}: expected true or false"
    if payload.get("custom") is not None and not isinstance(payload["custom"], dict):
        return "custom: expected an object"
    return None
