"""What each REST method accepts, in one table: request validation and the OpenAPI
document are both made from it, so they cannot disagree."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hookcast.config.properties import RotationType, template_problem
from hookcast.engine.streams import Status
from hookcast.signalling.messages import is_unicode

#: a source URI: a scheme, "://", something
URI_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://.+")
#: a WCS server's WebSocket URL
WS_URI_PATTERN = re.compile(r"^[wW][sS][sS]?://[A-Za-z0-9._~%:\[\]-]+(/[!-~]*)?$")

JSON_TYPES = {bool: "boolean", str: "string", int: "number", float: "number", list: "array",
              dict: "object", type(None): "null"}


class RestError(Exception):
    """A request the server refuses; becomes a JSON error body with this status."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 expected: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.expected = expected

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.expected is not None:
            body["expected"] = self.expected
        return body


@dataclass(frozen=True)
class Field:
    """One request field: its JSON name, the engine's name for it, its JSON type."""

    wire: str
    attribute: str
    kind: str  # "string", "boolean", "strings", "status", "display"
    description: str

    @property
    def expected(self) -> str:
        return {
            "string": "string", "boolean": "boolean", "strings": "array of strings",
            "status": "one of " + ", ".join(s.value for s in Status),
            "display": 'array of "metrics"',
            "record_config": 'object {"fileTemplate": string, "rotation": "20" or "20M"}',
            "uri": "a URI such as vod-live://file.mp4",
            "ws_uri": "a ws:// or wss:// URL such as wss://host:8443/websocket",
            "object": "object",
            "integer": "integer", "integers": "array of integers",
            "outbox_status": "pending, delivered or dead",
            "outbox_done": "delivered or dead",
            "limit": "an integer from 1 to 10000",
        }[self.kind]

    def schema(self) -> dict[str, Any]:
        schemas: dict[str, dict[str, Any]] = {
            "string": {"type": "string"},
            "boolean": {"type": "boolean"},
            "strings": {"type": "array", "items": {"type": "string"}},
            "status": {"type": "string", "enum": [s.value for s in Status]},
            "display": {"type": "array", "items": {"type": "string", "enum": ["metrics"]}},
            "uri": {"type": "string", "pattern": URI_PATTERN.pattern},
            "ws_uri": {"type": "string", "pattern": WS_URI_PATTERN.pattern},
            "object": {"type": "object"},
            "integer": {"type": "integer"},
            "integers": {"type": "array", "items": {"type": "integer"}},
            "outbox_status": {"type": "string", "enum": ["pending", "delivered", "dead"]},
            "outbox_done": {"type": "string", "enum": ["delivered", "dead"]},
            "limit": {"type": "integer", "minimum": 1, "maximum": 10_000},
            "record_config": {"type": "object", "additionalProperties": False, "properties": {
                "fileTemplate": {"type": "string", "minLength": 1},
                "rotation": {"type": "string", "pattern": "^[0-9]*[1-9][0-9]*[mM]?$"}}},
        }
        return {**schemas[self.kind], "description": self.description}

    def parse(self, value: Any) -> Any:
        if self.kind == "record_config":
            return _record_config(value)
        ok = {
            "string": isinstance(value, str),
            "boolean": isinstance(value, bool),
            "strings": isinstance(value, list) and all(isinstance(v, str) for v in value),
            "status": isinstance(value, str) and value in Status.__members__,
            "display": isinstance(value, list) and all(v == "metrics" for v in value),
            "uri": isinstance(value, str) and URI_PATTERN.search(value) is not None,
            "ws_uri": isinstance(value, str) and WS_URI_PATTERN.search(value) is not None,
            "object": isinstance(value, Mapping),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "integers": isinstance(value, list)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value),
            "outbox_status": value in ("pending", "delivered", "dead"),
            "outbox_done": value in ("delivered", "dead"),
            "limit": isinstance(value, int) and not isinstance(value, bool)
            and 1 <= value <= 10_000,
        }[self.kind]
        if ok and isinstance(value, str) and not is_unicode(value):
            raise RestError(400, f"{self.wire}: must be valid Unicode (it holds a lone "
                                 "surrogate)", self.wire, self.expected)
        if not ok:
            got = JSON_TYPES.get(type(value), type(value).__name__)
            shown = f" {value!r}" if isinstance(value, str) else ""
            raise RestError(400, f"{self.wire}: expected {self.expected}, got {got}{shown}",
                            self.wire, self.expected)
        return Status(value) if self.kind == "status" else value


def _record_config(value: Any) -> dict[str, Any]:
    """``config`` of startRecording: {"template": str | None, "rotation": Rotation | None}."""
    if not isinstance(value, Mapping):
        got = JSON_TYPES.get(type(value), type(value).__name__)
        raise RestError(400, f"config: expected an object, got {got}", "config", "object")
    for key in value:
        if key not in ("fileTemplate", "rotation"):
            raise RestError(400, f"unknown field 'config.{key}'; config takes: fileTemplate, "
                                 "rotation", f"config.{key}")
    template = value.get("fileTemplate")
    if template is not None and (not isinstance(template, str) or not template.strip()):
        raise RestError(400, "config.fileTemplate: expected a non-empty string",
                        "config.fileTemplate", "string")
    problem = template_problem(template) if template is not None else None
    if problem:
        raise RestError(400, f"config.fileTemplate: {problem}", "config.fileTemplate",
                        "a template of known variables")
    rotation = value.get("rotation")
    try:
        parsed = RotationType().parse(str(rotation)) if rotation is not None else None
    except ValueError as error:
        raise RestError(400, f"config.rotation: {error}, got {rotation!r}", "config.rotation",
                        "seconds (20) or megabytes (20M)") from None
    return {"template": template, "rotation": parsed}


