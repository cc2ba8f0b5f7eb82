"""WCS WebSocket signalling: one SignallingSession per client connection.

Frames are JSON ``{"message": name, "data": [payload, ...]}``. A client sends
``connection`` first and gets ``getUserData`` (its session is then ESTABLISHED);
``publishStream`` / ``playStream`` carry an SDP offer and get ``setRemoteSDP``
``[mediaSessionId, answer]``; status changes arrive as ``notifyStreamStatusEvent``.
Every bad frame gets a ``fail`` message (or a FAILED status when it names a stream)
saying what was wrong; it never ends the session or touches another one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import WSMsgType, web

from hookcast.bus import HookBus
from hookcast.config.settings import Settings
from hookcast.engine.engine import Engine
from hookcast.engine.streams import Info, Status, Stream
from hookcast.events import SessionInfo, freeze, thaw
from hookcast.keys import BUS, ENGINE, SETTINGS
from hookcast.signalling.messages import CLIENT_EXCLUDE, exclusions, stream_problem

log = logging.getLogger(__name__)

#: Largest frame the protocol accepts; larger ones get a ``fail`` and are dropped.
MAX_MESSAGE = 256 * 1024
#: Largest frame aiohttp reads at all; beyond it the socket is closed (1009).
MAX_FRAME = 4 * 1024 * 1024

Handler = Callable[["SignallingSession", Any], Awaitable[None]]


class SignallingSession:
    """One client's WebSocket: its session state and its message handlers."""

    def __init__(
        self, ws: web.WebSocketResponse, engine: Engine, bus: HookBus, settings: Settings,
        remote: str,
    ) -> None:
        self.ws = ws
        self.engine = engine
        self.bus = bus
        self.settings = settings
        self.remote = remote
        self.session_id = str(uuid.uuid4())
        self.status = "PENDING"
        self.app_key = ""
        self.client_fields: Mapping[str, Any] = {}
        self._missed_pongs = 0
        #: hook method -> fields never sent to this client (restClientConfig clientExclude)
        self.client_exclude: dict[str, frozenset[str]] = {}
        self.create_date = int(time.time() * 1000)
        self._send_lock = asyncio.Lock()
        self._end_reason = "Normal disconnect"
        self._gone = False
        #: publish/play requests of this session still being admitted or answered
        self._requests: set[asyncio.Future[Any]] = set()
        #: set once the session has ended and its streams were stopped
        self.closed = asyncio.Event()

    @property
    def info(self) -> SessionInfo:
        return SessionInfo(
            session_id=self.session_id, app_key=self.app_key, status=self.status,
            remote=self.remote, client=freeze(self.client_fields),
        )

    def _client_view(self, message: str, payload: dict[str, Any]) -> dict[str, Any]:
        """``payload`` without the fields this client must not see (clientExclude)."""
        if not self.client_exclude:
            return payload
        if message == "getUserData":
            methods: tuple[str, ...] = ("connect", "ConnectionStatusEvent")
        else:
            method = "publishStream" if payload.get("published") else "playStream"
            methods = ("StreamStatusEvent", method)
        hidden = frozenset().union(*(self.client_exclude.get(m, frozenset()) for m in methods))
        return {k: v for k, v in payload.items() if k not in hidden}

    async def send(self, message: str, *data: Any) -> None:
        """Send one frame; raises ConnectionError once the socket is closed."""
        if message == "notifyStreamStatusEvent" and data and isinstance(data[0], dict):
            data = (self._client_view(message, data[0]), *data[1:])
        if self.ws.closed:
            raise ConnectionError("the WebSocket is closed")
        async with self._send_lock:
            await self.ws.send_str(json.dumps({"message": message, "data": list(data)}))

    async def fail(self, api_method: str, info: str, media_session_id: str | None = None) -> None:
        """Tell the client a request failed (the SDK raises its session WARN event)."""
        payload: dict[str, Any] = {"apiMethod": api_method, "info": info}
        if media_session_id is not None:
            payload["id"] = media_session_id
        log.info("session %s: %s failed: %s", self.session_id, api_method, info)
        try:
            await self.send("fail", payload)
        except ConnectionError:
            pass

    def to_wcs(self) -> dict[str, Any]:
        """The connection object of ``/rest-api/connection/find_all``."""
        return {
            "sessionId": self.session_id,
            "appKey": self.app_key,
            "status": self.status,
            "remoteAddress": self.remote,
            "clientVersion": str(self.client_fields.get("clientVersion", "")),
            "custom": self.client_fields.get("custom") or {},
            "createDate": self.create_date,
            "streams": self.engine.count_streams_of(self),
        }

    async def terminate(self, reason: str) -> None:
        """End the session from the server side: its streams stop with ``reason`` (the
        client is told), then the socket closes."""
        await self.engine.terminate(self.engine.streams_of(self), reason)
        await self.close(reason)
        await self.closed.wait()

    async def close(self, reason: str) -> None:
        self._end_reason = reason
        await self.ws.close(code=1001, message=reason.encode()[:120])

    # --- the read loop --------------------------------------------------------------

    async def run(self) -> None:
        self.engine.sessions[self.session_id] = self
        pinger = asyncio.create_task(self._ping_loop(), name=f"ping {self.session_id}")
        try:
            async for frame in self.ws:
                if frame.type is WSMsgType.TEXT:
                    await self._handle_safely(frame.data)
                elif frame.type is WSMsgType.BINARY:
                    await self.fail("binary", "binary frames are not part of the protocol")
        finally:
            self._gone = True
            pinger.cancel()
            await asyncio.gather(pinger, return_exceptions=True)
            del self.engine.sessions[self.session_id]
            try:
                await self._ended()
            finally:
                self.closed.set()

    async def _handle_safely(self, text: str) -> None:
        """The error boundary of one frame: a bug handling it never ends the session."""
        try:
            await self.handle_text(text)
        except ConnectionError:
            raise
        except Exception:
            log.exception("session %s: handling a frame failed", self.session_id)
            await self.fail("message", "Failed by error: the server could not handle this message")

    @property
    def gone(self) -> bool:
        return self._gone or self.ws.closed

    async def _ended(self) -> None:
        await self.engine.client_gone(self)
        if self.status == "ESTABLISHED":
            self.status = "DISCONNECTED"
            await self.bus.after_session_disconnect(self.info, self._end_reason)
        elif self.status == "FAILED":  # refused at connect: plugins may drop what they kept
            await self.bus.after_session_disconnect(self.info, self._end_reason)

    async def handle_text(self, text: str) -> None:
        if len(text) > MAX_MESSAGE:
            return await self.fail(
                "message", f"message of {len(text)} bytes exceeds the limit of {MAX_MESSAGE} bytes"
            )
        try:
            frame = json.loads(text)
        except json.JSONDecodeError as error:
            return await self.fail("message", f"invalid JSON: {error.msg} at position {error.pos}")
        if not isinstance(frame, dict) or not isinstance(frame.get("message"), str):
            return await self.fail("message", 'expected {"message": name, "data": [...]}')
        name, data = frame["message"], frame.get("data", [])
        if not isinstance(data, list):
            return await self.fail(name, "data: expected a list")
        handler = HANDLERS.get(name)
        if handler is None:
            return await self.fail(name, f"unknown message {name!r}")
        if self.status != "ESTABLISHED" and name not in ("connection", "ping", "pong"):
            return await self.fail(name, f"{Info.SESSION_NOT_READY}: send connection first")
        await handler(self, data[0] if data else None)

    async def _ping_loop(self) -> None:
        interval = self.settings.keep_alive_server_interval / 1000
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            if self._missed_pongs >= self.settings.keep_alive_probes:
                log.info("session %s: %d pings unanswered, closing", self.session_id,
                         self._missed_pongs)
                await self.close("Failed by keep-alive")
                return
            self._missed_pongs += 1
            try:
                await self.send("ping", None)
            except ConnectionError:
                return

    # --- handlers -------------------------------------------------------------------

    async def on_connection(self, payload: Any) -> None:
        if self.status == "ESTABLISHED":
            return await self.fail("connection", "the session is already connected")
        fields = payload if isinstance(payload, dict) else {}
        app_key = fields.get("appKey") or "defaultApp"
        if not isinstance(app_key, str):
            return await self.fail("connection", "appKey: expected a string")
        self.app_key, self.client_fields = app_key, fields
        verdict = await self.bus.before_connect(self.info)
        if not verdict.admitted:
            self.status = "FAILED"
            await self.fail("connection", verdict.reason)
            return await self.close(verdict.reason)
        self.status = "ESTABLISHED"
        amended = thaw(verdict.fields)
        self.client_exclude = exclusions(amended.pop(CLIENT_EXCLUDE, None))
        user_data = {
            **fields, **amended, "appKey": app_key, "sessionId": self.session_id,
            "authToken": fields.get("authToken") or self.session_id,
        }
        await self.send("getUserData", self._client_view("getUserData", user_data))
        await self.bus.after_session_connect(self.info)

    async def on_publish_stream(self, payload: Any) -> None:
        request = await self._stream_request("publishStream", payload, published=True)
        if request is not None:
            self._track(self.engine.spawn(self.engine.publish(self, *request)))

    async def on_play_stream(self, payload: Any) -> None:
        request = await self._stream_request("playStream", payload, published=False)
        if request is not None:
            self._track(self.engine.spawn(self.engine.play(self, *request)))

    def _track(self, request: asyncio.Future[Any]) -> None:
        self._requests.add(request)
        request.add_done_callback(self._requests.discard)

    async def _stream_request(
        self, api: str, payload: Any, published: bool
    ) -> tuple[Stream, str] | None:
        """The stream a publish/play asks for and its SDP, or None after telling why not."""
        if not isinstance(payload, dict):
            await self.fail(api, "data[0]: expected the stream object")
            return None
        media_session_id = payload.get("mediaSessionId")
        if not isinstance(media_session_id, str) or not media_session_id:
            await self.fail(api, Info.ID_NULL)
            return None
        limit = self.settings.max_streams_per_session
        if self.engine.count_streams_of(self) + len(self._requests) >= limit:
            await self.fail(api, f"too many streams: this session has {limit} "
                                 "(max_streams_per_session)", media_session_id)
            return None
        problem = stream_problem(payload)
        name = payload.get("name")
        stream = Stream(
            media_session_id=media_session_id,
            name=name if isinstance(name, str) else "",
            published=published, session_id=self.session_id, app_key=self.app_key,
            record=payload.get("record") is True,
            custom=payload["custom"] if isinstance(payload.get("custom"), dict) else {},
            sdp=payload["sdp"] if isinstance(payload.get("sdp"), str) else "",
        )
        if problem is not None:
            stream.status, stream.info = Status.FAILED, f"{Info.ERROR}: {api}: {problem}"
            await self.send("notifyStreamStatusEvent", stream.to_wcs())
            return None
        return stream, payload["sdp"]

    async def on_stop(self, payload: Any, api: str, published: bool) -> None:
        media_session_id = payload.get("mediaSessionId") if isinstance(payload, dict) else None
        if not isinstance(media_session_id, str):
            return await self.fail(api, Info.ID_NULL)
        if not self.engine.request_stop(self, media_session_id, published):
            await self.fail(api, Info.NOT_FOUND, media_session_id)

    async def on_available_stream(self, payload: Any) -> None:
        fields = payload if isinstance(payload, dict) else {}
        name, media_session_id = fields.get("name"), fields.get("mediaSessionId")
        found = isinstance(name, str) and name in self.engine.broadcasts
        await self.send("availableStream", {
            "id": media_session_id, "status": "true" if found else "false",
            "info": "Available" if found else Info.NOT_FOUND,
        })

    async def on_ping(self, payload: Any) -> None:
        await self.send("pong", None)

    async def on_pong(self, payload: Any) -> None:
        self._missed_pongs = 0


HANDLERS: dict[str, Handler] = {
    "connection": SignallingSession.on_connection,
    "publishStream": SignallingSession.on_publish_stream,
    "playStream": SignallingSession.on_play_stream,
    "unPublishStream": lambda s, p: s.on_stop(p, "unPublishStream", True),
    "stopStream": lambda s, p: s.on_stop(p, "stopStream", False),
    "availableStream": SignallingSession.on_available_stream,
    "ping": SignallingSession.on_ping,
    "pong": SignallingSession.on_pong,
}


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    """``/`` and ``/websocket`` on the WebSocket port."""
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME)
    await ws.prepare(request)
    app = request.app
    session = SignallingSession(ws, app[ENGINE], app[BUS], app[SETTINGS], request.remote or "")
    try:
        await session.run()
    except Exception:
        log.exception("session %s failed", session.session_id)
    return ws


def signalling_routes() -> list[web.RouteDef]:
    return [web.get("/", websocket_handler), web.get("/websocket", websocket_handler)]
