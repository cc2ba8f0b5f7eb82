"""Who may use the privileged HTTP surface: the REST API and ``/metrics``.

The REST API can stop every stream, so a browser page from another site must not be
able to use it, and anything privileged honours the configured auth:

- ``rest_api_allowed_networks`` (CIDRs): other client addresses get 403; without it, and
  without auth, the REST API, ``/metrics`` and the console answer this machine's own
  (loopback) clients only (``/rest-api/health`` and ``/rest-api/openapi.json`` stay open,
  downloads follow the listed networks only);
- cross-site browser requests (an ``Origin`` that is not this server's own) get 403
  unless ``rest_api_cors_origins`` lists the origin (or ``*``); only listed origins get
  CORS headers, so no other site can read an answer either;
- ``rest_api_token`` (Bearer) or ``rest_api_user``/``rest_api_password`` (Basic): 401
  without them (``/rest-api/health`` and ``/rest-api/openapi.json`` stay open);
- another node of the cluster (a valid ``X-Hookcast-Node`` credential, signed with
  ``cluster_secret``: ``hookcast.nodes``) passes the network, host and auth checks; the
  request then names it (``node_of_request``) and is answered for this node alone;
- a POST with a body must say ``Content-Type: application/json`` (415 otherwise), which
  a plain HTML form or a "simple" cross-site request cannot send without a preflight.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
from urllib.parse import urlsplit

from aiohttp import web

from hookcast.api.schema import RestError
from hookcast.config.settings import Settings
from hookcast.nodes import NODE_HEADER, node_of
from hookcast.untrusted import printable

PRIVILEGED = ("/rest-api", "/metrics")
OPEN_PATHS = frozenset({"/rest-api/health", "/rest-api/openapi.json"})
ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "Content-Type, Authorization"


def privileged(path: str) -> bool:
    return path.startswith(PRIVILEGED)


#: where a request of another node keeps that node's id (``node_of_request``)
_NODE = web.RequestKey("hookcast.node", str)


def node_of_request(request: web.Request) -> str:
    """The node a REST call came from (another node of the cluster), or ""."""
    return str(request.get(_NODE, ""))


def check(request: web.Request, settings: Settings) -> str | None:
    """Refuse (RestError) what the request may not do; return the cross-site origin to
    answer with CORS headers, if it is one that is allowed."""
    credential = request.headers.get(NODE_HEADER)
    if credential is not None:
        node = node_of(settings.cluster_secret, credential)
        if node is None or "Origin" in request.headers:
            raise RestError(401, f"{NODE_HEADER}: not a valid node credential")
        request[_NODE] = node
        return None
    _check_network(request, settings, loopback_by_default=request.path not in OPEN_PATHS)
    _check_host(request, settings)
    origin = _cross_site_origin(request)
    if origin is not None and not _listed(settings, origin):
        raise RestError(403, f"cross-site requests from {printable(origin)} are not allowed "
                             "(rest_api_cors_origins)")
    if request.method != "OPTIONS" and request.path not in OPEN_PATHS:
        _check_auth(request, settings)
    return origin


def check_access(request: web.Request, settings: Settings, authenticated: bool = False) -> None:
    """For a plugin's privileged pages (the console): networks, cross-site origins (none
    allowed) and, unless the plugin ``authenticated`` the request itself (a console
    session cookie), the REST API's auth. Raises RestError."""
    _check_network(request, settings, loopback_by_default=True)
    _check_host(request, settings)
    origin = _cross_site_origin(request)
    if origin is not None:
        raise RestError(403, f"cross-site requests from {printable(origin)} are not allowed")
    if request.headers.get("Sec-Fetch-Site") == "cross-site":  # an <img>, a link elsewhere
        raise RestError(403, "cross-site requests are not allowed")
    if not authenticated:
        _check_auth(request, settings)


def check_reader(request: web.Request, settings: Settings) -> None:
    """For downloads (read-only, linked from pages anywhere): networks and auth only."""
    _check_network(request, settings)
    _check_host(request, settings)
    _check_auth(request, settings)


