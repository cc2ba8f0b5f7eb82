"""WCS WebSocket signalling: one SignallingSession per client connection.

Frames are JSON ``{"message": name, "data": [payload, ...]}``. A client sends
``connection`` first and gets ``getUserData`` (its session is then ESTABLISHED);
``publishStream`` / ``playStream`` carry an SDP offer and get ``setRemoteSDP``
``[mediaSessionId, answer]``; status changes arrive as ``notifyStreamStatusEvent``.
Every bad frame gets a ``fail`` message (or a FAILED status when it names a stream)
saying what was wrong; it never ends the session or touches another one. Every write
to the client is bounded in time (signalling.channel): a client that stops reading is
dropped as a disconnect.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import WSMsgType, web

from hookcast.bus import HookBus
from hookcast.config.settings import Settings
from hookcast.engine.engine import Engine
from hookcast.engine.streams import Info
from hookcast.events import SessionInfo, freeze
from hookcast.keys import BUS, ENGINE, SETTINGS
from hookcast.signalling.channel import Channel
from hookcast.signalling.handlers import BEFORE_CONNECTION, HANDLERS
from hookcast.untrusted import MAX_DEPTH, LogBudget, json_depth, printable

log = logging.getLogger(__name__)

#: Largest frame the protocol accepts; larger ones get a ``fail`` and are dropped.
MAX_MESSAGE = 256 * 1024
#: Largest frame aiohttp reads at all; beyond it the socket is closed (1009).
MAX_FRAME = 4 * 1024 * 1024
#: Close code for a session refused because the server is full ("try again later").
TRY_AGAIN_LATER = 1013
#: Close code for a socket that broke the protocol's rules (no connection in time).
POLICY_VIOLATION = 1008


class SignallingSession:
    """One client's WebSocket: its session state, its read loop and its sends."""

    def __init__(
        self, channel: Channel, engine: Engine, bus: HookBus, settings: Settings, remote: str,
    ) -> None:
        self.channel = channel
        self.engine = engine
        self.bus = bus
        self.settings = settings
        self.remote = remote
        self.session_id = channel.name = str(uuid.uuid4())
        #: what this client makes the server log, at a bounded rate
        self.log = LogBudget(log, f"session {self.session_id}")
        self.status = "PENDING"
        self.app_key = ""
        self.client_fields: Mapping[str, Any] = {}
        #: the cluster node this session is (SessionInfo.node), once it proved it
        self.node = ""
        self._missed_pongs = 0
        #: hook method -> fields never sent to this client (restClientConfig clientExclude)
        self.client_exclude: dict[str, frozenset[str]] = {}
        self.create_date = int(time.time() * 1000)
        self._end_reason = "Normal disconnect"
        self._gone = False
        #: publish/play requests of this session still being admitted or answered
        self._requests: set[asyncio.Future[Any]] = set()
        #: set once the session has left ``engine.sessions`` (its socket is closed)
        self.left = asyncio.Event()
        #: set once the session has ended, its streams stopped and plugins were told
        self.closed = asyncio.Event()

    @property
    def info(self) -> SessionInfo:
        return SessionInfo(
            session_id=self.session_id, app_key=self.app_key, status=self.status,
            remote=self.remote, client=freeze(self.client_fields), node=self.node,
        )

    @property
    def requests(self) -> int:
        """Publish and play requests of this session still being admitted or answered."""
        return len(self._requests)

    def track(self, request: asyncio.Future[Any]) -> None:
        self._requests.add(request)
        request.add_done_callback(self._requests.discard)

    def pong(self) -> None:
        self._missed_pongs = 0

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
        """Send one frame (within ``ws_send_timeout``); ConnectionError once the socket
        is closed or the client was dropped for not reading."""
        if message in ("notifyStreamStatusEvent", "getUserData") and data \
                and isinstance(data[0], dict):
            data = (self._client_view(message, data[0]), *data[1:])
        await self.channel.send(json.dumps({"message": message, "data": list(data)}))

    async def fail(self, api_method: str, info: str, media_session_id: str | None = None) -> None:
        """Tell the client a request failed (the SDK raises its session WARN event)."""
        payload: dict[str, Any] = {"apiMethod": printable(api_method, 100), "info": info}
        if media_session_id is not None:
            payload["id"] = media_session_id
        self.log.info("session %s: %s failed: %s", self.session_id, api_method, info)
        try:
            await self.send("fail", payload)
        except ConnectionError:
            pass

    async def refuse(self, reason: str, kind: str) -> None:
        """Refuse the session at ``connection``: tell the client why, then close."""
        self.status = "FAILED"
        self.engine.sessions.refused[kind] += 1
        await self.fail("connection", reason)
        await self.close(reason)

    def to_wcs(self) -> dict[str, Any]:
        """The connection object of ``/rest-api/connection/find_all``."""
        return {
            "sessionId": self.session_id,
            "appKey": self.app_key,
            "status": self.status,
            "remoteAddress": self.remote,
            "clientVersion": self.client_fields.get("clientVersion", ""),
            "custom": self.client_fields.get("custom") or {},
            "createDate": self.create_date,
            "streams": self.engine.count_streams_of(self),
        }

    async def terminate(self, reason: str) -> None:
        """End the session from the server side: its streams stop with ``reason`` (the
        client is told), then the socket closes. Returns once the session has left,
        within about ``ws_send_timeout`` whatever the client does; plugins hear of the
        end afterwards, in the background."""
        await self.engine.terminate(self.engine.streams_of(self), reason)
        await self.close(reason)
        try:
            async with asyncio.timeout(self.settings.ws_send_timeout):
                await self.left.wait()
        except TimeoutError:
            self.channel.drop("the session did not end after its socket closed")
            await self.left.wait()

    async def close(self, reason: str, code: int = 1001) -> None:
        self._end_reason = reason
        await self.channel.close(code, reason)

    def evict(self, reason: str) -> None:
        """Let an unidentified session go at once, to make room (engine.sessions)."""
        self._end_reason = reason
        self.channel.drop(reason, quiet=True)

    @property
    def gone(self) -> bool:
        return self._gone or self.channel.closed

    # --- the read loop --------------------------------------------------------------

    async def run(self) -> None:
        """Read the client's frames until its socket closes (the session is admitted)."""
        pinger = asyncio.create_task(self._ping_loop(), name=f"ping {self.session_id}")
        doorman = asyncio.create_task(self._identified_in_time(), name=f"door {self.session_id}")
        try:
            async for frame in self.channel.ws:
                if frame.type is WSMsgType.TEXT:
                    await self._handle_safely(frame.data)
                elif frame.type is WSMsgType.BINARY:
                    await self.fail("binary", "binary frames are not part of the protocol")
        finally:
            self._gone = True
            pinger.cancel()
            doorman.cancel()
            await asyncio.gather(pinger, doorman, return_exceptions=True)
            self.engine.sessions.remove(self)
            self.engine.heap.freed()
            self.log.close()
            self.left.set()
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
            self.log.error("session %s: handling a frame failed", self.session_id,
                           exc_info=True)
            await self.fail("message", "Failed by error: the server could not handle this message")

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
        except RecursionError:
            return await self.fail("message", f"nested deeper than {MAX_DEPTH} levels")
        if not isinstance(frame, dict) or not isinstance(frame.get("message"), str):
            return await self.fail("message", 'expected {"message": name, "data": [...]}')
        name, data = frame["message"], frame.get("data", [])
        if not isinstance(data, list):
            return await self.fail(name, "data: expected a list")
        if any(json_depth(item) > MAX_DEPTH for item in data):
            return await self.fail(name, f"data: nested deeper than {MAX_DEPTH} levels")
        handler = HANDLERS.get(name)
        if handler is None:
            return await self.fail(name, f"unknown message {printable(name, 100)!r}")
        if self.status != "ESTABLISHED" and name not in BEFORE_CONNECTION:
            return await self.fail(name, f"{Info.SESSION_NOT_READY}: send connection first")
        await handler(self, data[0] if data else None)

    async def _identified_in_time(self) -> None:
        """Close the socket if it has not sent ``connection`` within connection_timeout."""
        await asyncio.sleep(self.settings.connection_timeout)
        if not self.engine.sessions.is_identified(self):
            self.engine.sessions.timed_out(self)
            await self.close(f"no connection message within {self.settings.connection_timeout:g} "
                             "s (connection_timeout)", POLICY_VIOLATION)

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


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    """Any path of the WebSocket port (``/``, ``/websocket``, ...)."""
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME)
    await ws.prepare(request)
    app = request.app
    settings, engine = app[SETTINGS], app[ENGINE]
    channel = Channel(ws, request.transport, settings.ws_send_timeout, "(new)")
    session = SignallingSession(channel, engine, app[BUS], settings, request.remote or "")
    refused = engine.sessions.admit(session)
    if refused is not None:
        await session.fail("connection", refused)
        await channel.close(TRY_AGAIN_LATER, refused)
        return ws
    try:
        await session.run()
    except Exception:
        log.exception("session %s failed", session.session_id)
    return ws


def signalling_routes() -> list[web.RouteDef]:
    """Every path of the WebSocket port: WCS takes any (the SDK's Stream Recording example
    connects to ``ws://host:8080/<stream name>``)."""
    return [web.get("/{path:.*}", websocket_handler)]
