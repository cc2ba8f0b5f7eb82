"""What a media source looks like to the core (VOD files, pulled streams, ...).

A plugin answering ``media_source_for_uri`` returns a ``MediaSource``. The core opens
it when a player asks for the URI (or REST starts it), relays its tracks to players,
recorders and pushes exactly as it relays a WebRTC publisher's, and closes it once.
``FileSource`` reads a media file (``hookcast.media.reader``); ``Unavailable`` is a
source that fails with the ``info`` the player should see.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from aiortc.mediastreams import MediaStreamTrack

from hookcast.config.home import UnsafePath, visible_inside
from hookcast.media.reader import (
    FILE_NOT_FOUND_INFO,
    WRONG_FORMAT_INFO,
    FileInfo,
    FileReading,
    WrongFormat,
    inspect_file,
)

FILE_NOT_FOUND = FILE_NOT_FOUND_INFO
WRONG_FORMAT = WRONG_FORMAT_INFO


class SourceUnavailable(Exception):
    """The source cannot be opened; ``info`` is what the player sees (FAILED)."""

    def __init__(self, info: str, detail: str = "") -> None:
        super().__init__(f"{info}: {detail}" if detail else info)
        self.info = info


@runtime_checkable
class SourceTrack(Protocol):
    """One track of a source: ``kind``, ``mime`` (``video/H264``, ``video/VP8``,
    ``audio/opus``, ...) and ``recv()`` returning ``av.Packet`` with pts in 1/90000
    (video) or 1/48000 (Opus), at the time each is due; MediaStreamError at the end."""

    kind: str
    mime: str


@runtime_checkable
class MediaSource(Protocol):
    """A source of encoded media that is not a WebRTC publisher.

    ``shared``: True when every player of the name joins one reading (``vod-live://``),
    False when each player gets its own from the start (``vod://``). ``open`` returns
    the tracks (``SourceTrack``s) or raises SourceUnavailable; ``start`` begins the
    reading (the core calls it when the first viewer is ready); ``close`` releases what
    ``open`` acquired. The core calls each once.
    """

    uri: str
    shared: bool

    async def open(self) -> Sequence[MediaStreamTrack]: ...

    def start(self) -> None: ...

    async def close(self) -> None: ...


class FileSource:
    """The file ``name`` of ``folder`` read in real time: MP4 (H.264, AAC) or WebM/MKV
    (VP8, Opus). A name that leads out of ``folder`` (``..``, an absolute path, a
    symlink out, NUL) or to a hidden file of it (a name or a symlink target starting
    with ``.``) is ``File not found``: nothing outside is ever opened."""

    def __init__(self, uri: str, folder: Path, name: str, shared: bool,
                 loop: bool = False) -> None:
        self.uri = uri
        self.folder = folder
        self.name = name
        self.shared = shared
        self.loop = loop
        self.reading: FileReading | None = None

    def _inspect(self) -> FileInfo:
        try:
            path = visible_inside(self.folder, self.name)
            return inspect_file(path)
        except WrongFormat as error:
            raise SourceUnavailable(WRONG_FORMAT, str(error)) from None
        except (UnsafePath, OSError, RuntimeError, ValueError) as error:
            # missing, outside, a symlink loop, a name too long for the file system
            raise SourceUnavailable(FILE_NOT_FOUND, type(error).__name__) from None

    async def open(self) -> Sequence[MediaStreamTrack]:
        info = await asyncio.to_thread(self._inspect)
        self.reading = FileReading(info, self.loop, name=self.uri)
        return list(self.reading.tracks.values())

    def start(self) -> None:
        if self.reading is not None:
            self.reading.start()

    @property
    def failure(self) -> str:
        """Why the reading ended before the end of the file ("" if it did not)."""
        return self.reading.failure if self.reading is not None else ""

    async def close(self) -> None:
        if self.reading is not None:
            await self.reading.close()


class Unavailable:
    """A source that fails to open with ``info`` (a name outside media/, a bad URI)."""

    shared = False

    def __init__(self, uri: str, info: str = FILE_NOT_FOUND, detail: str = "") -> None:
        self.uri = uri
        self.info = info
        self.detail = detail

    async def open(self) -> Sequence[MediaStreamTrack]:
        raise SourceUnavailable(self.info, self.detail)

    def start(self) -> None:
        pass

    async def close(self) -> None:
        pass
