"""hookcast: the public API plugins import (``from hookcast import hookimpl, ...``).

Plugins use ``hookimpl`` to mark hook implementations (see ``hookcast.hookspecs`` for
the contract) and the event and result types below.
"""

from hookcast.config.apps import REST_METHODS, Application, Applications, load_applications
from hookcast.config.home import Home, UnsafePath, inside, media_folder
from hookcast.config.properties import Rotation
from hookcast.config.settings import Settings, server_url
from hookcast.config.watch import FolderWatcher
from hookcast.engine.media import FileSource, MediaSource, SourceUnavailable, Unavailable
from hookcast.events import (
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
from hookcast.hookspecs import hookimpl
from hookcast.recording.naming import expand as expand_template
from hookcast.scripts import ScriptPlugin, ScriptRunner
from hookcast.untrusted import printable
from hookcast.version import __version__

__all__ = [
    "REST_METHODS",
    "Amend",
    "Application",
    "Applications",
    "FileSource",
    "FolderWatcher",
    "Home",
    "MediaSource",
    "RecordingInfo",
    "Refuse",
    "Rotation",
    "ScriptPlugin",
    "ScriptRunner",
    "ServerInfo",
    "SessionInfo",
    "Settings",
    "SourceUnavailable",
    "StreamInfo",
    "Terminate",
    "Unavailable",
    "UnsafePath",
    "Verdict",
    "__version__",
    "expand_template",
    "hookimpl",
    "inside",
    "load_applications",
    "media_folder",
    "printable",
    "server_url",
    "thaw",
]
