"""hookcast: the public API plugins import (``from hookcast import hookimpl, ...``).

Plugins use ``hookimpl`` to mark hook implementations (see ``hookcast.hookspecs`` for
the contract) and the event and result types below.
"""

from hookcast.api.guard import authorized as rest_authorized
from hookcast.api.guard import check_access, request_host
from hookcast.api.rest import call as rest_call
from hookcast.api.rest import plugin_rest_routes as rest_routes
from hookcast.api.schema import Field as RestField
from hookcast.api.schema import Method as RestMethod
from hookcast.api.schema import RestError
from hookcast.api.webroot import PublicFiles
from hookcast.config.apps import REST_METHODS, Application, Applications, load_applications
from hookcast.config.home import Home, UnsafePath, inside, media_folder
from hookcast.config.properties import Rotation, host_allowed
from hookcast.config.rest_client import MethodConfig
from hookcast.config.settings import Settings, server_url
from hookcast.config.watch import FolderWatcher
from hookcast.engine.admission import Client
from hookcast.engine.hosted import Feed, MediaCore, NotPublished, Reading
from hookcast.engine.media import (
    FileSource,
    MediaSource,
    SourceTrack,
    SourceUnavailable,
    Unavailable,
)
from hookcast.engine.streams import Info, NameInUse, stream_name_problem
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
from hookcast.nodes import NODE_FIELD, NODE_HEADER, Cluster, ClusterDown, node_credential
from hookcast.recording.naming import expand as expand_template
from hookcast.rtc.aiortc import request_keyframe
from hookcast.rtc.packets import make_packet as make_frame
from hookcast.scripts import ScriptPlugin, ScriptRunner
from hookcast.signalling.client import ClientStream, WcsClient, WcsError
from hookcast.untrusted import LogBudget, printable
from hookcast.version import __version__

__all__ = [
    "NODE_FIELD",
    "NODE_HEADER",
    "REST_METHODS",
    "Amend",
    "Application",
    "Applications",
    "Client",
    "ClientStream",
    "Cluster",
    "ClusterDown",
    "Feed",
    "FileSource",
    "FolderWatcher",
    "Home",
    "Info",
    "LogBudget",
    "MediaCore",
    "MediaSource",
    "MethodConfig",
    "NameInUse",
    "NotPublished",
    "PublicFiles",
    "Reading",
    "RecordingInfo",
    "Refuse",
    "RestError",
    "RestField",
    "RestMethod",
    "Rotation",
    "ScriptPlugin",
    "ScriptRunner",
    "ServerInfo",
    "SessionInfo",
    "Settings",
    "SourceTrack",
    "SourceUnavailable",
    "StreamInfo",
    "Terminate",
    "Unavailable",
    "UnsafePath",
    "Verdict",
    "WcsClient",
    "WcsError",
    "__version__",
    "check_access",
    "expand_template",
    "hookimpl",
    "host_allowed",
    "inside",
    "load_applications",
    "make_frame",
    "media_folder",
    "node_credential",
    "printable",
    "request_host",
    "request_keyframe",
    "rest_authorized",
    "rest_call",
    "rest_routes",
    "server_url",
    "stream_name_problem",
    "thaw",
]
