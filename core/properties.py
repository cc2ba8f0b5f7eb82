"""What a plugin needs to declare its own properties (the ``plugin_properties`` hook):
``Property`` and the property types, the same the core's properties use.

    from hookcast import hookimpl
    from hookcast.properties import Integer, Property, Seconds

    @hookimpl
    def plugin_properties():
        return [Property("my_retries", 3, Integer(minimum=0), "Retries of my plugin"),
                Property("my_timeout", 5.0, Seconds(minimum=0.1), "Timeout of my plugin")]

Each type parses the text of ``conf/server.properties`` or raises ValueError with a
sentence saying what was expected (the server adds the file and the property name).
"""

from hookcast.config.properties import (
    Boolean,
    Choices,
    CommaList,
    HostPatterns,
    Integer,
    Networks,
    OneOf,
    Property,
    PropertyType,
    RecordNameEncoding,
    Seconds,
    Text,
)

__all__ = [
    "Boolean",
    "Choices",
    "CommaList",
    "HostPatterns",
    "Integer",
    "Networks",
    "OneOf",
    "Property",
    "PropertyType",
    "RecordNameEncoding",
    "Seconds",
    "Text",
]
