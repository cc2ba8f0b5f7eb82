"""Typed keys for what the aiohttp applications hold (no module globals for state)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry

from core.apps import Applications
from core.bus import HookBus
from core.engine import Engine
from core.home import Home
from core.loader import PluginLoader
from core.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
HOME = web.AppKey("home", Home)
BUS = web.AppKey("bus", HookBus)
LOADER = web.AppKey("loader", PluginLoader)
APPLICATIONS = web.AppKey("applications", Applications)
STARTED_AT = web.AppKey("started_at", float)
ENGINE = web.AppKey("engine", Engine)
PROMETHEUS = web.AppKey("prometheus", CollectorRegistry)
