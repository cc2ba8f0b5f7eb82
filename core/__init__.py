"""hookcast's core: the public API plugins import.

Plugins use ``hookimpl`` to mark hook implementations (see ``core.hookspecs`` for
the contract) and the event and result types below.
"""

from core.apps import REST_METHODS, Application, Applications, load_applications
from core.events import (
    Amend,
    RecordingInfo,
    Refuse,
    ServerInfo,
    SessionInfo,
    StreamInfo,
    Terminate,
    Verdict,
    thaw,
)
from core.home import Home, UnsafePath, inside
from core.hookspecs import hookimpl
from core.media import MediaSource
from core.properties import Rotation
from core.rest_client import server_url
from core.settings import Settings
from core.version import __version__
from core.watch import FolderWatcher

__all__ = [
    "REST_METHODS",
    "Amend",
    "Application",
    "Applications",
    "FolderWatcher",
    "Home",
    "MediaSource",
    "RecordingInfo",
    "Refuse",
    "Rotation",
    "ServerInfo",
    "SessionInfo",
    "Settings",
    "StreamInfo",
    "Terminate",
    "UnsafePath",
    "Verdict",
    "__version__",
    "hookimpl",
    "inside",
    "load_applications",
    "server_url",
    "thaw",
]
