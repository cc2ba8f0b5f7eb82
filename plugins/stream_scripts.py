"""Shell scripts for the stream lifecycle, beside the record script (beyond WCS).

``on_publish_hook_script`` runs when a stream starts publishing,
``on_unpublish_hook_script`` when a stream that was publishing ends,
``on_play_hook_script`` when a player starts playing and ``on_stop_hook_script`` when a
player that was playing ends; each once, with argv ``[script, stream name,
mediaSessionId]``, never through a shell. They only report: admission stays with
plugins and REST hooks. They run exactly as the record script does
(``hookcast.scripts``), bounded by ``stream_hook_concurrency`` and
``stream_hook_timeout``, with a clean environment and these variables:

``HOOKCAST_EVENT`` (``publish``, ``unpublish``, ``play`` or ``stop``),
``HOOKCAST_STREAM_NAME``, ``HOOKCAST_MEDIA_SESSION_ID``, ``HOOKCAST_SESSION_ID``,
``HOOKCAST_APP_KEY``, ``HOOKCAST_STATUS`` (the status that triggered it),
``HOOKCAST_INFO`` (its reason, when there is one), ``HOOKCAST_HOME``.

Every property is empty by default: nothing runs until one is set.
"""

from __future__ import annotations

from hookcast import ScriptPlugin, ScriptRunner, ServerInfo, StreamInfo, hookimpl, printable
from hookcast.properties import Integer, Property, Seconds, Text

LIVE = {"publish": "PUBLISHING", "play": "PLAYING"}
ENDED = ("UNPUBLISHED", "STOPPED", "FAILED")


def event_of(stream: StreamInfo, previous_status: str | None) -> str | None:
    """Which script a status change runs: publish/unpublish for publishers, play/stop
    for players; None for the others."""
    started, ended = ("publish", "unpublish") if stream.published else ("play", "stop")
    live = LIVE[started]
    if stream.status == live and previous_status != live:
        return started
    if previous_status == live and stream.status in ENDED:
        return ended
    return None


#: the properties this plugin reads (``settings.value(name)``)
PROPERTIES = [
    Property(
        "on_publish_hook_script", "", Text(),
        "Script run with (stream name, mediaSessionId) when a stream starts publishing "
        "(hookcast; plugin stream_scripts)",
    ),
    Property(
        "on_unpublish_hook_script", "", Text(),
        "Script run with (stream name, mediaSessionId) when a published stream ends (hookcast)",
    ),
    Property(
        "on_play_hook_script", "", Text(),
        "Script run with (stream name, mediaSessionId) when a player starts playing (hookcast)",
    ),
    Property(
        "on_stop_hook_script", "", Text(),
        "Script run with (stream name, mediaSessionId) when a player stops (hookcast)",
    ),
    Property(
        "stream_hook_concurrency", 4, Integer(minimum=1, unit="scripts"),
        "Publish/unpublish/play/stop scripts running at once; the others wait (hookcast)",
    ),
    Property(
        "stream_hook_timeout", 60.0, Seconds(minimum=0.1),
        "A publish/unpublish/play/stop script still running after this is killed (hookcast)",
    ),
]


class StreamScripts(ScriptPlugin):
    def __init__(self) -> None:
        self.server: ServerInfo | None = None
        self.runner: ScriptRunner | None = None
        self.scripts: dict[str, str] = {}

    @hookimpl
    def plugin_properties(self) -> list[Property]:
        return PROPERTIES

    @hookimpl
    def after_server_start(self, server: ServerInfo) -> None:
        settings = server.settings
        self.server = server
        configured = {"publish": settings.value("on_publish_hook_script"),
                      "unpublish": settings.value("on_unpublish_hook_script"),
                      "play": settings.value("on_play_hook_script"),
                      "stop": settings.value("on_stop_hook_script")}
        self.scripts = {event: script.strip() for event, script in configured.items()
                        if script.strip()}
        if not self.scripts:
            return
        self.runner = ScriptRunner("stream", server.home, settings.value("stream_hook_concurrency"),
                                   settings.value("stream_hook_timeout"))
        for event, script in self.scripts.items():
            self.runner.check(f"on_{event}_hook_script", script)

    @hookimpl
    def after_stream_status(self, stream: StreamInfo, previous_status: str | None) -> None:
        if self.runner is None or self.server is None or stream.node:
            return  # another cluster node's play, or this node's copy of its stream
        event = event_of(stream, previous_status)
        script = self.scripts.get(event or "")
        if event is None or not script:
            return
        self.runner.submit(f"on_{event}_hook_script", script,
                           [stream.name, stream.media_session_id], {
            "HOOKCAST_EVENT": event,
            "HOOKCAST_STREAM_NAME": stream.name,
            "HOOKCAST_MEDIA_SESSION_ID": stream.media_session_id,
            "HOOKCAST_SESSION_ID": stream.session_id,
            "HOOKCAST_APP_KEY": stream.app_key,
            "HOOKCAST_STATUS": stream.status,
            "HOOKCAST_INFO": stream.info,
            "HOOKCAST_HOME": str(self.server.home),
        }, f"stream {printable(stream.name, 100)!r} ({stream.media_session_id})")


def hookcast_plugin() -> StreamScripts:
    return StreamScripts()
