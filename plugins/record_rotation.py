"""Record rotation as WCS does it: ``record_rotation``, or REST ``config.rotation``.

``record_rotation=N`` cuts every recording into parts of N seconds, ``NM`` into parts
of N megabytes; a REST ``startRecording`` with ``config.rotation`` overrides it for that
recording. The core cuts at the first keyframe at or after the threshold, so every part
starts with a keyframe and plays on its own. (WCS's documentation says
``record_rotation=20`` gives 10-second parts; that is a slip: N means N seconds.)

To cut another way, ``disabled_plugins=record_rotation`` and drop in a plugin answering
``record_rotation_policy``; with neither, recordings are never cut.
"""

from __future__ import annotations

from hookcast import Rotation, StreamInfo, hookimpl


@hookimpl
def record_rotation_policy(stream: StreamInfo, configured: Rotation | None,
                           requested: Rotation | None) -> Rotation | None:
    if requested is not None:
        return requested
    return configured if configured is not None else Rotation()
