"""``hookcast streams`` and ``hookcast terminate``: the REST API from the command line."""

from __future__ import annotations

import argparse
import base64
import json
import urllib.error
import urllib.request
from typing import Any

from hookcast.config.settings import Settings


class RestCallError(Exception):
    """The server could not be reached or refused the call; the message says which."""


def call(base: str, path: str, body: dict[str, Any] | None, settings: Settings) -> tuple[int, Any]:
    """POST ``body`` to ``base + path`` with the home's REST credentials; (status, JSON)."""
    request = urllib.request.Request(
        base.rstrip("/") + path, data=json.dumps(body or {}).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    if settings.rest_api_token:
        request.add_header("Authorization", f"Bearer {settings.rest_api_token}")
    elif settings.rest_api_user:
        pair = f"{settings.rest_api_user}:{settings.rest_api_password}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(pair).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
    except (urllib.error.URLError, OSError) as error:
        raise RestCallError(f"cannot reach hookcast at {base}: {error}") from error


def format_streams(streams: list[dict[str, Any]]) -> str:
    """One line a stream: id, name, role, status, codecs, size."""
    header = f"{'MEDIA SESSION':38} {'NAME':20} {'ROLE':9} {'STATUS':11} {'CODECS':11} SIZE"
    lines = [header]
    for s in sorted(streams, key=lambda s: (s["name"], not s["published"])):
        role = "publisher" if s["published"] else "player"
        codecs = "/".join(c for c in (s.get("videoCodec"), s.get("audioCodec")) if c) or "-"
        size = f"{s.get('width', 0)}x{s.get('height', 0)}" if s.get("width") else "-"
        lines.append(
            f"{s['mediaSessionId']:38} {s['name']:20} {role:9} {s['status']:11} {codecs:11} {size}"
        )
    return "\n".join(lines)


def parse_bool(text: str) -> bool:
    """argparse type for true/false options."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
