"""Recording over HTTP: start and stop recording a stream, list what is recording,
list and delete finished files (REST), and download them (``/client/records/<file>``).

Downloads are served with their Content-Type and HTTP Range requests (a ``<video>``
seeks), only from records/ (``..``, encoded slashes, absolute paths, symlinks out,
hidden files and markers are 404), under the REST API's network allowlist and auth
when they are configured; cross-site pages may link to them (a ``<video>`` or ``<a>``
reads, it cannot act).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from hookcast.api import guard
from hookcast.api.schema import Method, RestError
from hookcast.config.home import UnsafePath, inside
from hookcast.engine.engine import Engine
from hookcast.keys import ENGINE, HOME, SETTINGS
from hookcast.recording.files import CONTENT_TYPES, Probe, probe
from hookcast.recording.formats import NotRecordable
from hookcast.recording.recorder import Recorder

App = web.Application
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
    broadcast = engine.broadcasts.get(stream.name)
    if broadcast is None or broadcast.publisher is not stream:
        raise RestError(409, f"stream {stream.name} has no media yet (status {stream.status})")
    config = args.get("config") or {}
    try:
        await engine.recordings.start(stream, broadcast.leg.tracks, config.get("template"),
                                      config.get("rotation"), engine.login_of(stream))
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
    engine: Engine = app[ENGINE]
    recording = {r.path for r in engine.recordings.active.values()}
    files = await asyncio.to_thread(_finished_files, app[HOME].records, recording)
    return web.json_response(files)


def _finished_files(folder: Path, recording: set[Path]) -> list[dict[str, Any]]:
    """Off the loop: every finished recording in ``folder``, newest first."""
    found = []
    for path in folder.iterdir() if folder.is_dir() else ():
        if path.name.startswith(".") or path.suffix.lower() not in CONTENT_TYPES \
                or path in recording or not path.is_file() \
                or path.with_name(f".{path.name}.recording").exists():
            continue
        stat = path.stat()
        try:
            media: Probe | None = probe(path)
        except Exception:  # a file that is not (or no longer) a readable recording
            media = None
        found.append({
            "fileName": path.name, "size": stat.st_size, "createDate": int(stat.st_mtime * 1000),
            "duration": media.duration if media else 0.0,
            "videoCodec": media.video_codec if media else "",
            "audioCodec": media.audio_codec if media else "",
            "width": media.width if media else 0, "height": media.height if media else 0,
            "url": f"/client/records/{quote(path.name)}",
        })
    return sorted(found, key=lambda f: (-f["createDate"], f["fileName"]))


async def records_delete(app: App, method: Method, args: Args) -> web.Response:
    engine: Engine = app[ENGINE]
    path = _record_path(app[HOME].records, args["file_name"])
    if path is None or not await asyncio.to_thread(path.is_file):
        raise RestError(404, method.not_found or "File not found")
    if any(r.path == path for r in engine.recordings.active.values()):
        raise RestError(409, f"{path.name} is being recorded; stop the recording first")
    await asyncio.to_thread(path.unlink)
    return web.json_response({"deleted": path.name})


def _record_path(folder: Path, name: str) -> Path | None:
    """``name`` in records/, or None for anything that would leave it or is hidden."""
    if not name or name.startswith(".") or "/" in name or "\\" in name or len(name) > 255:
        return None
    try:
        return inside(folder, name)
    except (UnsafePath, OSError, ValueError):  # outside, a name the file system refuses
        return None


async def download(request: web.Request) -> web.StreamResponse:
    """``GET /client/records/<file>``: the file, with Range support."""
    try:
        guard.check_reader(request, request.app[SETTINGS])
    except RestError as error:
        response = web.json_response(error.body(), status=error.status)
        if error.status == 401:  # a browser asks for Basic credentials itself
            response.headers["WWW-Authenticate"] = 'Bearer, Basic realm="hookcast"'
        return response
    path = _record_path(request.app[HOME].records, request.match_info["name"])
    if path is None or path.suffix.lower() not in CONTENT_TYPES \
            or not await asyncio.to_thread(path.is_file):
        raise web.HTTPNotFound(text="File not found")
    return web.FileResponse(path, headers={"Content-Type": CONTENT_TYPES[path.suffix.lower()]})


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
