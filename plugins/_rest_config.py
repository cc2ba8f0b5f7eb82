"""restClientConfig, payload shaping, request signing and reading replies for the
rest_hooks plugin.

(A module whose name starts with ``_`` is a helper, never loaded as a plugin.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp

SIGNATURE_HEADER = "X-Hookcast-Signature"
MAX_REPLY = 1 << 20  # bytes of a backend's reply read at most; a longer one is an error


def _names(value: Any) -> frozenset[str]:
    """``"sdp, custom"`` (WCS's comma-separated form) or a list, as a set of names."""
    if isinstance(value, str):
        return frozenset(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple):
        return frozenset(str(part) for part in value)
    return frozenset()


@dataclass(frozen=True)
class MethodConfig:
    """The restClientConfig entry of one hook method (WCS defaults when absent)."""

    rest_exclude: frozenset[str] = frozenset()
    client_exclude: frozenset[str] = frozenset()
    on_error: str = "LOG"  # LOG | FAIL
    policy: str = "NOTIFY"  # NOTIFY | OVERWRITE | DISABLE
    overwrite: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entry: Any) -> MethodConfig:
        if not isinstance(entry, Mapping):
            return cls()
        on_error = str(entry.get("restOnError", "LOG")).upper()
        policy = str(entry.get("restPolicy", "NOTIFY")).upper()
        return cls(
            rest_exclude=_names(entry.get("restExclude")),
            client_exclude=_names(entry.get("clientExclude")),
            on_error=on_error if on_error in ("LOG", "FAIL") else "LOG",
            policy="DISABLE" if policy == "DISABLED" else (
                policy if policy in ("NOTIFY", "OVERWRITE", "DISABLE") else "NOTIFY"),
            overwrite=_names(entry.get("restOverwrite")),
        )


DEFAULT = MethodConfig()


def parse_client_config(reply: Any) -> dict[str, MethodConfig]:
    """``restClientConfig`` from a connect reply: method name -> its MethodConfig."""
    config = reply.get("restClientConfig") if isinstance(reply, Mapping) else None
    if not isinstance(config, Mapping):
        return {}
    return {str(method): MethodConfig.parse(entry) for method, entry in config.items()}


def shape(payload: Mapping[str, Any], config: MethodConfig) -> dict[str, Any]:
    """The payload without the fields ``restExclude`` names."""
    return {k: v for k, v in payload.items() if k not in config.rest_exclude}


def overwritten(reply: Any, config: MethodConfig) -> dict[str, Any]:
    """Fields taken from the backend's reply (restPolicy OVERWRITE, restOverwrite)."""
    if config.policy != "OVERWRITE" or not isinstance(reply, Mapping):
        return {}
    return {k: reply[k] for k in config.overwrite if k in reply}


def encode(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def signature_headers(
    body: bytes, secret: str, wcs_hash: bool, now: float | None = None
) -> dict[str, str]:
    """Headers that let a backend check a hook came from this server.

    ``Authorization: WCS <hex HMAC-MD5(secret, body)>`` when ``rest_hook_send_hash`` is
    on (WCS's scheme), and always, with a secret, ``X-Hookcast-Signature:
    t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``: the timestamp lets a
    backend refuse replays (check it is recent), SHA-256 replaces MD5.
    """
    if not secret:
        return {}
    key = secret.encode()
    headers: dict[str, str] = {}
    if wcs_hash:
        headers["Authorization"] = "WCS " + hmac.new(key, body, hashlib.md5).hexdigest()
    stamp = str(int(time.time() if now is None else now))
    digest = hmac.new(key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers[SIGNATURE_HEADER] = f"t={stamp},v1={digest}"
    return headers


def verify_signature(
    body: bytes, header: str, secret: str, now: float, tolerance: float = 300
) -> bool:
    """Check an ``X-Hookcast-Signature`` header (what a backend in Python would do)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    stamp, digest = fields.get("t", ""), fields.get("v1", "")
    if not stamp.isdigit() or abs(now - int(stamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, digest)


# --- replies ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A backend's answer: HTTP status (0 when none came) and JSON body. ``error`` says
    why a reply cannot be used although it came (too large) or why none came (timeout,
    unreachable); ``result`` is the label the request is counted under."""

    status: int
    body: Any = None
    error: str = ""
    result: str = "ok"
    location: str = ""  # a redirect's Location (never followed)

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.error

    @property
    def answer(self) -> str:
        """What came back, in a few words: the status, or why there is nothing to use."""
        return str(self.status) if self.status not in (0, 200) else self.error

    def describe(self) -> str:
        """The log's account of a reply that is not ok."""
        if self.location:
            return f"{self.status}, redirect to {self.location} not followed"
        if self.result == "too_large":
            cap = f"{MAX_REPLY >> 20} MiB"
            return f"{self.error} (the cap, {cap}), not read: an error, restOnError applies"
        return self.answer


class ReplyTooLarge(Exception):
    """A reply body longer than MAX_REPLY bytes."""


async def read_reply(response: aiohttp.ClientResponse) -> bytes:
    """The whole body, however it is chunked; ReplyTooLarge past MAX_REPLY bytes."""
    if (response.content_length or 0) > MAX_REPLY:
        raise ReplyTooLarge()
    raw = bytearray()
    async for chunk in response.content.iter_any():
        raw += chunk
        if len(raw) > MAX_REPLY:
            raise ReplyTooLarge()
    return bytes(raw)


def parse_json(raw: bytes) -> Any:
    """A reply body as JSON, or None when it is not (ValueError covers bad UTF-8 too)."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None
