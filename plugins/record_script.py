"""The record script: ``on_record_hook_script`` runs once for every finished file.

As WCS runs ``on_record_hook.sh``: argv ``[script, stream name, absolute file path]``,
never through a shell, so any character a stream name holds arrives intact as one
argument. The script runs off the event loop (``hookcast.scripts``): at most
``record_hook_concurrency`` at once, killed after ``record_hook_timeout``, with a clean
environment and these variables:

``HOOKCAST_EVENT`` (``record``), ``HOOKCAST_STREAM_NAME``, ``HOOKCAST_MEDIA_SESSION_ID``,
``HOOKCAST_SESSION_ID``, ``HOOKCAST_APP_KEY``, ``HOOKCAST_FILE`` (the absolute path),
``HOOKCAST_FILE_NAME``, ``HOOKCAST_PART`` (1, 2, ...), ``HOOKCAST_DURATION`` (seconds),
``HOOKCAST_SIZE`` (bytes), ``HOOKCAST_RECOVERED`` (``true`` for a file a crash cut
short, finished at the next start), ``HOOKCAST_ERROR`` (empty, or why the recording
ended early), ``HOOKCAST_HOME``, ``HOOKCAST_RECORDS``.

The file becomes final (listed, downloadable, deletable) once its script is over: this
plugin's ``on_record_finished`` returns when the run has ended (exited, failed, killed
at its timeout, or dropped), never before.

An empty ``on_record_hook_script`` turns it off; so does
``disabled_plugins=record_script``, to put another plugin in its place.
"""

from __future__ import annotations

import asyncio

from hookcast import RecordingInfo, ScriptPlugin, ScriptRunner, ServerInfo, hookimpl, printable
from hookcast.properties import Integer, Property, Seconds, Text

PROPERTY = "on_record_hook_script"


#: the properties this plugin reads (``settings.value(name)``)
PROPERTIES = [
    Property(
        "on_record_hook_script", "hooks/on_record_hook.sh", Text(),
        "Script run with (stream name, file path) when a recording part is finished; "
        "relative to the home; empty = none (plugin record_script)",
    ),
    Property(
        "record_hook_concurrency", 4, Integer(minimum=1, unit="scripts"),
        "Record scripts running at once; the others wait in a queue",
    ),
    Property(
        "record_hook_timeout", 60.0, Seconds(minimum=0.1),
        "A record script still running after this is killed (its process group)",
    ),
]


class RecordScript(ScriptPlugin):
    def __init__(self) -> None:
        self.server: ServerInfo | None = None
        self.runner: ScriptRunner | None = None
        self.script = ""

    @hookimpl
    def plugin_properties(self) -> list[Property]:
        return PROPERTIES

    @hookimpl
    def after_server_start(self, server: ServerInfo) -> None:
        settings = server.settings
        self.server, self.script = server, settings.value("on_record_hook_script").strip()
        if not self.script:
            return
        self.runner = ScriptRunner("record", server.home, settings.value("record_hook_concurrency"),
                                   settings.value("record_hook_timeout"))
        self.runner.check(PROPERTY, self.script)
        # the hook returns once the run is over: give it the longest a run can take
        self.hookcast_timeout = self.runner.longest_wait

    @hookimpl
    async def on_record_finished(self, recording: RecordingInfo) -> None:
        if self.runner is None or self.server is None or not recording.size:
            return  # off, or no file was written
        stream = recording.stream
        resolved = await asyncio.to_thread(recording.path.resolve)  # file system: off the loop
        path = str(resolved)
        await self.runner.run(PROPERTY, self.script, [stream.name, path], {
            "HOOKCAST_EVENT": "record",
            "HOOKCAST_STREAM_NAME": stream.name,
            "HOOKCAST_MEDIA_SESSION_ID": stream.media_session_id,
            "HOOKCAST_SESSION_ID": stream.session_id,
            "HOOKCAST_APP_KEY": stream.app_key,
            "HOOKCAST_FILE": path,
            "HOOKCAST_FILE_NAME": recording.path.name,
            "HOOKCAST_PART": str(recording.part),
            "HOOKCAST_DURATION": f"{recording.duration:.3f}",
            "HOOKCAST_SIZE": str(recording.size),
            "HOOKCAST_RECOVERED": "true" if recording.recovered else "false",
            "HOOKCAST_ERROR": recording.error,
            "HOOKCAST_HOME": str(self.server.home),
            "HOOKCAST_RECORDS": str(resolved.parent),
        }, f"stream {printable(stream.name, 100)!r}, file {printable(recording.path.name, 100)!r}")


def hookcast_plugin() -> RecordScript:
    return RecordScript()
