"""VOD over REST (WCS's ``/vod/*``) and the media catalogue (``/media/find_all``).

``/vod/startup`` starts a shared (``vod-live://``) reading under ``localStreamName``;
``/vod/find``, ``/vod/find_all`` list the readings running (shared ones and players'
personal ``vod://`` ones), ``/vod/terminate`` stops a shared one (its players are
``STOPPED``, ``Stopped by publisher stop``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hookcast.api.schema import Method, RestError
from hookcast.engine.broadcast import Origin
from hookcast.engine.engine import Engine
from hookcast.engine.media import FILE_NOT_FOUND, SourceUnavailable
from hookcast.engine.sources import TOO_MANY
from hookcast.engine.streams import Info, NameInUse, Status, Stream, stream_name_problem
from hookcast.keys import ENGINE, MEDIA

App = web.Application
Args = dict[str, Any]


def _entry(stream: Stream, uri: str, loop: bool) -> dict[str, Any]:
    return {"localMediaSessionId": stream.media_session_id, "localStreamName": stream.name,
            "uri": uri, "status": "PROCESSED_LOCAL", "hasAudio": stream.has_audio,
            "hasVideo": stream.has_video, "record": stream.record, "loop": loop}


def _readings(engine: Engine) -> list[tuple[Stream, Origin]]:
    """The VOD readings: shared ones (their stream) and players' own (the player)."""
    found = [(b.publisher, b.origin) for b in engine.sources.shared()
             if b.origin is not None and not b.origin.hosted and b.publisher is not None]
    for media_session_id, broadcast in engine.sources.personal():
        player = engine.registry.get(media_session_id)
        if player is not None and broadcast.origin is not None:
            found.append((player, broadcast.origin))
    return found


def _entries(engine: Engine) -> list[dict[str, Any]]:
    return [_entry(stream, origin.uri, origin.loop) for stream, origin in _readings(engine)]


async def vod_startup(app: App, method: Method, args: Args) -> web.Response:
    engine: Engine = app[ENGINE]
    uri = args["uri"]
    name = args.get("local_stream_name") or uri
    if name != uri:
        problem = stream_name_problem(name, engine.settings.max_stream_name_length)
        if problem:
            raise RestError(400, f"localStreamName: {problem}", "localStreamName")
    source = engine.sources.source(uri, args.get("loop"))
    if source is None:
        raise RestError(404, f"uri: no source plugin knows {uri!r}", "uri")
    if not source.shared:  # a personal reading (vod://) is its player's alone
        raise RestError(404, f"uri: {uri!r} is not a shared source; only those (vod-live://) "
                             "can be started", "uri", "vod-live://...")
    try:
        broadcast = await engine.sources.start_shared(uri, name, source, join=False)
    except NameInUse:
        raise RestError(409, f"localStreamName: {name!r} is already in use",
                        "localStreamName") from None
    except SourceUnavailable as error:
        status = {FILE_NOT_FOUND: 404, TOO_MANY: 503}.get(error.info, 400)
        raise RestError(status, f"uri: {error.info}", "uri") from None
    assert broadcast.publisher is not None and broadcast.origin is not None  # listed
    return web.json_response(_entry(broadcast.publisher, uri, broadcast.origin.loop))


async def vod_find(app: App, method: Method, args: Args) -> web.Response:
    found = [e for e in _entries(app[ENGINE])
             if e["localStreamName"] == args.get("local_stream_name")]
    if not found:
        raise RestError(404, method.not_found or "Not found")
    return web.json_response(found)


async def vod_find_all(app: App, method: Method, args: Args) -> web.Response:
    found = _entries(app[ENGINE])
    if not found:
        raise RestError(404, method.not_found or "Not found")
    return web.json_response(found)


async def vod_terminate(app: App, method: Method, args: Args) -> web.Response:
    engine: Engine = app[ENGINE]
    name, uri = args["local_stream_name"], args.get("uri")
    chosen = [stream for stream, origin in _readings(engine) if stream.published
              and stream.name == name and (not uri or origin.uri == uri)]
    if not chosen:
        raise RestError(404, method.not_found or "Not found")
    for stream in chosen:
        await engine.stop(stream, Status.UNPUBLISHED, Info.REST_TERMINATE)
    return web.json_response({"terminated": [s.media_session_id for s in chosen]})


async def media_find_all(app: App, method: Method, args: Args) -> web.Response:
    return web.json_response(app[MEDIA].listing())


HANDLERS = {
    "/rest-api/vod/startup": vod_startup,
    "/rest-api/vod/find": vod_find,
    "/rest-api/vod/find_all": vod_find_all,
    "/rest-api/vod/terminate": vod_terminate,
    "/rest-api/media/find_all": media_find_all,
}