def cors_headers(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ALLOW_HEADERS}


def require_json(request: web.Request) -> None:
    """A body must be declared JSON: 415 otherwise."""
    if request.content_type != "application/json":
        raise RestError(415, f"Content-Type: expected application/json, got "
                             f"{request.content_type or 'none'}", "Content-Type",
                        "application/json")


def open_to_loopback_only(settings: Settings) -> bool:
    """True when the privileged surface answers this machine's own clients only: no
    auth and no rest_api_allowed_networks."""
    return not (settings.rest_api_allowed_networks or settings.rest_api_token
                or settings.rest_api_user)


def _check_network(request: web.Request, settings: Settings,
                   loopback_by_default: bool = False) -> None:
    networks = settings.rest_api_allowed_networks
    if not networks and not (loopback_by_default and open_to_loopback_only(settings)):
        return
    try:
        address = ipaddress.ip_address((request.remote or "").split("%")[0])
    except ValueError:
        address = None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if networks:
        if address is None or not any(address in ipaddress.ip_network(n) for n in networks):
            raise RestError(403, f"client address {request.remote} is not in "
                                 "rest_api_allowed_networks")
    elif address is None or not address.is_loopback:
        raise RestError(403, f"client address {request.remote} is not allowed: without "
                             "rest_api_token (or rest_api_user) this answers clients on "
                             "this machine only; set rest_api_allowed_networks to open it")


def request_host(request: web.Request) -> str | None:
    """The host name the request was sent to (its Host header), None if unreadable."""
    try:
        return urlsplit(f"//{request.host}").hostname
    except ValueError:
        return None


def _check_host(request: web.Request, settings: Settings) -> None:
    """Without auth, answer only to IP addresses, localhost and rest_api_allowed_hosts: a
    page on another site that rebinds its own name to this server's address is refused."""
    if settings.rest_api_token or settings.rest_api_user:
        return
    host = request_host(request)
    if host is None:
        raise RestError(400, "Host: not a host name")
    if host == "localhost" or host in (h.lower() for h in settings.rest_api_allowed_hosts):
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise RestError(403, f"Host {printable(host)!r} is not allowed while the REST API has "
                             "no auth (rest_api_allowed_hosts)") from None


def _cross_site_origin(request: web.Request) -> str | None:
    """The request's Origin when it is not this server's own (None: same site or no
    browser involved)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    parts = urlsplit(origin)
    if parts.scheme == request.scheme and parts.netloc.lower() == request.host.lower():
        return None
    return origin


def _listed(settings: Settings, origin: str) -> bool:
    listed = settings.rest_api_cors_origins
    return "*" in listed or origin.rstrip("/") in (o.rstrip("/") for o in listed)


def _check_auth(request: web.Request, settings: Settings) -> None:
    if not (settings.rest_api_token or settings.rest_api_user):
        return
    if not authorized(settings, request.headers.get("Authorization", "")):
        raise RestError(401, "authorization required: Bearer token or Basic credentials")


def authorized(settings: Settings, header: str) -> bool:
    """Bearer ``rest_api_token`` or Basic ``rest_api_user:rest_api_password``."""
    scheme, _, credentials = header.partition(" ")
    if settings.rest_api_token and scheme.lower() == "bearer":
        return hmac.compare_digest(_wire(credentials.strip()), settings.rest_api_token.encode())
    if settings.rest_api_user and scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(credentials).decode().partition(":")
        except ValueError:  # not base64 (binascii.Error), not UTF-8, not ASCII input
            return False
        user_ok = _same(user, settings.rest_api_user)
        return _same(password, settings.rest_api_password) and user_ok
    return False


def _wire(header_text: str) -> bytes:
    """The bytes a header value had on the wire (HTTP header text is read as latin-1),
    so a UTF-8 token compares as the UTF-8 bytes it was sent as."""
    try:
        return header_text.encode("latin-1")
    except UnicodeEncodeError:
        return header_text.encode("utf-8", "surrogateescape")


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of two texts, whatever characters they hold."""
    return hmac.compare_digest(given.encode(), expected.encode())
