"""Typed keys for what the aiohttp applications hold (no module globals for state)."""

from __future__ import annotations

from aiohttp import web

from core.apps import Applications
from core.bus import HookBus
from core.events import ServerInfo
from core.home import Home
from core.loader import PluginLoader
from core.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
HOME = web.AppKey("home", Home)
BUS = web.AppKey("bus", HookBus)
LOADER = web.AppKey("loader", PluginLoader)
APPLICATIONS = web.AppKey("applications", Applications)
SERVER_INFO = web.AppKey("server_info", ServerInfo)
STARTED_AT = web.AppKey("started_at", float)