STREAM_FILTERS = (
    Field("mediaSessionId", "media_session_id", "string", "streams of this media session"),
    Field("mediaSessionIds", "media_session_ids", "strings",
          "streams of any of these media sessions"),
    Field("name", "name", "string", "stream name"),
    Field("published", "published", "boolean", "true: publishers, false: players"),
    Field("status", "status", "status", "stream status"),
    Field("hasAudio", "has_audio", "boolean", "streams with (or without) audio"),
    Field("hasVideo", "has_video", "boolean", "streams with (or without) video"),
    Field("sessionId", "session_id", "string", "streams of this signalling session"),
)
DISPLAY = Field("display", "display", "display", 'add "metrics" to include each stream\'s metrics')
MEDIA_SESSION = Field("mediaSessionId", "media_session_id", "string", "the stream's media session")
SESSION = Field("sessionId", "session_id", "string", "the signalling session")
RECORD_CONFIG = Field("config", "config", "record_config",
                      "overrides of stream_record_policy_template and record_rotation")
FILE_NAME = Field("fileName", "file_name", "string", "a file in records/")


@dataclass(frozen=True)
class Method:
    """One REST method: its path under /rest-api, fields, required ones and answers."""

    group: str
    name: str
    summary: str
    fields: tuple[Field, ...] = ()
    required: tuple[str, ...] = ()
    #: the answer's schema: a component of the OpenAPI document, ``[]`` for a list of them
    response: str = "Stream[]"
    not_found: str | None = None
    #: also answer GET without a body (the SDK's REST helper does for find_all)
    get: bool = False
    #: the method changes state: its POST needs a JSON body (``{}`` at least)
    changes_state: bool = False
    #: the answer's JSON schema itself, for a plugin's method (instead of ``response``)
    answer_schema: Mapping[str, Any] | None = None

    @property
    def path(self) -> str:
        return f"/rest-api/{self.group}/{self.name}"

    def parse(self, body: Any) -> dict[str, Any]:
        """Validate a decoded body; return engine-named values. Raises RestError(400)."""
        if body is None:
            body = {}
        if not isinstance(body, Mapping):
            got = JSON_TYPES.get(type(body), type(body).__name__)
            raise RestError(400, f"request body: expected a JSON object, got {got}",
                            "body", "object")
        known = {f.wire: f for f in self.fields}
        for key in body:
            if key not in known:
                names = ", ".join(known) or "none"
                raise RestError(400, f"unknown field {key!r}; {self.path} takes: {names}", key)
        for wire in self.required:
            if wire not in body:
                raise RestError(400, f"{wire} is required", wire, known[wire].expected)
        return {known[key].attribute: known[key].parse(value) for key, value in body.items()}


METHODS = {
    m.path: m
    for m in (
        Method("stream", "find_all", "Every stream, publishers and players",
               not_found="Stream not found", get=True),
        Method("stream", "find", "Streams matching every given filter",
               (*STREAM_FILTERS, DISPLAY), not_found="Stream not found"),
        Method("stream", "terminate",
               "Stop every stream matching every given filter ({} stops all)",
               STREAM_FILTERS, response="Terminated", not_found="Stream not found",
               changes_state=True),
        Method("stream", "metrics", "Media counters of one stream", (MEDIA_SESSION,),
               ("mediaSessionId",), response="Metrics", not_found="Stream not found"),
        Method("connection", "find_all", "Every signalling session", response="Connection[]",
               not_found="Connection not found", get=True),
        Method("connection", "terminate", "Close one signalling session; its streams stop",
               (SESSION,), ("sessionId",), response="Terminated",
               not_found="Connection not found", changes_state=True),
        *(Method(group, name, "Record a published stream from its next keyframe (a "
                 "recording already running for it is stopped and a new one started)",
                 (MEDIA_SESSION, RECORD_CONFIG), ("mediaSessionId",), response="Recording",
                 not_found="Stream not found", changes_state=True)
          for group, name in (("stream", "startRecording"), ("recorder", "startup"))),
        *(Method(group, name, "Stop recording a stream; its file is made final",
                 (MEDIA_SESSION,), ("mediaSessionId",), response="Recording",
                 not_found="Recording not found", changes_state=True)
          for group, name in (("stream", "stopRecording"), ("recorder", "terminate"))),
        Method("recorder", "find_all", "Recordings in progress", response="Recording[]",
               not_found="Recording not found", get=True),
        Method("records", "find_all", "Final files in records/ (recorded, complete and "
               "announced, the record script over), newest first, with the stream they "
               "recorded (an empty list when there are none)", response="RecordFile[]",
               get=True),
        Method("records", "delete", "Delete a final file (and what is kept with it) from "
               "records/; 409 while it is not final yet", (FILE_NAME,),
               ("fileName",), response="Deleted", not_found="File not found",
               changes_state=True),
        Method("media", "find_all", "Files of media_dir with duration, codecs and size (an "
               "empty list when there are none)", response="MediaFile[]", get=True),
        Method("plugins", "find_all",
               "Loaded plugins with their hooks and source, disabled ones, load failures",
               response="Plugins", get=True),
    )
}
