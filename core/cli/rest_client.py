"""Calling the REST API from the command line: the HTTP call, the checks of its answer
and the tables (``streams``, ``terminate``, ``plugins`` and ``rest_commands``)."""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import unicodedata
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from hookcast.config.settings import Settings

#: The REST API's answer (404) when no stream matches, as WCS words it.
STREAM_NOT_FOUND = "Stream not found"


class RestCallError(Exception):
    """The call did not get an answer from hookcast's REST API; the message says why."""


class Unreachable(RestCallError):
    """Nothing answered at the URL (refused, timed out, no route)."""


class NotTheRestApi(RestCallError):
    """Something answered, but not hookcast's REST API (another port, another service)."""


def http_url(text: str) -> str:
    """argparse type for ``--url``: ``http(s)://host[:port]``, nothing else."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None
    if parts.scheme in ("http", "https") and parts.hostname:
        return text
    hint = f" (try http://{text})" if "://" not in text else ""
    raise argparse.ArgumentTypeError(f"expected http://host:port, got {text!r}{hint}")


def call(base: str, path: str, body: dict[str, Any] | None, settings: Settings) -> tuple[int, Any]:
    """POST ``body`` to ``base + path`` with the home's REST credentials; (status, JSON).

    Raises Unreachable when nothing answers and NotTheRestApi when the answer is not
    JSON (the WebSocket port, or another service, answered)."""
    url = base.rstrip("/") + path
    request = urllib.request.Request(
        url, data=json.dumps(body or {}).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    if settings.rest_api_token:
        request.add_header("Authorization", f"Bearer {settings.rest_api_token}")
    elif settings.rest_api_user:
        pair = f"{settings.rest_api_user}:{settings.rest_api_password}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(pair).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
            kind = response.headers.get_content_type()
    except urllib.error.HTTPError as error:
        status, kind, raw = error.code, error.headers.get_content_type(), error.read()
    except (urllib.error.URLError, OSError) as error:
        raise Unreachable(f"cannot reach hookcast at {base}: {error}") from error
    except (http.client.InvalidURL, ValueError) as error:
        raise RestCallError(f"cannot call {url}: {error}") from error
    except http.client.HTTPException as error:
        raise not_the_rest_api(base, path, f"something that is not HTTP ({error!r})") from error
    try:
        return status, json.loads(raw or b"null")
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise not_the_rest_api(base, path, f"{status} with {kind}") from error


def not_the_rest_api(base: str, path: str, answer: str) -> NotTheRestApi:
    """The error for an answer that did not come from the REST API, with the likely cause."""
    return NotTheRestApi(
        f"{base.rstrip('/')}{path} answered {answer}, which is not the REST API's JSON; "
        f"is {base} hookcast's HTTP port (http.port)?"
    )


def message_of(body: Any) -> str:
    """What an error answer says (its ``message``), or the answer itself."""
    return str(body.get("message", body)) if isinstance(body, dict) else str(body)


def none_found(status: int, body: Any, not_found: str = STREAM_NOT_FOUND) -> bool:
    """The 404 a method answers when nothing matches (``not_found``, as WCS words it),
    not an unknown method's 404."""
    return status == 404 and message_of(body) == not_found


def is_stream_list(body: Any) -> bool:
    return isinstance(body, list) and all(
        isinstance(s, dict) and isinstance(s.get("mediaSessionId"), str)
        and isinstance(s.get("name"), str) for s in body
    )


#: Table columns: title, widest a cell may be (longer text is cut and ends with …).
Columns = tuple[tuple[str, int], ...]
_STREAM_COLUMNS: Columns = (("MEDIA SESSION", 40), ("NAME", 40), ("ROLE", 9), ("STATUS", 12),
                            ("CODECS", 11), ("SIZE", 0))


def format_table(columns: Columns, rows: list[list[str]]) -> str:
    """A header line and one line a row. Columns are as wide as their widest cell up to
    their limit (wider text is cut, ending with …), measured in terminal columns (a CJK
    character takes two); the last column is never cut nor padded; control characters
    are escaped."""
    table = [[title for title, _ in columns]]
    table += [[_printable(cell) for cell in row] for row in rows]
    widths = [
        min(limit, max(_width(row[index]) for row in table))
        for index, (_, limit) in enumerate(columns[:-1])
    ]
    return "\n".join(
        " ".join([*(_fit(cell, width) for cell, width in zip(row[:-1], widths, strict=True)),
                  row[-1]])
        for row in table
    )


def format_streams(streams: list[dict[str, Any]]) -> str:
    """One line a stream: id, name, role, status, codecs, size (``format_table``)."""
    rows = []
    for s in sorted(streams, key=lambda s: (s["name"], not s.get("published"))):
        codecs = "/".join(str(c) for c in (s.get("videoCodec"), s.get("audioCodec")) if c)
        rows.append([str(cell) for cell in (
            s["mediaSessionId"], s["name"], "publisher" if s.get("published") else "player",
            s.get("status", "-"), codecs or "-",
            f"{s.get('width', 0)}x{s.get('height', 0)}" if s.get("width") else "-",
        )])
    return format_table(_STREAM_COLUMNS, rows)


def _printable(text: str) -> str:
    """``text`` with what would break a line or the terminal escaped (\\n, \\x1b, ...)."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or 0x202A <= ord(ch) <= 0x202E
        or 0x2066 <= ord(ch) <= 0x2069 else ch
        for ch in text
    )


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _width(text: str) -> int:
    return sum(_char_width(ch) for ch in text)


def _fit(text: str, width: int) -> str:
    """``text`` padded to ``width`` columns, or cut to ``width - 1`` and ended with …."""
    if _width(text) > width:
        kept: list[str] = []
        used = 0
        for ch in text:
            if used + _char_width(ch) > width - 1:
                break
            kept.append(ch)
            used += _char_width(ch)
        text = "".join(kept) + "…"
    return text + " " * (width - _width(text))


def parse_bool(text: str) -> bool:
    """argparse type for true/false options."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
