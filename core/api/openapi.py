"""The OpenAPI 3 document of the REST API, made from the same table that validates
requests (hookcast.api.schema.METHODS), so the document is what the server does."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hookcast.api.schema import METHODS, Method
from hookcast.version import __version__

ERROR = {
    "type": "object",
    "required": ["status", "message"],
    "properties": {
        "status": {"type": "integer"},
        "message": {"type": "string"},
        "field": {"type": "string", "description": "the request field at fault"},
        "expected": {"type": "string", "description": "what that field must be"},
    },
}
STREAM = {
    "type": "object",
    "required": ["mediaSessionId", "name", "published", "status"],
    "properties": {
        "mediaSessionId": {"type": "string"}, "name": {"type": "string"},
        "published": {"type": "boolean"}, "status": {"type": "string"},
        "info": {"type": "string"}, "sessionId": {"type": "string"},
        "appKey": {"type": "string"}, "hasAudio": {"type": "boolean"},
        "hasVideo": {"type": "boolean"}, "record": {"type": "boolean"},
        "audioCodec": {"type": "string"}, "videoCodec": {"type": "string"},
        "width": {"type": "integer"}, "height": {"type": "integer"},
        "createDate": {"type": "integer", "description": "epoch milliseconds"},
        "mediaProvider": {"type": "string"}, "mediaType": {"type": "string"},
        "custom": {"type": "object"}, "recordName": {"type": "string"},
        "metrics": {"type": "object"},
        "node": {"type": "string", "description": "the cluster node the stream is on "
                 "(cluster nodes' answers only)"},
    },
}
CONNECTION = {
    "type": "object",
    "required": ["sessionId", "appKey", "status"],
    "properties": {
        "sessionId": {"type": "string"}, "appKey": {"type": "string"},
        "status": {"type": "string"}, "remoteAddress": {"type": "string"},
        "clientVersion": {"type": "string"}, "custom": {"type": "object"},
        "createDate": {"type": "integer"}, "streams": {"type": "integer"},
    },
}
METRICS = {
    "type": "object",
    "additionalProperties": {"anyOf": [{"type": "number"}, {"type": "string"}]},
}
TERMINATED = {
    "type": "object", "required": ["terminated"],
    "properties": {"terminated": {"type": "array", "items": {"type": "string"}}},
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


PLUGINS = {
    "type": "object", "required": ["plugins", "disabled", "failures"],
    "properties": {
        "plugins": {"type": "array", "items": {
            "type": "object", "required": ["name", "source", "hooks"],
            "properties": {"name": {"type": "string"}, "source": {"type": "string"},
                           "hooks": {"type": "array", "items": {"type": "string"}}}}},
        "disabled": {"type": "array", "items": {"type": "string"}},
        "failures": {"type": "array", "items": {
            "type": "object", "required": ["name", "problem"],
            "properties": {"name": {"type": "string"}, "problem": {"type": "string"}}}},
    },
}
RECORDING = {
    "type": "object", "required": ["mediaSessionId", "streamName", "fileName", "startTime"],
    "properties": {
        "mediaSessionId": {"type": "string"}, "streamName": {"type": "string"},
        "fileName": {"type": "string", "description": "the file being written (a part)"},
        "part": {"type": "integer"},
        "startTime": {"type": "integer", "description": "epoch milliseconds"},
        "bytes": {"type": "integer", "description": "media bytes written so far"},
    },
}
RECORD_FILE = {
    "type": "object", "required": ["fileName", "size", "duration", "createDate"],
    "properties": {
        "fileName": {"type": "string"}, "size": {"type": "integer"},
        "duration": {"type": "number", "description": "seconds"},
        "videoCodec": {"type": "string"}, "audioCodec": {"type": "string"},
        "width": {"type": "integer"}, "height": {"type": "integer"},
        "createDate": {"type": "integer", "description": "epoch milliseconds"},
        "url": {"type": "string", "description": "where it downloads: /client/records/<file>"},
        "streamName": {"type": "string",
                       "description": "the stream recorded (empty when not known)"},
        "startTime": {"type": "integer",
                      "description": "when the file started, epoch milliseconds (0 when "
                                     "not known)"},
        "endTime": {"type": "integer",
                    "description": "when the file ended, epoch milliseconds (0 when not "
                                   "known)"},
    },
}
DELETED = {"type": "object", "required": ["deleted"],
           "properties": {"deleted": {"type": "string"}}}
MEDIA_FILE = {
    "type": "object", "required": ["fileName", "size", "duration", "uri"],
    "properties": {
        "fileName": {"type": "string"}, "size": {"type": "integer"},
        "duration": {"type": "number", "description": "seconds"},
        "videoCodec": {"type": "string"}, "audioCodec": {"type": "string"},
        "width": {"type": "integer"}, "height": {"type": "integer"},
        "modified": {"type": "integer", "description": "epoch milliseconds"},
        "problem": {"type": "string", "description": "why it cannot be read, if it cannot"},
        "uri": {"type": "string", "description": "vod://<file>"},
    },
}
#: every schema a method may answer with (``Method.response`` names one)
SCHEMAS = {"Error": ERROR, "Stream": STREAM, "Connection": CONNECTION, "Metrics": METRICS,
           "Terminated": TERMINATED, "Plugins": PLUGINS, "Recording": RECORDING,
           "RecordFile": RECORD_FILE, "Deleted": DELETED, "MediaFile": MEDIA_FILE}


def _ref(name: str) -> dict[str, Any]:
    if name.endswith("[]"):
        return {"type": "array", "items": _ref(name[:-2])}
    if name not in SCHEMAS:
        raise KeyError(f"no schema {name!r} for a REST answer")
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(method: Method) -> dict[str, Any]:
    schema = dict(method.answer_schema) if method.answer_schema else _ref(method.response)
    return {"description": "OK", "content": {"application/json": {"schema": schema}}}


def _operation(method: Method, with_body: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": method.summary,
        "operationId": f"{method.group}_{method.name}_{'post' if with_body else 'get'}",
        "responses": {
            "200": _ok(method),
            "400": _error("a field is unknown, of the wrong type, or missing"),
            "401": _error("authorization required (when REST API auth is on)"),
            "403": _error("a cross-site origin, client network or pull target host "
                          "that is not allowed"),
            "404": _error(method.not_found or "not found"),
        },
    }
    if method.changes_state:
        operation["responses"]["409"] = _error("the state does not allow it (e.g. a file "
                                               "being recorded, a stream without media yet)")
        operation["responses"]["500"] = _error("records/ cannot be written")
    if with_body:
        operation["responses"]["415"] = _error("a body that is not application/json")
        operation["requestBody"] = {
            "required": bool(method.required) or method.changes_state,
            "content": {"application/json": {"schema": {
                "type": "object",
                "additionalProperties": False,
                "required": list(method.required),
                "properties": {f.wire: f.schema() for f in method.fields},
            }}},
        }
    return operation


def openapi_document(plugin_methods: Iterable[Method] = ()) -> dict[str, Any]:
    """The document of the core's methods and of those plugins added (hookcast.rest_routes)."""
    paths: dict[str, Any] = {
        "/rest-api/health": {"get": {
            "summary": "Version and uptime, for readiness checks", "operationId": "health",
            "responses": {"200": {"description": "OK", "content": {"application/json": {
                "schema": {"type": "object", "required": ["status", "version", "uptime"]}}}}},
        }},
    }
    for method in (*METHODS.values(), *plugin_methods):
        path = method.path
        operations = {"post": _operation(method, with_body=True)}
        if method.get:
            operations["get"] = _operation(method, with_body=False)
        paths[path] = operations
    return {
        "openapi": "3.0.3",
        "info": {"title": "hookcast REST API (WCS-compatible)", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            },
        },
    }
