"""Payload shaping by restClientConfig, request signing and reading replies for the
rest_hooks plugin (restClientConfig itself: hookcast.config.rest_client).

(A module whose name starts with ``_`` is a helper, never loaded as a plugin.)
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hookcast import MethodConfig
from hookcast.config.rest_client import prefixed

if TYPE_CHECKING:
    import aiohttp

SIGNATURE_HEADER = "X-Hookcast-Signature"
MAX_REPLY = 1 << 20  # bytes of a backend's reply read at most; a longer one is an error
DEFAULT = MethodConfig()  # WCS's defaults: a method nobody configured


def session_config(defaults: Mapping[str, MethodConfig], reply: Any,
                   problem: Callable[[str], None] | None = None) -> dict[str, MethodConfig]:
    """A session's restClientConfig: its application's ``defaults`` (apps.json) with
    the ``restClientConfig`` of the backend's ``connect`` reply (``reply``, the decoded
    body) over them, field by field (MethodConfig.merged). Bad values in the reply are
    ignored and reported to ``problem`` as "<method>.<field>: <what is wrong>"."""
    configs = dict(defaults)
    given = reply.get("restClientConfig") if isinstance(reply, Mapping) else None
    if isinstance(given, Mapping):
        for method, entry in given.items():
            name = str(method)
            configs[name] = configs.get(name, DEFAULT).merged(entry, prefixed(problem, f"{name}."))
    return configs


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


def standard_webhook_headers(event_id: str, body: bytes, secret: str,
                             now: float | None = None) -> dict[str, str]:
    """The Standard Webhooks headers (standardwebhooks.com): ``webhook-id`` (the event's
    id, the same on every retry), ``webhook-timestamp`` and, with a secret,
    ``webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``; the
    key is the secret's bytes, or for a ``whsec_`` secret the base64 after the prefix."""
    stamp = str(int(time.time() if now is None else now))
    headers = {"webhook-id": event_id, "webhook-timestamp": stamp}
    if secret:
        key = secret.encode()
        if secret.startswith("whsec_"):
            with contextlib.suppress(ValueError):
                key = base64.b64decode(secret[len("whsec_"):], validate=True)
        signed = f"{event_id}.{stamp}.".encode() + body
        digest = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        headers["webhook-signature"] = f"v1,{digest}"
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
