"""WHIP (RFC 9725) and WHEP (draft-ietf-wish-whep): publish from OBS, FFmpeg or
GStreamer and play in any WHEP player, on the HTTP port.

- ``POST /whip/<name>`` (``application/sdp``, the client's sendonly offer) publishes
  ``name``; ``POST /whep/<name>`` (a recvonly offer) plays it. Either answers **201**
  with the SDP answer, ``Location`` (the session's URL, unguessable), ``ETag`` and a
  ``Link: <...>; rel="ice-server"`` for the configured STUN server.
- ``DELETE <session>`` ends it (a publisher UNPUBLISHED, its players ``Stopped by
  publisher stop``); ``PATCH <session>`` with ``application/trickle-ice-sdpfrag`` and
  ``If-Match: <etag>`` adds the client's trickled candidates (204); an ICE restart is
  answered 422, as the RFC allows a server that does not support one.
- A stream published over WHIP is an ordinary stream (``MediaCore.offer``): admitted by
  the same hooks (``before_publish``/``before_play``, the ``publishStream``/``playStream``
  REST hooks of ``whip_app_key``), relayed, recorded, found and terminated by REST,
  pulled, played by the Web SDK. The client's Bearer token reaches them as the stream's
  ``custom.bearerToken``; ``whip_token`` is a static token for the simple case.
- Errors: 415 (not ``application/sdp``), 400 (a malformed offer or name), 401 with
  ``WWW-Authenticate: Bearer`` (a wrong token, or refused by a plugin or a REST hook),
  404 (WHEP: ``Stream not found``), 409 (the name is published), 422 with an
  ``application/problem+json`` body (simulcast, no common codec, an ICE restart),
  503 with ``Retry-After`` (at capacity, or shutting down).

Offers without candidates (OBS since 30.2, FFmpeg's muxer) connect by peer-reflexive
candidates: the server learns the client's address from its connectivity checks.
Browser clients get CORS for ``whip_cors_origins`` (default any: WHIP, like WCS
signalling, is open to pages of any site; ``whip_token`` or a backend guards it).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from typing import Any

from aiohttp import web

from hookcast import (
    Home,
    Info,
    MediaCore,
    ServerInfo,
    SessionInfo,
    Settings,
    hookimpl,
    printable,
    stream_name_problem,
)
from hookcast.properties import CommaList, Property, Text

log = logging.getLogger(__name__)

#: the largest SDP offer or candidate fragment taken (bytes)
MAX_BODY = 64 * 1024
#: seconds a client is asked to wait when the server is at capacity
RETRY_AFTER = 5
#: sessions kept at most (each is a stream, pending or connected)
MAX_SESSIONS = 10_000
SDP = "application/sdp"
FRAG = "application/trickle-ice-sdpfrag"
PROBLEM = "application/problem+json"
FINAL = ("UNPUBLISHED", "STOPPED", "FAILED")

PROPERTIES = [
    Property("whip_token", "", Text(),
             "Bearer token WHIP and WHEP requests must carry (Authorization: Bearer ...); "
             "empty = none asked here (plugins and REST hooks still see the client's "
             "token as the stream's custom.bearerToken) (hookcast)"),
    Property("whip_app_key", "defaultApp", Text(),
             "The application WHIP and WHEP streams belong to: its REST hooks "
             "(publishStream, playStream, ...) apply to them (hookcast)"),
    Property("whip_cors_origins", ("*",), CommaList(),
             "Browser origins that may use WHIP and WHEP cross-site (https://app.example); "
             "* = any, empty = none (hookcast)"),
]


class Problem(Exception):
    """An HTTP error answer: status, a title, and headers to add."""

    def __init__(self, status: int, title: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.headers = headers or {}


class HttpClient:
    """One WHIP or WHEP session: the client of its stream (``hookcast.Client``), as a
    WCS session would be; it keeps the answer and the stream's status."""

    def __init__(self, direction: str, remote: str, app_key: str, token: str) -> None:
        self.direction = direction
        self.id = secrets.token_urlsafe(24)
        self.etag = f'"{secrets.token_hex(8)}"'
        custom = {"bearerToken": token} if token else {}
        self._info = SessionInfo(session_id=str(uuid.uuid4()), app_key=app_key,
                                 status="ESTABLISHED", remote=remote,
                                 client={"appKey": app_key, "custom": custom,
                                         "protocol": direction.upper()})
        self.answer: str | None = None
        #: the client's ICE username fragment (its offer's): a PATCH with another one
        #: is an ICE restart
        self.ufrag = ""
        self.media_session_id = ""
        self.status = ""
        self.info_text = ""
        self.ended = asyncio.Event()

    @property
    def info(self) -> SessionInfo:
        return self._info

    @property
    def gone(self) -> bool:
        return self.ended.is_set()

    async def send(self, message: str, *data: Any) -> None:
        if message == "setRemoteSDP" and len(data) >= 2:
            self.answer = str(data[1])
        elif message == "notifyStreamStatusEvent" and data and isinstance(data[0], dict):
            self.status = str(data[0].get("status", ""))
            self.info_text = str(data[0].get("info", ""))
            if self.status in FINAL:
                self.ended.set()


