"""The WCS messages a client may send, one handler each (``HANDLERS``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from hookcast.engine.streams import Info, Status, Stream
from hookcast.events import thaw
from hookcast.nodes import NODE_FIELD, node_of
from hookcast.signalling.messages import (
    CLIENT_EXCLUDE,
    connection_problem,
    exclusions,
    stream_limit_problem,
    stream_problem,
)

if TYPE_CHECKING:
    from hookcast.signalling.session import SignallingSession

Handler = Callable[["SignallingSession", Any], Awaitable[None]]


async def on_connection(session: SignallingSession, payload: Any) -> None:
    if session.status == "ESTABLISHED":
        return await session.fail("connection", "the session is already connected")
    session.engine.sessions.identified(session)
    fields = payload if isinstance(payload, dict) else {}
    problem = connection_problem(fields, session.settings)
    if problem is not None:
        return await session.refuse(problem, "invalid")
    custom = fields.get("custom")
    credential = custom.get(NODE_FIELD) if isinstance(custom, dict) else None
    if credential is not None:
        node = node_of(session.settings.cluster_secret, credential)
        if node is None:
            return await session.refuse(f"custom.{NODE_FIELD}: not a valid node credential "
                                        "(cluster_secret differs, or the clocks)", "invalid")
        session.node = node
    session.app_key = fields.get("appKey") or "defaultApp"
    session.client_fields = fields
    verdict = await session.bus.before_connect(session.info)
    if not verdict.admitted:
        return await session.refuse(verdict.reason, "plugin")
    session.status = "ESTABLISHED"
    amended = thaw(verdict.fields)
    session.client_exclude = exclusions(amended.pop(CLIENT_EXCLUDE, None))
    user_data = {
        **fields, **amended, "appKey": session.app_key, "sessionId": session.session_id,
        "authToken": fields.get("authToken") or session.session_id,
        # which server this is (hookcast only, the SDK ignores it): pulls detect loops by it
        "hookcastServerId": session.engine.media.server_id,
    }
    await session.send("getUserData", user_data)
    await session.bus.after_session_connect(session.info)


async def on_publish_stream(session: SignallingSession, payload: Any) -> None:
    request = await _stream_request(session, "publishStream", payload, published=True)
    if request is not None:
        session.engine.expect(session, request[0])  # a stop sent next finds it
        session.track(session.engine.spawn(session.engine.publish(session, *request)))


async def on_play_stream(session: SignallingSession, payload: Any) -> None:
    request = await _stream_request(session, "playStream", payload, published=False)
    if request is not None:
        session.engine.expect(session, request[0])  # a stop sent next finds it
        session.track(session.engine.spawn(session.engine.play(session, *request)))


async def _stream_request(
    session: SignallingSession, api: str, payload: Any, published: bool
) -> tuple[Stream, str] | None:
    """The stream a publish/play asks for and its SDP, or None after telling why not."""
    if not isinstance(payload, dict):
        await session.fail(api, "data[0]: expected the stream object")
        return None
    media_session_id = payload.get("mediaSessionId")
    if not isinstance(media_session_id, str) or not media_session_id:
        await session.fail(api, Info.ID_NULL)
        return None
    limit = session.settings.max_streams_per_session
    if session.engine.count_streams_of(session) + session.requests >= limit:
        await session.fail(api, f"too many streams: this session has {limit} "
                                "(max_streams_per_session)", media_session_id)
        return None
    too_large = stream_limit_problem(payload, session.settings)
    if too_large is not None:  # answered without echoing what is too large
        await session.fail(api, f"{Info.ERROR}: {api}: {too_large}", media_session_id)
        return None
    name = payload.get("name")
    stream = Stream(
        media_session_id=media_session_id,
        name=name if isinstance(name, str) else "",
        published=published, session_id=session.session_id, app_key=session.app_key,
        record=payload.get("record") is True, custom=payload.get("custom") or {},
        sdp=payload["sdp"] if isinstance(payload.get("sdp"), str) else "",
        node=session.node,
    )
    problem = stream_problem(payload, published) or session.engine.reserve(session, stream)
    if problem is not None:  # nothing was done for it: it is told at once
        stream.status, stream.info = Status.FAILED, f"{Info.ERROR}: {api}: {problem}"
        await session.send("notifyStreamStatusEvent", stream.to_wcs())
        return None
    return stream, payload["sdp"]


async def on_stop(session: SignallingSession, payload: Any, api: str, published: bool) -> None:
    media_session_id = payload.get("mediaSessionId") if isinstance(payload, dict) else None
    if not isinstance(media_session_id, str):
        return await session.fail(api, Info.ID_NULL)
    if not session.engine.request_stop(session, media_session_id, published):
        await session.fail(api, Info.NOT_FOUND, media_session_id)


async def on_available_stream(session: SignallingSession, payload: Any) -> None:
    fields = payload if isinstance(payload, dict) else {}
    name, media_session_id = fields.get("name"), fields.get("mediaSessionId")
    found = isinstance(name, str) and name in session.engine.broadcasts
    await session.send("availableStream", {
        "id": media_session_id if isinstance(media_session_id, str) else None,
        "status": "true" if found else "false",
        "info": "Available" if found else Info.NOT_FOUND,
    })


async def on_ping(session: SignallingSession, payload: Any) -> None:
    await session.send("pong", None)


async def on_pong(session: SignallingSession, payload: Any) -> None:
    session.pong()


HANDLERS: dict[str, Handler] = {
    "connection": on_connection,
    "publishStream": on_publish_stream,
    "playStream": on_play_stream,
    "unPublishStream": lambda s, p: on_stop(s, p, "unPublishStream", True),
    "stopStream": lambda s, p: on_stop(s, p, "stopStream", False),
    "availableStream": on_available_stream,
    "ping": on_ping,
    "pong": on_pong,
}

#: messages a session may send before ``connection`` has been accepted
BEFORE_CONNECTION = frozenset({"connection", "ping", "pong"})
