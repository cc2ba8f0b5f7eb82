"""VOD: ``vod://name`` and ``vod-live://name`` play files of ``media_dir``.

``vod://file.mp4`` is personal: each player gets its own reading, from the start.
``vod-live://file.mp4`` is shared: one reading, started by the first player (or REST
``/vod/startup``), joined by the others where it is; it loops with ``vod_live_loop``
(or REST ``loop``). Files: MP4 with H.264 and AAC, WebM/MKV with VP8 and Opus (so
hookcast's own recordings play back); video is sent as it is, AAC becomes Opus.

Another source (an S3 bucket, an HTTP URL) is a plugin answering
``media_source_for_uri`` for its own scheme, beside this one.
"""

from __future__ import annotations

from pathlib import Path

from hookcast import FileSource, Home, MediaSource, ServerInfo, hookimpl, media_folder

SCHEMES = {"vod://": False, "vod-live://": True}  # scheme -> shared


class Vod:
    def __init__(self) -> None:
        self.folder: Path | None = None
        self.loop = False

    @hookimpl
    def after_server_start(self, server: ServerInfo) -> None:
        self.folder = media_folder(server.home, server.settings.media_dir)
        self.loop = server.settings.vod_live_loop

    @hookimpl
    def media_source_for_uri(self, uri: str, home: Home, loop: bool | None) -> MediaSource | None:
        for scheme, shared in SCHEMES.items():
            if uri.startswith(scheme):
                folder = self.folder or media_folder(home.root, "media")
                return FileSource(uri, folder, uri[len(scheme):], shared,
                                  loop=(self.loop if loop is None else loop) and shared)
        return None


def hookcast_plugin() -> Vod:
    return Vod()