class Whip:
    """The plugin (see the module docstring)."""

    def __init__(self) -> None:
        self.media: MediaCore | None = None
        self.settings: Settings | None = None
        self.sessions: dict[str, HttpClient] = {}
        #: offers being answered (counted against MAX_SESSIONS too)
        self._opening = 0
        #: a task per session, forgetting it once its stream is over
        self._watchers: set[asyncio.Task[None]] = set()

    @hookimpl
    def plugin_properties(self) -> list[Property]:
        return PROPERTIES

    @hookimpl
    def after_server_start(self, server: ServerInfo) -> None:
        self.media, self.settings = server.media, server.settings

    @hookimpl
    async def before_server_stop(self) -> None:
        self.media = None  # new requests: 503

    @hookimpl
    async def after_server_stop(self) -> None:
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        self.sessions.clear()

    @hookimpl
    def register_rest_routes(self, settings: Settings, home: Home) -> list[web.RouteDef]:
        routes = []
        for direction in ("whip", "whep"):
            routes += [
                web.post(f"/{direction}/{{name:.+}}", self._offer(direction)),
                web.route("OPTIONS", f"/{direction}/{{name:.+}}", self._options(direction)),
                web.delete(f"/{direction}-sessions/{{id}}", self.delete),
                web.patch(f"/{direction}-sessions/{{id}}", self.patch),
                web.route("OPTIONS", f"/{direction}-sessions/{{id}}",
                          self._options(direction)),
            ]
        return routes

    # --- HTTP ---------------------------------------------------------------------------

    def _cors(self, request: web.Request) -> dict[str, str]:
        origin = request.headers.get("Origin")
        allowed = self.settings.value("whip_cors_origins") if self.settings else ()
        if origin is None or not ("*" in allowed or origin.rstrip("/") in
                                  (o.rstrip("/") for o in allowed)):
            return {}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Post"}

    def _options(self, direction: str) -> Any:
        async def options(request: web.Request) -> web.Response:
            """The preflight: never authenticated (RFC 9725 section 4.1)."""
            headers = {**self._cors(request), "Accept-Post": SDP,
                       "Allow": "POST, OPTIONS" if "sessions" not in request.path
                       else "PATCH, DELETE, OPTIONS"}
            if "Access-Control-Allow-Origin" in headers:
                headers.update({
                    "Access-Control-Allow-Methods": "POST, PATCH, DELETE, OPTIONS",
                    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
                    "Access-Control-Max-Age": "600"})
            return web.Response(status=204, headers=headers)
        return options

    def _answer_error(self, request: web.Request, problem: Problem) -> web.Response:
        headers = {**self._cors(request), **problem.headers}
        if problem.status == 422:
            return web.json_response({"type": "about:blank", "title": problem.title,
                                      "status": 422}, status=422, headers=headers,
                                     content_type=PROBLEM)
        return web.Response(status=problem.status, text=problem.title + "\n",
                            headers=headers)

    def _token(self, request: web.Request) -> str:
        """The request's Bearer token ("" if none); 401 when whip_token asks another."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else ""
        expected = self.settings.value("whip_token") if self.settings else ""
        if expected and not secrets.compare_digest(token.encode(), expected.encode()):
            raise Problem(401, "a valid Bearer token is needed (Authorization: Bearer ...)",
                          {"WWW-Authenticate": 'Bearer realm="hookcast"'})
        return token

    def _offer(self, direction: str) -> Any:
        async def offer(request: web.Request) -> web.Response:
            try:
                return await self._take_offer(request, direction)
            except Problem as problem:
                return self._answer_error(request, problem)
        return offer

    async def _take_offer(self, request: web.Request, direction: str) -> web.Response:
        media, settings = self.media, self.settings
        if media is None or settings is None:
            raise Problem(503, "the server is starting or stopping",
                          {"Retry-After": str(RETRY_AFTER)})
        if request.content_type != SDP:
            raise Problem(415, f"Content-Type: expected {SDP}, got "
                               f"{printable(request.content_type or 'none', 60)}",
                          {"Accept-Post": SDP})
        token = self._token(request)
        name = request.match_info["name"]
        problem = stream_name_problem(name, settings.max_stream_name_length)
        if problem:
            raise Problem(400, f"stream name: {problem}")
        sdp = await _body(request)
        _check_offer(sdp, direction)
        if len(self.sessions) + self._opening >= MAX_SESSIONS:
            raise Problem(503, f"{MAX_SESSIONS} WHIP and WHEP sessions run",
                          {"Retry-After": str(RETRY_AFTER)})
        self._opening += 1
        try:
            return await self._open(request, direction, media, settings, token, name, sdp)
        finally:
            self._opening -= 1

    async def _open(self, request: web.Request, direction: str, media: MediaCore,
                    settings: Settings, token: str, name: str, sdp: str) -> web.Response:
        client = HttpClient(direction, request.remote or "", settings.value("whip_app_key"),
                            token)
        client.ufrag = _ufrag(sdp)
        custom = {"bearerToken": token} if token else {}
        stream = await media.offer(client, name, sdp, direction == "whip", custom=custom)
        if client.answer is None or stream.status in FINAL:
            raise _failure(direction, stream.info)
        client.media_session_id = stream.media_session_id
        self.sessions[client.id] = client
        watcher = asyncio.get_running_loop().create_task(self._forget_when_over(client))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        log.info("%s %r: %s from %s", direction.upper(), printable(name, 100),
                 stream.media_session_id, printable(request.remote or "", 60))
        url = request.url
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
        if forwarded in ("http", "https"):  # behind a proxy that terminates TLS
            url = url.with_scheme(forwarded)
        location = str(url.with_path(f"/{direction}-sessions/{client.id}").with_query(None))
        headers = {**self._cors(request), "Location": location, "ETag": client.etag,
                   **_ice_servers(settings)}
        return web.Response(status=201, text=client.answer, content_type=SDP,
                            headers=headers)

    async def _forget_when_over(self, client: HttpClient) -> None:
        await client.ended.wait()
        self.sessions.pop(client.id, None)

    def _session(self, request: web.Request) -> HttpClient:
        client = self.sessions.get(request.match_info["id"])
        direction = request.path.split("-", 1)[0].strip("/")
        if client is None or client.direction != direction:
            raise Problem(404, "no such session")
        self._token(request)
        return client

    async def delete(self, request: web.Request) -> web.Response:
        try:
            client = self._session(request)
        except Problem as problem:
            return self._answer_error(request, problem)
        self.sessions.pop(client.id, None)
        if self.media is not None:
            await self.media.stop(client.media_session_id, Info.USER)
        client.ended.set()
        return web.Response(status=200, headers=self._cors(request))

    async def patch(self, request: web.Request) -> web.Response:
        try:
            client = self._session(request)
            if request.content_type != FRAG:
                raise Problem(415, f"Content-Type: expected {FRAG}")
            match = request.headers.get("If-Match")
            if match is None:
                raise Problem(428, "If-Match: the session's ETag is needed")
            fragment = await _body(request)
            restart = Problem(422, "ICE restarts are not supported: end the session "
                                   "(DELETE) and start a new one")
            if match.strip() == "*":
                raise restart
            if match.strip() != client.etag:
                raise Problem(412, "If-Match: not this session's ETag")
            if _restarts_ice(fragment, client.ufrag):
                raise restart
            await self._trickle(client, fragment)
        except Problem as problem:
            return self._answer_error(request, problem)
        return web.Response(status=204, headers={**self._cors(request), "ETag": client.etag})

    async def _trickle(self, client: HttpClient, fragment: str) -> None:
        assert self.media is not None
        mid: str | None = None
        for line in fragment.splitlines():
            line = line.strip()
            if line.startswith("a=mid:"):
                mid = line[len("a=mid:"):]
            elif line.startswith("a=candidate:"):
                try:
                    added = await self.media.add_candidate(client.media_session_id, mid,
                                                           line[len("a="):])
                except (ValueError, IndexError, KeyError):
                    raise Problem(400, f"not an ICE candidate: {printable(line, 100)}") \
                        from None
                if not added:
                    raise Problem(404, "the session's stream is over")


async def _body(request: web.Request) -> str:
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise Problem(413, f"the body is larger than {MAX_BODY} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(400, "the body is not UTF-8 text") from None


def _check_offer(sdp: str, direction: str) -> None:
    """400 for what is no SDP offer; 422 for an offer hookcast cannot take."""
    lines = [line.strip() for line in sdp.splitlines()]
    if not lines or lines[0] != "v=0" or not any(line.startswith("m=") for line in lines):
        raise Problem(400, "the body is not an SDP offer (v=0 and m= lines)")
    if any(line.startswith(("a=simulcast:", "a=rid:")) for line in lines):
        raise Problem(422, "simulcast is not supported: send one encoding per track")
    if not any(line.startswith(("m=audio", "m=video")) for line in lines):
        raise Problem(422, "the offer has no audio or video")
    directions = {line for line in lines
                  if line in ("a=sendonly", "a=recvonly", "a=sendrecv", "a=inactive")}
    wanted = {"whip": {"a=sendonly", "a=sendrecv"}, "whep": {"a=recvonly", "a=sendrecv"}}
    if directions and not directions & wanted[direction]:
        raise Problem(422, f"a {direction.upper()} offer must "
                           f"{'send' if direction == 'whip' else 'receive'} media")


def _ufrag(sdp: str) -> str:
    return next((line.strip()[len("a=ice-ufrag:"):] for line in sdp.splitlines()
                 if line.strip().startswith("a=ice-ufrag:")), "")


def _restarts_ice(fragment: str, ufrag: str) -> bool:
    """A fragment with other ICE credentials than the session's is an ICE restart; the
    same ones (RFC 8840 fragments carry them) are a trickle."""
    given = _ufrag(fragment)
    return bool(given) and given != ufrag


def _failure(direction: str, info: str) -> Problem:
    """The HTTP answer to a stream that failed before it was answered."""
    if info == Info.NAME_IN_USE:
        return Problem(409, info)
    if info == Info.NOT_FOUND:
        return Problem(404, info)
    if info == Info.NO_COMMON_CODECS:
        return Problem(422, f"{info}: hookcast relays VP8 and H.264 video, Opus, PCMU and "
                            "PCMA audio, as they are")
    if info == Info.SHUTDOWN:
        return Problem(503, info, {"Retry-After": str(RETRY_AFTER)})
    if info.startswith(f"{Info.ERROR}: invalid SDP offer"):
        return Problem(400, info)
    if info.startswith(f"{Info.ERROR}: too many") or "max_pending" in info:
        return Problem(503, info, {"Retry-After": str(RETRY_AFTER)})
    if info.startswith(Info.ERROR):
        return Problem(500, info)
    # refused by a plugin or a REST hook: the reason is what a WCS client would read
    return Problem(401, info or "refused", {"WWW-Authenticate": 'Bearer realm="hookcast"'})


def _ice_servers(settings: Settings) -> dict[str, str]:
    return {"Link": f'<{settings.stun_server}>; rel="ice-server"'} if settings.stun_server \
        else {}


def hookcast_plugin() -> Whip:
    return Whip()
