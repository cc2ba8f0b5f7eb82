"""Property value types for conf/server.properties.

Each type turns the raw text of one property into a typed value, or raises
``ValueError`` with a sentence saying what was expected; ``hookcast.config.settings`` adds
the file and the property name to that sentence.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Property:
    """One property of conf/server.properties that a plugin declares
    (``plugin_properties``): its name (WCS's when WCS has it), default, type (a
    ``PropertyType``: the text it takes, the sentence saying what was expected) and a
    one-line description (``hookcast config --list``, the commented file ``hookcast
    init`` writes). ``requires``: properties that must be set (not empty) when this one
    is (true, non-empty)."""

    name: str
    default: Any
    type: PropertyType[Any]
    description: str
    requires: tuple[str, ...] = ()

    @property
    def default_text(self) -> str:
        return self.type.format(self.default)


class PropertyType(ABC, Generic[T]):
    """Parses one property's raw text. ``name`` is shown by ``hookcast config --list``."""

    name = "text"

    @abstractmethod
    def parse(self, raw: str) -> T:
        """The typed value of ``raw``; ValueError saying what was expected otherwise."""

    def format(self, value: T) -> str:
        """The text that parses back to ``value`` (used to print defaults)."""
        return str(value)


class Text(PropertyType[str]):
    name = "text"

    def parse(self, raw: str) -> str:
        return raw


class Boolean(PropertyType[bool]):
    name = "boolean"

    def parse(self, raw: str) -> bool:
        lowered = raw.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        raise ValueError("expected true or false")

    def format(self, value: bool) -> str:
        return "true" if value else "false"


