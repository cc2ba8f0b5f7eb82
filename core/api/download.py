"""Serving one open file over HTTP, with single byte ranges (RFC 9110, section 14).

The handler opens the file (so that what is served is what was checked) and hands it
here; this module reads it off the event loop, a chunk at a time, each write to the
client bounded by WRITE_TIMEOUT (a client that stops reading is dropped).

Ranges: ``bytes=first-last``, ``bytes=first-`` and ``bytes=-suffix`` answer 206 with
``Content-Range``. A range that cannot be satisfied (a first byte at or past the end, a
suffix of 0 bytes, anything of an empty file) or is invalid (last before first, not
numbers) answers 416 with ``Content-Range: bytes */<size>``. Range headers this server
ignores, serving the whole file (200), as RFC 9110 allows: another unit than ``bytes``,
several ranges at once, and a range whose ``If-Range`` no longer matches the file.
``If-None-Match`` with the file's ETag answers 304.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from typing import IO

from aiohttp import web

#: bytes read from the file per write to the client
CHUNK = 256 * 1024
#: seconds a client may take to take one chunk before it is dropped
WRITE_TIMEOUT = 60.0
_SPEC = re.compile(r"(\d*)-(\d*)", re.ASCII)


class Unsatisfiable(ValueError):
    """The Range header asks for no byte of the file (or makes no sense)."""


@dataclass(frozen=True)
class Span:
    """Bytes ``first`` to ``last`` inclusive, as Content-Range counts them."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1


def requested_span(header: str | None, size: int) -> Span | None:
    """The single byte range ``header`` asks of a file of ``size`` bytes; None to serve
    the whole file. Raises Unsatisfiable (answer 416)."""
    if header is None:
        return None
    unit, equals, specs = header.partition("=")
    if not equals or unit.lower() != "bytes":
        return None  # another unit: ignored
    if "," in specs:
        return None  # several ranges: ignored, the whole file is served
    match = _SPEC.fullmatch(specs)
    if match is None or not any(match.groups()):
        raise Unsatisfiable(f"not a byte range: {header!r}")
    try:
        first = int(match[1]) if match[1] else None
        last = int(match[2]) if match[2] else None
    except ValueError:  # more digits than Python converts
        raise Unsatisfiable("range too long") from None
    if first is None:  # the last ``last`` bytes
        if not last or not size:
            raise Unsatisfiable("a suffix of no byte")
        return Span(max(0, size - last), size - 1)
    if last is not None and last < first:
        raise Unsatisfiable("last byte before first")
    if first >= size:
        raise Unsatisfiable("first byte past the end")
    return Span(first, size - 1 if last is None else min(last, size - 1))


def _etag(status: os.stat_result) -> str:
    return f'"{status.st_mtime_ns:x}-{status.st_size:x}"'


def _still_same(if_range: str | None, etag: str, modified: str) -> bool:
    """``If-Range`` absent, or naming this very version of the file."""
    if if_range is None:
        return True
    if if_range.strip() == etag:
        return True
    with contextlib.suppress(TypeError, ValueError, IndexError):
        return parsedate_to_datetime(if_range) == parsedate_to_datetime(modified)
    return False


async def serve_file(request: web.Request, file: IO[bytes], status: os.stat_result,
                     content_type: str) -> web.StreamResponse:
    """Send ``file`` (open, ``status`` its fstat) as the answer to ``request``; closes
    the file."""
    try:
        return await _serve(request, file, status, content_type)
    finally:
        await asyncio.to_thread(file.close)


async def _serve(request: web.Request, file: IO[bytes], status: os.stat_result,
                 content_type: str) -> web.StreamResponse:
    size, etag = status.st_size, _etag(status)
    modified = formatdate(status.st_mtime, usegmt=True)
    headers = {"Content-Type": content_type, "Accept-Ranges": "bytes", "ETag": etag,
               "Last-Modified": modified}
    if request.headers.get("If-None-Match", "").strip() == etag:
        return web.Response(status=304, headers=headers)
    span: Span | None = None
    if _still_same(request.headers.get("If-Range"), etag, modified):
        try:
            span = requested_span(request.headers.get("Range"), size)
        except Unsatisfiable:
            headers["Content-Range"] = f"bytes */{size}"
            return web.Response(status=416, headers=headers)
    if span is not None:
        headers["Content-Range"] = f"bytes {span.first}-{span.last}/{size}"
    first, length = (span.first, span.length) if span is not None else (0, size)
    response = web.StreamResponse(status=206 if span is not None else 200, headers=headers)
    response.content_length = length
    await response.prepare(request)
    if request.method != "HEAD":
        await _send(request, response, file, first, length)
    return response


async def _send(request: web.Request, response: web.StreamResponse, file: IO[bytes],
                first: int, length: int) -> None:
    """``length`` bytes of ``file`` from ``first``, read off the loop; a client that
    goes away or stops reading ends it."""
    descriptor = file.fileno()
    offset, end = first, first + length
    try:
        while offset < end:
            chunk = await asyncio.to_thread(os.pread, descriptor, min(CHUNK, end - offset),
                                            offset)
            if not chunk:  # the file shrank: the answer cannot be complete
                raise ConnectionAbortedError("the file shrank while it was sent")
            await asyncio.wait_for(response.write(chunk), WRITE_TIMEOUT)
            offset += len(chunk)
        await response.write_eof()
    except (ConnectionError, TimeoutError):
        if request.transport is not None:
            request.transport.close()
