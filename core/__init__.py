"""hookcast's core: the public API plugins import.

Plugins use ``hookimpl`` to mark hook implementations (see ``core.hookspecs`` for
the contract) and the event and result types below.
"""

from core.events import (
    Amend,
    RecordingInfo,
    Refuse,
    ServerInfo,
    SessionInfo,
    StreamInfo,
    Terminate,
    Verdict,
)
from core.home import Home, UnsafePath, inside
from core.hookspecs import hookimpl
from core.media import MediaSource
from core.properties import Rotation
from core.settings import Settings
from core.version import __version__

__all__ = [
    "Amend",
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
]
