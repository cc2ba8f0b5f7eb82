"""Recording over HTTP: start and stop recording a stream, list what is recording,
list and delete finished files (REST), and download them (``/client/records/<file>``).

Listing, downloading and deleting follow one rule (recording.store): only *final*
files — recorded, complete, renamed and announced (the record script over) — are
listed, downloaded and deleted; a file not final yet is 409 to a delete, and to a
download once FINAL_WAIT has passed (at once while it is still being recorded).
Only regular files of records/ itself: ``..``, encoded slashes, absolute paths, hidden
files (markers, sidecars), folders and symbolic links (wherever they point) are 404,
and no link is ever followed. Downloads are served with their Content-Type and single
HTTP byte ranges (a ``<video>`` seeks; api.download), under the REST API's network
allowlist and auth when they are configured; cross-site pages may link to them (a
``<video>`` or ``<a>`` reads, it cannot act).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from hookcast.api import guard
from hookcast.api.download import serve_file
from hookcast.api.schema import Method, RestError
from hookcast.engine.engine import Engine
from hookcast.keys import ENGINE, HOME, RECORDS_CATALOGUE, SETTINGS
from hookcast.recording import store
from hookcast.recording.files import CONTENT_TYPES
from hookcast.recording.formats import NotRecordable
from hookcast.recording.recorder import Recorder

App = web.Application
#: seconds a download of a file being finished waits for it to be final: the SDK's Stream
#: Recording example loads the file as soon as the stream is UNPUBLISHED
FINAL_WAIT = 10.0
#: seconds between two looks at whether it is final yet
FINAL_POLL = 0.1
Args = dict[str, Any]


def _recording(media_session_id: str, stream_name: str, recorder: Recorder) -> dict[str, Any]:
    return {"mediaSessionId": media_session_id, "streamName": stream_name,
            "fileName": recorder.path.name, "part": recorder.part,
            "startTime": int(recorder.started_at * 1000), "bytes": recorder.bytes}


async def start_recording(app: App, method: Method, args: Args) -> web.Response:
    engine: Engine = app[ENGINE]
    media_session_id = args["media_session_id"]
    stream = engine.registry.get(media_session_id)
    if stream is None:
        raise RestError(404, method.not_found or "Stream not found")
    if not stream.published:
        raise RestError(400, f"mediaSessionId: {media_session_id} is a player; only published "
                             "streams are recorded", "mediaSessionId", "a publisher's id")
    config = args.get("config") or {}
    try:
        await engine.start_recording(stream, config.get("template"), config.get("rotation"))
    except LookupError:
        raise RestError(409, f"stream {stream.name} has no media yet (status {stream.status})"
                        ) from None
    except NotRecordable as error:
        raise RestError(409, f"stream {stream.name} cannot be recorded: {error}") from None
    except OSError as error:
        raise RestError(500, f"records/ cannot be written: {error.strerror or error}") from None
    recorder = engine.recordings.active[media_session_id]
    return web.json_response(_recording(media_session_id, stream.name, recorder))


async def stop_recording(app: App, method: Method, args: Args) -> web.Response:
    engine: Engine = app[ENGINE]
    media_session_id = args["media_session_id"]
    recorder = engine.recordings.active.get(media_session_id)
    if recorder is None:
        known = engine.registry.get(media_session_id) is not None
        raise RestError(404, "Recording not found" if known else "Stream not found")
    await engine.recordings.stop(media_session_id)
    return web.json_response(_recording(media_session_id, recorder.name, recorder))


async def recorder_find_all(app: App, method: Method, args: Args) -> web.Response:
    active = app[ENGINE].recordings.active
    if not active:
        raise RestError(404, method.not_found or "Recording not found")
    return web.json_response([_recording(i, r.name, r) for i, r in active.items()])


async def records_find_all(app: App, method: Method, args: Args) -> web.Response:
    """From the catalogue of records/ (recording.catalogue): only what changed is read."""
    body = await app[RECORDS_CATALOGUE].body()
    return web.Response(body=body, content_type="application/json")


async def records_delete(app: App, method: Method, args: Args) -> web.Response:
    name = args["file_name"]
    try:
        await asyncio.to_thread(store.delete, app[HOME].records, name)
    except store.NotFound:
        raise RestError(404, method.not_found or "File not found") from None
    except store.NotFinal as error:
        raise RestError(409, str(error)) from None
    app[RECORDS_CATALOGUE].forget(name)
    return web.json_response({"deleted": name})


async def download(request: web.Request) -> web.StreamResponse:
    """``GET /client/records/<file>``: a final file, with single byte ranges."""
    try:
        guard.check_reader(request, request.app[SETTINGS])
    except RestError as error:
        response = web.json_response(error.body(), status=error.status)
        if error.status == 401:  # a browser asks for Basic credentials itself
            response.headers["WWW-Authenticate"] = 'Bearer, Basic realm="hookcast"'
        return response
    name = request.match_info["name"]
    content_type = CONTENT_TYPES.get(Path(name).suffix.lower())
    try:
        if content_type is None:
            raise store.NotFound(name)
        file, status = await _open_when_final(request.app, name)
    except store.NotFound:
        raise web.HTTPNotFound(text="File not found") from None
    except store.NotFinal as error:
        raise web.HTTPConflict(text=str(error)) from None
    return await serve_file(request, file, status, content_type)


async def _open_when_final(app: App, name: str) -> tuple[IO[bytes], os.stat_result]:
    """The final file ``name``, open. One being finished (its recording stopped) is
    waited for, up to FINAL_WAIT seconds; one still being recorded is NotFinal at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FINAL_WAIT
    while True:
        try:
            return await asyncio.to_thread(store.open_final, app[HOME].records, name)
        except store.NotFinal:
            recording = any(r.path.name == name for r in app[ENGINE].recordings.active.values())
            if recording or loop.time() >= deadline:
                raise
        await asyncio.sleep(FINAL_POLL)


HANDLERS = {
    "/rest-api/stream/startRecording": start_recording,
    "/rest-api/recorder/startup": start_recording,
    "/rest-api/stream/stopRecording": stop_recording,
    "/rest-api/recorder/terminate": stop_recording,
    "/rest-api/recorder/find_all": recorder_find_all,
    "/rest-api/records/find_all": records_find_all,
    "/rest-api/records/delete": records_delete,
}


def record_routes() -> list[web.RouteDef]:
    return [web.get("/client/records/{name}", download)]
