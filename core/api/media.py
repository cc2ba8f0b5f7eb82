"""The media catalogue over REST (``/media/find_all``): the files of ``media_dir`` and
its sub-folders (``shows/ep1.mp4``), kept current by watching the folder
(hookcast.media.catalogue). What reads them is the ``vod`` plugin's (``/vod/*``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hookcast.api.schema import Method
from hookcast.keys import MEDIA

App = web.Application
Args = dict[str, Any]


async def media_find_all(app: App, method: Method, args: Args) -> web.Response:
    return web.json_response(app[MEDIA].listing())


HANDLERS = {
    "/rest-api/media/find_all": media_find_all,
}
