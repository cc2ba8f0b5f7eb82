"""Public files over HTTP, as a web server serves pages: the web root (``web_root_dir``
at ``web_root_path``, WCS's example pages' way) and the console's static assets.

- Only files inside the folder: a ``..`` or ``.`` segment, an encoded slash or
  backslash, a NUL, a hidden name (a segment starting with ``.``, after symlinks are
  followed too) and a symlink leading out of the folder all answer 404.
- A folder answers its ``index.html`` (``/www/sub`` redirects to ``/www/sub/`` so that
  its relative links work), never a listing.
- ``Content-Type`` from the file's extension, with ``X-Content-Type-Options: nosniff``;
  Range and conditional requests; the file is read off the event loop (aiohttp's
  ``FileResponse``), and the checks, which touch the disk, run in a thread.
- ``Access-Control-Allow-Origin: *``: pages of other sites may load these files (the
  console's ``wcs.js`` as a module). Nothing privileged is ever served here: CORS
  stays off for the REST API and the console's pages and actions.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from hookcast.config.home import Home, UnsafePath, inside
from hookcast.config.settings import Settings

#: headers of every public file
PUBLIC_HEADERS = {"Access-Control-Allow-Origin": "*", "X-Content-Type-Options": "nosniff"}
INDEX = "index.html"
#: what a raw (undecoded) path may not hold: encoded slash, backslash, NUL
_ENCODED = re.compile(r"%(2f|5c|00)", re.IGNORECASE)


class PublicFiles:
    """The GET (and HEAD) handler of every file under ``folder`` at URL ``prefix``."""

    def __init__(self, prefix: str, folder: Path) -> None:
        if not (prefix.startswith("/") and prefix.endswith("/")):
            raise ValueError(f"prefix {prefix!r}: expected /path/")
        self.prefix = prefix
        self.folder = folder

    def routes(self) -> list[web.RouteDef]:
        """``<prefix>{path}``, and ``<prefix without its slash>`` redirected to it."""
        return [web.get(self.prefix.rstrip("/"), self._to_folder),
                web.get(self.prefix + "{path:.*}", self.serve)]

    async def _to_folder(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently(self.prefix)

    async def serve(self, request: web.Request) -> web.StreamResponse:
        relative = _relative(request.raw_path, request.match_info["path"])
        if relative is None:
            raise web.HTTPNotFound(text="File not found")
        found = await asyncio.to_thread(self.find, relative)
        if found is None:
            raise web.HTTPNotFound(text="File not found")
        if found.is_dir:  # (a folder named without its final slash)
            location = request.rel_url.raw_path + "/"
            raise web.HTTPMovedPermanently(f"{location}?{request.query_string}"
                                           if request.query_string else location)
        return web.FileResponse(found.path, headers=PUBLIC_HEADERS)

    def find(self, relative: str) -> Found | None:
        """Off the loop: the file ``relative`` names (a folder's index.html when it ends
        with ``/``), None when there is none or it would leave the folder or is hidden."""
        path = self._inside(relative)
        if path is not None and path.is_dir():
            if relative and not relative.endswith("/"):
                return Found(path, is_dir=True)
            path = self._inside(f"{relative}{INDEX}")
        return Found(path) if path is not None and path.is_file() else None

    def _inside(self, relative: str) -> Path | None:
        try:
            target = inside(self.folder, relative or ".")
            base = self.folder.resolve()
        except (UnsafePath, OSError, ValueError, RuntimeError):  # out, unreadable, a loop
            return None
        if any(part.startswith(".") for part in target.relative_to(base).parts):
            return None  # a symlink to a hidden file
        return target


@dataclass(frozen=True)
class Found:
    """A file to send, or a folder to redirect to (its name given without a slash)."""

    path: Path
    is_dir: bool = False


def _relative(raw_path: str, decoded: str) -> str | None:
    """The decoded path under the prefix, or None when it holds what may never be
    served: an encoded slash, backslash or NUL, a ``.``/``..`` segment, a hidden name."""
    if _ENCODED.search(raw_path.partition("?")[0]) or "\\" in decoded or "\x00" in decoded:
        return None
    segments = decoded.split("/")
    if any(segment.startswith(".") for segment in segments):
        return None
    return decoded


def web_root(home: Home, settings: Settings) -> PublicFiles | None:
    """The configured web root, or None when ``web_root_dir`` is empty."""
    if not settings.web_root_dir:
        return None
    return PublicFiles(settings.web_root_path, home.resolve(settings.web_root_dir))


def overlap(prefix: str, app: web.Application) -> str | None:
    """A route already served under ``prefix``, or one whose paths ``prefix`` lies in:
    the web root would shadow it or be shadowed. None when there is none."""
    for resource in app.router.resources():
        canonical = resource.canonical
        if isinstance(resource, web.PlainResource):
            if (canonical.rstrip("/") + "/").startswith(prefix):
                return canonical
            continue
        head = canonical.split("{")[0]
        if isinstance(resource, web.StaticResource):
            head = canonical.rstrip("/") + "/"
        if head.startswith(prefix) or prefix.startswith(head):
            return canonical
    return None
