"""Typed keys for what the aiohttp applications hold (no module globals for state)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from hookcast.api.schema import Method
from hookcast.bus import HookBus
from hookcast.config.apps import Applications
from hookcast.config.home import Home
from hookcast.config.settings import Settings
from hookcast.engine.engine import Engine
from hookcast.loader import PluginLoader
from hookcast.media.catalogue import Catalogue
from hookcast.recording.catalogue import RecordsCatalogue

SETTINGS = web.AppKey("settings", Settings)
HOME = web.AppKey("home", Home)
BUS = web.AppKey("bus", HookBus)
LOADER = web.AppKey("loader", PluginLoader)
APPLICATIONS = web.AppKey("applications", Applications)
STARTED_AT = web.AppKey("started_at", float)
ENGINE = web.AppKey("engine", Engine)
PROMETHEUS = web.AppKey("prometheus", CollectorRegistry)
MEDIA = web.AppKey("media", Catalogue)
#: the final files of records/ as /rest-api/records/find_all lists them
RECORDS_CATALOGUE = web.AppKey("records_catalogue", RecordsCatalogue)
#: which worker of ``hookcast serve --workers N`` this process is; None when it runs alone
WORKER: web.AppKey[int | None] = web.AppKey("worker")
#: REST methods plugins added (hookcast.rest_routes), for the OpenAPI document
PLUGIN_METHODS: web.AppKey[list[Method]] = web.AppKey("plugin_methods")
#: their handlers by path, for in-process calls (hookcast.rest_call)
PLUGIN_HANDLERS: web.AppKey[dict[str, Any]] = web.AppKey("plugin_handlers")