@dataclass(frozen=True)
class Integer(PropertyType[int]):
    minimum: int | None = None
    maximum: int | None = None
    unit: str = ""

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"integer ({self.unit})" if self.unit else "integer"

    def parse(self, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected {self._expectation()}") from None
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            raise ValueError(f"expected {self._expectation()}")
        return value

    def _expectation(self) -> str:
        what = "a whole number"
        if self.minimum is not None and self.maximum is not None:
            what += f" from {self.minimum} to {self.maximum}"
        elif self.minimum is not None:
            what += f" of at least {self.minimum}"
        return f"{what} ({self.unit})" if self.unit else what


class Port(Integer):
    def __init__(self) -> None:
        super().__init__(minimum=0, maximum=65535, unit="TCP port, 0 picks a free one")

    @property
    def name(self) -> str:  # type: ignore[override]
        return "port"


@dataclass(frozen=True)
class Seconds(PropertyType[float]):
    """A duration in seconds; fractions allowed."""

    minimum: float = 0.0

    @property
    def name(self) -> str:  # type: ignore[override]
        return "seconds"

    def parse(self, raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number of seconds >= {self.minimum:g}") from None
        if value < self.minimum or value != value:  # NaN is not a duration
            raise ValueError(f"expected a number of seconds >= {self.minimum:g}")
        return value

    def format(self, value: float) -> str:
        return f"{value:g}"


class Address(PropertyType[str]):
    """An IPv4 or IPv6 address, or empty for "not set"."""

    name = "IP address"

    def parse(self, raw: str) -> str:
        raw = raw.strip()
        if raw == "":
            return ""
        try:
            return str(ipaddress.ip_address(raw))
        except ValueError:
            raise ValueError("expected an IPv4 or IPv6 address such as 127.0.0.1") from None


class CommaList(PropertyType[tuple[str, ...]]):
    """Comma-separated words; blanks around commas are ignored, empty items dropped."""

    name = "comma-separated list"

    def parse(self, raw: str) -> tuple[str, ...]:
        return tuple(item.strip() for item in raw.split(",") if item.strip())

    def format(self, value: tuple[str, ...]) -> str:
        return ",".join(value)


class Networks(PropertyType[tuple[str, ...]]):
    """Comma-separated networks in CIDR notation (a bare address is a /32 or /128)."""

    name = "comma-separated CIDR networks"

    def parse(self, raw: str) -> tuple[str, ...]:
        networks = []
        for item in (part.strip() for part in raw.split(",")):
            if not item:
                continue
            try:
                networks.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ValueError(
                    f"{item!r} is not a network; expected CIDRs such as 10.0.0.0/8, ::1/128"
                ) from None
        return tuple(networks)

    def format(self, value: tuple[str, ...]) -> str:
        return ",".join(value)


#: a host name pattern: letters, digits, "-", "." and "*" (any characters)
_HOST_PATTERN = re.compile(r"[a-z0-9*]([a-z0-9*.-]*[a-z0-9*])?")
#: what would read as an address with a wildcard (10.0.0.*): networks are written as CIDRs
_ADDRESS_LIKE = re.compile(r"[0-9.*]+")


class HostPatterns(PropertyType[tuple[str, ...]]):
    """Comma-separated host patterns (see ``host_allowed``): host names in which ``*``
    stands for any characters, dots included (``media-*.example.com``, ``*`` for any
    name), or networks in CIDR notation (``10.0.0.0/8``; a bare address is a /32 or
    /128). Names are kept lowercase."""

    name = "comma-separated host names (* wildcards) or CIDR networks"

    def parse(self, raw: str) -> tuple[str, ...]:
        patterns = []
        for item in (part.strip().lower() for part in raw.split(",")):
            if not item:
                continue
            try:
                patterns.append(str(ipaddress.ip_network(item, strict=False)))
                continue
            except ValueError:
                pass
            if item != "*" and _ADDRESS_LIKE.fullmatch(item):
                raise ValueError(f"{item!r}: write addresses as networks, such as "
                                 "10.0.0.0/24 (a * matches host names only)")
            if not _HOST_PATTERN.fullmatch(item.rstrip(".")):
                raise ValueError(f"{item!r} is neither a host name pattern (letters, "
                                 "digits, -, . and *) nor a network such as 10.0.0.0/8")
            patterns.append(item.rstrip("."))
        return tuple(patterns)

    def format(self, value: tuple[str, ...]) -> str:
        return ",".join(value)


def host_allowed(host: str, patterns: Sequence[str]) -> bool:
    """Whether a URL's ``host`` matches one of ``patterns`` (as HostPatterns parses them;
    none allow any host). An address (written any way the system's resolver reads as
    one: ``127.0.0.1``, ``::ffff:127.0.0.1``, ``2130706433``) matches the networks that
    hold it, never a name pattern; a name matches the name patterns, as written (case
    and a trailing dot aside), never a network: names are not resolved here."""
    if not patterns:
        return True
    address = _address(host)
    if address is not None:
        return any(address in ipaddress.ip_network(pattern) for pattern in patterns
                   if "/" in pattern)
    name = host.lower().rstrip(".")
    return any(re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), name)
               for pattern in patterns if "/" not in pattern)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` stands for, if it is one (IPv4-mapped IPv6 as IPv4)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        try:  # 2130706433, 127.1, 0x7f.1: what inet_aton (and so the resolver) reads
            packed = socket.inet_aton(host) if re.fullmatch(r"[0-9a-fA-Fx.]+", host) else b""
        except OSError:
            return None
        return ipaddress.IPv4Address(packed) if packed else None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class Choices(PropertyType[tuple[str, ...]]):
    """Comma-separated words, each from a fixed set."""

    allowed: tuple[str, ...]

    @property
    def name(self) -> str:  # type: ignore[override]
        return "list of " + "|".join(self.allowed)

    def parse(self, raw: str) -> tuple[str, ...]:
        items = CommaList().parse(raw)
        for item in items:
            if item not in self.allowed:
                raise ValueError(f"{item!r} is not one of {', '.join(self.allowed)}")
        return items

    def format(self, value: tuple[str, ...]) -> str:
        return ",".join(value)


@dataclass(frozen=True)
class Rotation:
    """When a recording is cut into a new part: every ``seconds`` or every ``megabytes``."""

    seconds: int | None = None
    megabytes: int | None = None

    def __str__(self) -> str:
        if self.seconds is not None:
            return str(self.seconds)
        if self.megabytes is not None:
            return f"{self.megabytes}M"
        return ""


_ROTATION = re.compile(r"^(\d+)([mM]?)$")


class RotationType(PropertyType[Rotation | None]):
    """``20`` (seconds), ``20M`` (megabytes), or empty for no rotation."""

    name = "rotation (20 = seconds, 20M = megabytes)"

    def parse(self, raw: str) -> Rotation | None:
        raw = raw.strip()
        if raw == "":
            return None
        match = _ROTATION.match(raw)
        if match is None or int(match.group(1)) == 0:
            raise ValueError("expected seconds (20) or megabytes (20M)")
        amount = int(match.group(1))
        return Rotation(megabytes=amount) if match.group(2) else Rotation(seconds=amount)

    def format(self, value: Rotation | None) -> str:
        return "" if value is None else str(value)


@dataclass(frozen=True)
class OneOf(PropertyType[str]):
    """One word from a fixed set."""

    allowed: tuple[str, ...]

    @property
    def name(self) -> str:  # type: ignore[override]
        return "|".join(self.allowed)

    def parse(self, raw: str) -> str:
        value = raw.strip()
        if value not in self.allowed:
            raise ValueError(f"expected one of {', '.join(self.allowed)}")
        return value


#: variables of a record file name template known when a file opens ...
RECORD_START_VARIABLES = ("streamName", "mediaSessionId", "sessionId", "login", "audioCodec",
                          "videoCodec", "startTime", "startTimeMillis")
#: ... and those known only when it is finished (the file is renamed then)
RECORD_END_VARIABLES = ("endTime", "endTimeMillis", "duration")
RECORD_VARIABLES = RECORD_START_VARIABLES + RECORD_END_VARIABLES
TEMPLATE_VARIABLE = re.compile(r"\{(\w*)\}")


def template_problem(template: str) -> str | None:
    """What is wrong with a record file name template (an unknown variable), or None."""
    unknown = [name for name in TEMPLATE_VARIABLE.findall(template)
               if name not in RECORD_VARIABLES]
    if not unknown:
        return None
    known = ", ".join(f"{{{name}}}" for name in RECORD_VARIABLES)
    listed = ", ".join(f"{{{name}}}" for name in dict.fromkeys(unknown))
    return f"unknown variable {listed}; known: {known}"


class RecordTemplate(PropertyType[str]):
    """A record file name template: text and ``{variables}``, every one known."""

    name = "template of {variables}"

    def parse(self, raw: str) -> str:
        template = raw.strip()
        if not template:
            raise ValueError("expected a template such as {streamName}-{startTime}")
        problem = template_problem(template)
        if problem:
            raise ValueError(problem)
        return template


class RecordNameEncoding(PropertyType[str]):
    """``false`` (the default), ``true,HEX`` or ``true,BASE64``: "", "HEX" or "BASE64"."""

    name = "false|true,HEX|true,BASE64"

    def parse(self, raw: str) -> str:
        words = [word.strip() for word in raw.split(",")]
        if words in (["false"], [""]):
            return ""
        if len(words) == 2 and words[0] == "true" and words[1].upper() in ("HEX", "BASE64"):
            return words[1].upper()
        raise ValueError("expected false, true,HEX or true,BASE64")

    def format(self, value: str) -> str:
        return f"true,{value}" if value else "false"


_URL_SEGMENT = re.compile(r"^[A-Za-z0-9_~-][A-Za-z0-9._~-]*$")


class UrlPrefix(PropertyType[str]):
    """A URL path that ends with ``/`` (``/www/``, ``/client2/examples/``): segments of
    letters, digits, ``-``, ``.``, ``_``, ``~``, none hidden (starting with ``.``); never
    ``/`` alone (the console's dashboard)."""

    name = "URL path /name/"

    def parse(self, raw: str) -> str:
        path = raw.strip()
        if not path.endswith("/"):
            path += "/"
        segments = path.strip("/").split("/")
        if not path.startswith("/") or path == "/" \
                or not all(_URL_SEGMENT.match(segment) for segment in segments):
            raise ValueError("expected a URL path such as /www/ (segments of letters, digits, "
                             "- . _ ~, none starting with a dot; not / alone)")
        return path
