"""VOD: ``vod://name`` and ``vod-live://name`` play files of ``media_dir``, and WCS's
``/rest-api/vod/*`` methods.

``vod://file.mp4`` is personal: each player gets its own reading, from the start.
``vod-live://file.mp4`` is shared: one reading, started by the first player (or REST
``/vod/startup``), joined by the others where it is; it loops with ``vod_live_loop``
(or REST ``loop``). Files: MP4 with H.264 and AAC, WebM/MKV with VP8 and Opus (so
hookcast's own recordings play back); video is sent as it is, AAC becomes Opus.

REST: ``/vod/startup`` starts a shared reading under ``localStreamName``;
``/vod/find``, ``/vod/find_all`` list the readings running (shared ones and players'
personal ones), ``/vod/terminate`` stops a shared one (its players are ``STOPPED``,
``Stopped by publisher stop``). Everything goes through ``hookcast.MediaCore``.

The Opus an AAC file becomes is made once, by one transcode that every reading of the
file started meanwhile follows, and kept in ``state/vod-opus/`` of the home
(``vod_opus_cache_mb``, 0: none): later readings of the unchanged file read it from
there (``hookcast.media.opus_cache``).

Another source (an S3 bucket, an HTTP URL) is a plugin answering
``media_source_for_uri`` for its own scheme, beside this one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from hookcast import (
    FileSource,
    Home,
    Info,
    MediaCore,
    MediaSource,
    NameInUse,
    Reading,
    RestError,
    RestField,
    RestMethod,
    ServerInfo,
    SourceTrack,
    SourceUnavailable,
    hookimpl,
    media_folder,
    rest_routes,
    stream_name_problem,
)
from hookcast.media.opus_cache import OpusCache
from hookcast.media.reader import OPUS_ENCODER
from hookcast.properties import Boolean, Integer, Property

SCHEMES = {"vod://": False, "vod-live://": True}  # scheme -> shared
#: what a failed start answers, by the source's info (400 otherwise)
STATUSES = {"File not found": 404, "Too many VOD readings": 503}

URI = RestField("uri", "uri", "uri", "a source URI: vod-live://file.mp4")
LOCAL_NAME = RestField("localStreamName", "local_stream_name", "string",
                       "the stream name it is published under")
LOOP = RestField("loop", "loop", "boolean", "start again at the end of the file")
ENTRY = {
    "type": "object",
    "required": ["localMediaSessionId", "localStreamName", "uri", "status", "loop"],
    "properties": {
        "localMediaSessionId": {"type": "string"}, "localStreamName": {"type": "string"},
        "uri": {"type": "string"}, "status": {"type": "string", "enum": ["PROCESSED_LOCAL"]},
        "hasAudio": {"type": "boolean"}, "hasVideo": {"type": "boolean"},
        "record": {"type": "boolean"}, "loop": {"type": "boolean"},
    },
}
ENTRIES = {"type": "array", "items": ENTRY}
STARTUP = RestMethod("vod", "startup", "Start a shared reading of a file (vod-live://) under "
                     "localStreamName (the URI when not given); players play that name",
                     (URI, LOCAL_NAME, LOOP), ("uri",), answer_schema=ENTRY,
                     not_found="File not found", changes_state=True)
FIND = RestMethod("vod", "find", "The VOD readings of a stream name", (LOCAL_NAME,),
                  ("localStreamName",), answer_schema=ENTRIES, not_found="Not found")
FIND_ALL = RestMethod("vod", "find_all", "Every VOD reading: shared ones and players' own",
                      answer_schema=ENTRIES, not_found="Not found", get=True)
TERMINATE = RestMethod("vod", "terminate", "Stop a shared VOD reading; its players stop",
                       (URI, LOCAL_NAME), ("localStreamName",),
                       answer_schema={"type": "object", "required": ["terminated"],
                                      "properties": {"terminated": {
                                          "type": "array", "items": {"type": "string"}}}},
                       not_found="Not found", changes_state=True)


def entry(reading: Reading) -> dict[str, Any]:
    stream = reading.stream
    return {"localMediaSessionId": stream.media_session_id, "localStreamName": stream.name,
            "uri": reading.uri, "status": "PROCESSED_LOCAL", "hasAudio": stream.has_audio,
            "hasVideo": stream.has_video, "record": stream.record, "loop": reading.loop}


#: the properties this plugin reads (``settings.value(name)``)
PROPERTIES = [
    Property(
        "vod_live_loop", False, Boolean(),
        "Loop vod-live:// files when they end (REST /vod/startup loop overrides)",
    ),
    Property(
        "vod_opus_cache_mb", 1024, Integer(minimum=0, unit="MB"),
        "Disk for the Opus made once from each AAC file (state/vod-opus/): the readings "
        "of a file follow its one transcode, later ones read it back; least recently "
        "used go first; 0: none, every reading transcodes",
    ),
]
#: where the Opus cache is kept, in the home
OPUS_CACHE_FOLDER = Path("state") / "vod-opus"


class CachedFileSource(FileSource):
    """A FileSource whose reading takes its AAC's Opus from ``opus_cache`` (or puts it
    there)."""

    def __init__(self, *args: Any, opus_cache: OpusCache | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opus_cache = opus_cache

    async def open(self) -> Sequence[SourceTrack]:
        tracks = await super().open()
        if self.reading is not None:  # not started yet: nothing read so far
            self.reading.opus_cache = self.opus_cache
        return tracks


class Vod:
    def __init__(self) -> None:
        self.folder: Path | None = None
        self.loop = False
        self.media: MediaCore | None = None
        self.max_name = 256
        self.opus_cache: OpusCache | None = None

    @hookimpl
    def plugin_properties(self) -> list[Property]:
        return PROPERTIES

    @hookimpl
    def after_server_start(self, server: ServerInfo) -> None:
        self.folder = media_folder(server.home, server.settings.media_dir)
        self.loop = server.settings.value("vod_live_loop")
        self.max_name = server.settings.max_stream_name_length
        self.media = server.media
        self.opus_cache = OpusCache(server.home / OPUS_CACHE_FOLDER,
                                    server.settings.value("vod_opus_cache_mb") * 1024 * 1024,
                                    OPUS_ENCODER)

    @hookimpl
    async def after_server_stop(self) -> None:
        """The Opus transcodes going on stop (what they wrote is removed)."""
        if self.opus_cache is not None:
            await asyncio.to_thread(self.opus_cache.close, 3.0)  # (the hook has 5 s)

    @hookimpl
    def media_source_for_uri(self, uri: str, home: Home, loop: bool | None) -> MediaSource | None:
        for scheme, shared in SCHEMES.items():
            if uri.startswith(scheme):
                folder = self.folder or media_folder(home.root, "media")
                return CachedFileSource(uri, folder, uri[len(scheme):], shared,
                                        loop=(self.loop if loop is None else loop) and shared,
                                        opus_cache=self.opus_cache)
        return None

    @hookimpl
    def register_rest_routes(self) -> list[web.RouteDef]:
        return rest_routes([(STARTUP, self.startup), (FIND, self.find),
                            (FIND_ALL, self.find_all), (TERMINATE, self.terminate)])

    # --- REST -----------------------------------------------------------------------

    def _media(self) -> MediaCore:
        if self.media is None:
            raise RestError(503, "the server is starting")
        return self.media

    async def startup(self, args: dict[str, Any]) -> dict[str, Any]:
        uri = args["uri"]
        name = args.get("local_stream_name") or uri
        if name != uri:
            problem = stream_name_problem(name, self.max_name)
            if problem:
                raise RestError(400, f"localStreamName: {problem}", "localStreamName")
        try:
            reading = await self._media().start_reading(uri, name, args.get("loop"))
        except LookupError:
            raise RestError(404, f"uri: no source plugin knows {uri!r}", "uri") from None
        except ValueError:  # a personal reading (vod://) is its player's alone
            raise RestError(404, f"uri: {uri!r} is not a shared source; only those "
                                 "(vod-live://) can be started", "uri", "vod-live://...") from None
        except NameInUse:
            raise RestError(409, f"localStreamName: {name!r} is already in use",
                            "localStreamName") from None
        except SourceUnavailable as error:
            raise RestError(STATUSES.get(error.info, 400), f"uri: {error.info}", "uri") from None
        return entry(reading)

    async def find(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        found = [entry(r) for r in self._media().readings()
                 if r.stream.name == args.get("local_stream_name")]
        if not found:
            raise RestError(404, FIND.not_found or "Not found")
        return found

    async def find_all(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        found = [entry(r) for r in self._media().readings()]
        if not found:
            raise RestError(404, FIND_ALL.not_found or "Not found")
        return found

    async def terminate(self, args: dict[str, Any]) -> dict[str, Any]:
        media = self._media()
        name, uri = args["local_stream_name"], args.get("uri")
        chosen = [r.stream.media_session_id for r in media.readings()
                  if r.shared and r.stream.name == name and (not uri or r.uri == uri)]
        if not chosen:
            raise RestError(404, TERMINATE.not_found or "Not found")
        for media_session_id in chosen:
            await media.stop(media_session_id, Info.REST_TERMINATE)
        return {"terminated": chosen}


def hookcast_plugin() -> Vod:
    return Vod()
