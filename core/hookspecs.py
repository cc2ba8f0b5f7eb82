"""The contract between the hookcast core and its plugins.

A plugin is a module (or object) whose functions are decorated with
``hookcast.hookimpl`` and named after the hooks below. An implementation may take any
subset of a hook's arguments, by name. There are four kinds of hook; the kind is
enforced when the plugin is registered:

decide
    Synchronous. Implementations are tried in turn, the last loaded first (drop-ins
    before installed packages before the built-ins); the first that returns
    something other than ``None`` decides and the rest are not called. An
    implementation that raises is logged, counted and skipped.
admit
    May be ``async``. Every implementation is awaited, each under
    ``plugin_hook_timeout``. Return ``None`` to admit, ``hookcast.Amend(...)`` to admit
    with changed fields, ``hookcast.Refuse(reason)`` to refuse: one refusal refuses and
    the client sees its reason. An implementation that raises or times out refuses
    with ``Failed by error`` (admission fails closed) and is logged and counted.
notify
    May be ``async``. Every implementation is awaited, each under
    ``plugin_hook_timeout``; one that raises or times out is logged and counted and
    never stops the others or the media. Synchronous implementations run on the
    event loop and must return quickly.
collect
    Synchronous; every implementation's result is collected (each hook says when it
    is called). An ``async def`` implementation is refused at registration.

A plugin module may define ``hookcast_plugin()``: the object it returns is registered
instead of the module, so each server in a process has its own plugin state. Such an
object may set ``hookcast_timeout`` (seconds) to replace ``plugin_hook_timeout`` for
its own hooks.

Names say when a hook runs: ``before_*`` may refuse, ``after_*``/``on_*`` report.
Adding an argument to a hook is compatible; renaming one makes a new hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import pluggy

if TYPE_CHECKING:
    from aiohttp import web
    from prometheus_client.core import Metric

    from hookcast.config.home import Home
    from hookcast.config.properties import Property, Rotation
    from hookcast.config.settings import Settings
    from hookcast.engine.media import MediaSource
    from hookcast.events import (
        Amend,
        RecordingInfo,
        Refuse,
        ServerInfo,
        SessionInfo,
        StreamInfo,
        Terminate,
    )

PROJECT = "hookcast"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Kind = Literal["decide", "admit", "notify", "collect"]
#: hook name -> kind; filled by the decorators below.
KINDS: dict[str, Kind] = {}

F = TypeVar("F", bound=Callable[..., Any])


def _kind(kind: Kind) -> Callable[[F], F]:
    def mark(function: F) -> F:
        KINDS[function.__name__] = kind
        return hookspec(firstresult=(kind == "decide"))(function)

    return mark


decide = _kind("decide")
admit = _kind("admit")
notify = _kind("notify")
collect = _kind("collect")


# --- the server ---------------------------------------------------------------------


@notify
def after_server_start(server: ServerInfo) -> None:
    """Runs once every listener is accepting connections.

    :param server: the version, home folder, settings and bound ports, and ``media``:
        the media core a plugin may drive (``hookcast.MediaCore``: publish a
        ``MediaSource`` as a stream, play a stream into a ``Feed`` of its own, stop a
        stream), as the built-in ``pull`` plugin does.
    Kind: notify; the return value is ignored.
    """


@notify
def before_server_stop(server: ServerInfo) -> None:
    """Runs when shutdown begins (SIGINT/SIGTERM), before sessions and streams close.

    :param server: the same object ``after_server_start`` received.
    Kind: notify; the return value is ignored. Shutdown waits for it, up to the
    hook timeout.
    """


@notify
def after_server_stop(server: ServerInfo) -> None:
    """Runs at the end of shutdown, after every session and stream has ended.

    Release here what your plugin holds (HTTP clients, files, watchers): hooks called
    while streams stop during shutdown still have them.

    :param server: the same object ``after_server_start`` received.
    Kind: notify; the return value is ignored.
    """


@collect
def plugin_properties() -> Iterable[Property] | None:
    """Declares the properties this plugin reads from conf/server.properties.

    Runs once, right after the plugins are loaded and before anything else is built.
    Each ``hookcast.properties.Property`` names a property (WCS's name when WCS has one),
    its default, its type (``hookcast.properties.Integer(minimum=1)``, ``Boolean()``,
    ``Seconds()``, ``Text()``, ...) and a one-line description. The server validates
    their values with the core's (a bad one stops the start naming the file and the
    property), ``hookcast config --list`` lists them, ``hookcast init`` writes them with
    their defaults, and unknown-property warnings know them. Read a value with
    ``settings.value(name)`` (``ServerInfo.settings``).

    Kind: collect; return an iterable of ``Property`` or ``None``. A name the core or
    another plugin declares already makes the server refuse to start, naming both.
    """


@collect
def register_rest_routes(settings: Settings, home: Home) -> Iterable[web.RouteDef] | None:
    """Adds HTTP routes to the HTTP port (``web.get(path, handler)`` and friends).

    Runs once while the server is built, before it listens; routes are fixed from
    then on (a drop-in reloaded later keeps the routes it had at start).

    A REST method made with ``hookcast.rest_routes([(RestMethod(...), handler)])`` is
    served like the core's: the guard, the JSON body rules and validation from its
    fields, a ``RestError`` answered as JSON naming the field, an entry in
    ``/rest-api/openapi.json``, and ``hookcast.rest_call`` can run it in-process.

    :param settings: the server settings.
    :param home: the server home folders.
    Kind: collect; return an iterable of ``aiohttp.web.RouteDef`` or ``None``.
    A path already taken makes the server refuse to start, naming the plugin.
    """


@collect
def prometheus_metrics() -> Iterable[Metric] | None:
    """Adds metric families to ``GET /metrics``; called at every scrape.

    Return ``prometheus_client.core`` metric families (``CounterMetricFamily``,
    ``GaugeMetricFamily``, ...) built from counters the plugin keeps, or ``None``.
    Must be quick: it runs on the event loop while the scrape waits. An implementation
    that raises is logged and its metrics are left out of that scrape.
    Kind: collect.
    """


# --- signalling sessions ------------------------------------------------------------


@admit
def before_connect(session: SessionInfo) -> Refuse | Amend | None:
    """Runs when a client's ``connection`` message arrives, before it is accepted.

    :param session: the new session (status ``PENDING``) with the client's fields.
    Kind: admit; ``Refuse(reason)`` closes the session with the reason, ``None``
    accepts it, ``Amend(**fields)`` accepts it and adds those fields to what the
    client's ``getUserData`` echoes (a backend's ``authToken``, say; ``appKey`` and
    ``sessionId`` stay the server's), where ``clientExclude`` (a mapping of hook method
    to comma-separated field names, as in WCS's ``restClientConfig``) names fields this
    client is never sent.
    """


@notify
def after_session_connect(session: SessionInfo) -> None:
    """Runs after the client was told its session is ``ESTABLISHED``.

    :param session: the session as accepted.
    Kind: notify; the return value is ignored.
    """


@notify
def after_session_disconnect(session: SessionInfo, reason: str) -> None:
    """Runs after a session's WebSocket closed and its streams were stopped.

    Also runs for a session refused at ``before_connect`` (status ``FAILED``), so a
    plugin can drop what it kept for it.

    :param session: the session with status ``DISCONNECTED``, or ``FAILED`` if refused.
    :param reason: why it ended, e.g. ``Normal disconnect`` or ``Stopped by rest /terminate``.
    Kind: notify; the return value is ignored.
    """


# --- streams ------------------------------------------------------------------------


@admit
def before_publish(session: SessionInfo, stream: StreamInfo) -> Refuse | Amend | None:
    """Runs when a client asks to publish, before any media is set up.

    :param session: the publishing client's session.
    :param stream: the stream as requested (status ``PENDING``).
    Kind: admit; ``Refuse(reason)`` makes the stream ``FAILED`` with that ``info``;
    ``Amend(...)`` publishes it with changed fields, of these only: ``name`` (a
    non-empty text: it is published under that name), ``custom`` (an object),
    ``record`` (a boolean: record it or not), ``has_audio``, ``has_video`` (booleans).
    Any other field, or a value of the wrong type, is ignored and logged.
    """


@admit
def before_play(session: SessionInfo, stream: StreamInfo) -> Refuse | Amend | None:
    """Runs when a client asks to play a stream, before any media is set up.

    :param session: the playing client's session.
    :param stream: the player's stream as requested (``published`` false, ``PENDING``).
    Kind: admit; ``Refuse(reason)`` makes the player ``FAILED`` with that ``info``;
    ``Amend(...)`` plays with changed fields, the same as ``before_publish``'s: ``name``
    (it plays that stream instead), ``custom``, ``record``, ``has_audio``, ``has_video``.
    """


@notify
def after_stream_status(stream: StreamInfo, previous_status: str | None) -> None:
    """Runs after a stream's status changed and the client was told.

    :param stream: the stream with its new ``status`` and ``info``.
    :param previous_status: the status before, ``None`` for a new stream.
    Kind: notify; the return value is ignored.
    """


@notify
def on_stream_keep_alive(stream: StreamInfo) -> Terminate | None:
    """Runs for every live stream once per keep-alive interval, when enabled.

    :param stream: the stream as it is now (publisher or player, see ``published``).
    Kind: notify; returning ``Terminate(reason)`` stops that stream, the client sees
    the reason (default ``Terminated by keep-alive``).
    """


# --- recording ----------------------------------------------------------------------


@decide
def record_file_name(stream: StreamInfo, template: str, variables: dict[str, str]) -> str | None:
    """Chooses the name (without extension) of a new recording file, and of each part.

    :param stream: the stream being recorded.
    :param template: the template in force: REST ``config.fileTemplate``, else the
        ``stream_record_policy_template`` property.
    :param variables: the template variables (``streamName``, ``mediaSessionId``,
        ``sessionId``, ``login``, ``audioCodec``, ``videoCodec``, ``startTime``,
        ``startTimeMillis``), the file's own start time for each part. When the name
        given at the start or the template holds ``{endTime}``, ``{endTimeMillis}`` or
        ``{duration}``, the hook is asked again once the file is finished, with those
        added, and the file is renamed to that answer.
    Kind: decide; return a name, or ``None`` to let the next plugin decide (the core
    expands the template itself when no plugin answers). Whatever is returned, the core
    keeps the file inside records/ (no separators, no control characters, no leading
    dot, at most 244 bytes, never over an existing file).
    """


@decide
def record_rotation_policy(
    stream: StreamInfo, configured: Rotation | None, requested: Rotation | None
) -> Rotation | None:
    """Chooses when a recording is cut into parts.

    :param stream: the stream being recorded.
    :param configured: the ``record_rotation`` property (``None`` when not set).
    :param requested: REST ``config.rotation`` of this recording (``None`` when not given).
    Kind: decide; return a ``Rotation`` (``Rotation()`` means never), or ``None`` to
    let the next plugin decide; with no answer the recording is never cut. Each part
    starts at the first keyframe at or after the threshold.
    """


@notify
def on_record_started(recording: RecordingInfo) -> None:
    """Runs after a recording file (or a rotated part) was opened.

    :param recording: the stream, the file path and its part number.
    Kind: notify; the return value is ignored.
    """


@notify
def on_record_finished(recording: RecordingInfo) -> None:
    """Runs after a recording file (or part) was closed and is complete on disk, with its
    last name.

    The file becomes *final* — listed by ``/rest-api/records/find_all``, downloadable,
    deletable — once every implementation has returned (an async one is awaited, under
    its plugin's timeout): a plugin that works on the file (copies it, uploads it, as
    the record script does) does so before returning. A crash before then leaves the
    file unfinished, and it is announced again at the next start (``recovered=True``):
    at least once.

    :param recording: the stream, the file path, part number, times and size.
    Kind: notify; the return value is ignored.
    """


# --- media sources ------------------------------------------------------------------


@decide
def media_source_for_uri(uri: str, home: Home, loop: bool | None) -> MediaSource | None:
    """Resolves a stream name that is a URI (``vod://file.mp4``) to a media source.

    Asked when a player asks for a name that holds ``://`` and no stream publishes it,
    and by REST ``/vod/startup``.

    :param uri: the name a client asked to play (or the REST ``uri``).
    :param home: the server home (files must stay inside its media folder).
    :param loop: REST ``/vod/startup``'s ``loop``; ``None`` when not given.
    Kind: decide; return a ``hookcast.MediaSource`` (``hookcast.FileSource`` reads a
    file; ``hookcast.Unavailable(uri, info)`` makes the player FAILED with ``info``), or
    ``None`` if the scheme is not yours (the player gets ``Stream not found``).
    """
