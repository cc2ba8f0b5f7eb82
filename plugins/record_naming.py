"""Record file names as WCS makes them: ``stream_record_policy`` and its companions.

- ``stream_record_policy=template`` (the default): the template in force (REST
  ``config.fileTemplate``, else ``stream_record_policy_template``, default
  ``stream-{sessionId}-{mediaSessionId}``) with its variables filled in;
  ``streamName``: the stream's name as it is.
- ``exclude_record_name_characters`` (default ``/``): those characters are removed.
- ``encode_record_name=true,HEX`` or ``true,BASE64``: the name is encoded instead
  (BASE64 in its file-name-safe alphabet, ``-`` and ``_``), so any stream name gives a
  file name that decodes back to it.

Whatever this returns, the core still makes it a safe file name inside records/; to
name files another way, ``disabled_plugins=record_naming`` and drop in a plugin
answering ``record_file_name``.
"""

from __future__ import annotations

import base64

from hookcast import ServerInfo, Settings, StreamInfo, expand_template, hookimpl
from hookcast.properties import OneOf, Property, RecordNameEncoding, Text


def record_name(settings: Settings, stream: StreamInfo, template: str,
                variables: dict[str, str]) -> str:
    """The name ``settings`` give a file of ``stream``."""
    if settings.value("stream_record_policy") == "streamName":
        name = stream.name
    else:
        name = expand_template(template, variables)
    encoding = settings.value("encode_record_name")
    if encoding == "HEX":
        return name.encode().hex()
    if encoding == "BASE64":
        return base64.urlsafe_b64encode(name.encode()).decode("ascii")
    excluded = set(settings.value("exclude_record_name_characters"))
    return "".join(c for c in name if c not in excluded)


#: the properties this plugin reads (``settings.value(name)``)
PROPERTIES = [
    Property(
        "stream_record_policy", "template", OneOf(("template", "streamName")),
        "Record file names: from stream_record_policy_template, or the stream name "
        "(plugin record_naming)",
    ),
    Property(
        "encode_record_name", "", RecordNameEncoding(),
        "Encode record file names in hexadecimal or file-name-safe BASE64",
    ),
    Property(
        "exclude_record_name_characters", "/", Text(),
        "Characters removed from record file names (not applied when they are encoded)",
    ),
]


class RecordNaming:
    def __init__(self) -> None:
        self.settings: Settings | None = None

    @hookimpl
    def plugin_properties(self) -> list[Property]:
        return PROPERTIES

    @hookimpl
    def after_server_start(self, server: ServerInfo) -> None:
        self.settings = server.settings

    @hookimpl
    def record_file_name(self, stream: StreamInfo, template: str,
                         variables: dict[str, str]) -> str | None:
        if self.settings is None:
            return None
        return record_name(self.settings, stream, template, variables) or None


def hookcast_plugin() -> RecordNaming:
    return RecordNaming()
