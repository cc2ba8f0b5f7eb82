"""The server's settings: every property hookcast knows, in one place.

Each field of :class:`Settings` is one property of ``conf/server.properties``: its
WCS name, its type, its default and a one-line description. ``load_settings`` reads
the file with a real .properties parser (``javaproperties``), checks every value and
returns one immutable object; ``hookcast config --list`` prints the table below.
"""

from __future__ import annotations

import difflib
import logging
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import javaproperties

from hookcast.config.properties import (
    Address,
    Boolean,
    Choices,
    CommaList,
    Integer,
    Networks,
    OneOf,
    Port,
    Property,
    PropertyType,
    RecordTemplate,
    Rotation,
    RotationType,
    Seconds,
    Text,
    UrlPrefix,
)

log = logging.getLogger(__name__)


def prop(name: str, default: Any, kind: PropertyType[Any], description: str) -> Any:
    """Declare one property: the dataclass field carries its name, type and description."""
    return field(
        default=default,
        metadata={"property": name, "type": kind, "description": description},
    )


@dataclass(frozen=True)
class Settings:
    """Typed, immutable view of conf/server.properties (field = property)."""

    # --- network -----------------------------------------------------------------
    ip: str = prop(
        "ip", "", Address(),
        "Media address put into ICE candidates; empty = every host address",
    )
    bind_address: str = prop(
        "bind_address", "0.0.0.0", Address(),
        "Address the WebSocket and HTTP listeners bind to (hookcast)",
    )
    ws_port: int = prop("ws.port", 8080, Port(), "WebSocket signalling port (ws://)")
    wss_port: int = prop("wss.port", 8443, Port(), "Secure WebSocket port, used with a certificate")
    http_port: int = prop(
        "http.port", 8081, Port(), "REST API, records, web pages and /metrics (http://)"
    )
    https_port: int = prop("https.port", 8444, Port(), "HTTPS port, used with a certificate")
    tls_certificate: str = prop(
        "tls_certificate", "", Text(),
        "PEM certificate chain; when set, wss.port and https.port listen too (hookcast)",
    )
    tls_private_key: str = prop(
        "tls_private_key", "", Text(), "PEM private key for tls_certificate (hookcast)"
    )
    ice_connect_timeout: float = prop(
        "ice_connect_timeout", 20.0, Seconds(minimum=0.1),
        "Time a new stream has to connect (ICE + DTLS) before it fails (hookcast)",
    )
    relay_fast_path: bool = prop(
        "relay_fast_path", True, Boolean(),
        "Forward to players on the dedicated path: each frame packetised once per stream, "
        "then per player a header rewrite, SRTP and a UDP send; false = aiortc's own "
        "sender per player (hookcast)",
    )
    relay_lean_receive: bool = prop(
        "relay_lean_receive", True, Boolean(),
        "Receive publishers' RTP on the event loop as it arrives (unprotect, reorder, "
        "assemble frames); false = aiortc's own receiver and its decoder thread (hookcast)",
    )
    relay_gso: bool = prop(
        "relay_gso", True, Boolean(),
        "On the dedicated path, send each player's frame with UDP GSO (one sendmsg per run "
        "of equal-size packets) when the kernel supports it (hookcast)",
    )
    access_log: bool = prop(
        "access_log", False, Boolean(),
        "Log one line per HTTP request and WebSocket upgrade, on both ports (hookcast)",
    )
    stun_server: str = prop(
        "stun_server", "", Text(),
        "STUN server for ICE (stun:host:port); empty = none, host candidates only",
    )
    # --- signalling --------------------------------------------------------------
    keep_alive_server_interval: int = prop(
        "keep_alive.server_interval", 5000, Integer(minimum=0, unit="ms"),
        "Interval of WebSocket pings to clients; 0 = no pings",
    )
    keep_alive_probes: int = prop(
        "keep_alive.probes", 10, Integer(minimum=1),
        "Unanswered pings after which a client session is closed",
    )
    max_streams_per_session: int = prop(
        "max_streams_per_session", 32, Integer(minimum=1),
        "Streams one signalling session may publish and play at once (hookcast)",
    )
    max_sessions: int = prop(
        "max_sessions", 1000, Integer(minimum=1),
        "Signalling sessions open at once; more are refused (hookcast)",
    )
    max_pending_streams_per_session: int = prop(
        "max_pending_streams_per_session", 16, Integer(minimum=1),
        "Streams one session may have requested and not yet connected (ICE + DTLS); more "
        "are FAILED at once (hookcast)",
    )
    max_pending_streams_per_address: int = prop(
        "max_pending_streams_per_address", 16, Integer(minimum=1),
        "Streams the sessions of one client address may have requested and not yet "
        "connected; more are FAILED at once (hookcast)",
    )
    max_pending_streams: int = prop(
        "max_pending_streams", 256, Integer(minimum=1),
        "Streams requested and not yet connected, in all; a new one fails the oldest "
        "(hookcast)",
    )
    max_sessions_per_address: int = prop(
        "max_sessions_per_address", 100, Integer(minimum=1),
        "Signalling sessions open at once from one client address (an IPv6 client counts "
        "by its /64); more are refused, after dropping one of that address that has not "
        "sent connection yet (hookcast)",
    )
    max_unidentified_sessions: int = prop(
        "max_unidentified_sessions", 200, Integer(minimum=1),
        "Sockets open at once that have not sent connection yet; a new one drops the "
        "oldest of them (hookcast)",
    )
    connection_timeout: float = prop(
        "connection_timeout", 10.0, Seconds(minimum=0.1),
        "Time a new WebSocket has to send its connection message; it is closed after "
        "it (hookcast)",
    )
    max_custom_size: int = prop(
        "max_custom_size", 16384, Integer(minimum=0, unit="bytes"),
        "Largest 'custom' object a client may attach to a session or stream, as JSON (hookcast)",
    )
    max_stream_name_length: int = prop(
        "max_stream_name_length", 256, Integer(minimum=1, unit="characters"),
        "Longest stream name a client may publish or play (hookcast)",
    )
    ws_send_timeout: float = prop(
        "ws_send_timeout", 5.0, Seconds(minimum=0.1),
        "Time a message to a client may wait to be written (a client that stops reading "
        "is dropped after it) (hookcast)",
    )
    # --- plugins -----------------------------------------------------------------
    disabled_plugins: tuple[str, ...] = prop(
        "disabled_plugins", (), CommaList(),
        "Plugins not loaded, by name (built-in, package or drop-in file stem)",
    )
    plugin_hook_timeout: float = prop(
        "plugin_hook_timeout", 5.0, Seconds(minimum=0.001),
        "Time one plugin may take on one admit or notify hook before it is skipped",
    )
    plugin_reload: bool = prop(
        "plugin_reload", True, Boolean(),
        "Reload drop-in plugins from plugins/ when their files change",
    )
    # --- cluster -----------------------------------------------------------------
    cluster_secret: str = prop(
        "cluster_secret", "", Text(),
        "Shared secret of the nodes of a cluster: a node proves itself to another with it "
        "(its connections and REST calls); a cluster node without it does not join; "
        "empty = no node is trusted (hookcast)",
    )
    # --- REST API ----------------------------------------------------------------
    rest_api_token: str = prop(
        "rest_api_token", "", Text(),
        "When set, REST API calls need 'Authorization: Bearer <token>' (hookcast)",
    )
    rest_api_user: str = prop(
        "rest_api_user", "", Text(),
        "When set, REST API calls may use HTTP Basic auth with this user (hookcast)",
    )
    rest_api_password: str = prop(
        "rest_api_password", "", Text(), "Password for rest_api_user (hookcast)"
    )
    rest_api_cors_origins: tuple[str, ...] = prop(
        "rest_api_cors_origins", (), CommaList(),
        "Browser origins allowed to call the REST API cross-site (https://app.example); "
        "empty = none, * = any (hookcast)",
    )
    rest_api_allowed_hosts: tuple[str, ...] = prop(
        "rest_api_allowed_hosts", (), CommaList(),
        "Host names the REST API, /metrics and the console answer to while they have no "
        "auth (IP addresses and localhost always); other names get 403, so a web page "
        "cannot reach them through DNS rebinding (hookcast)",
    )
    rest_api_allowed_networks: tuple[str, ...] = prop(
        "rest_api_allowed_networks", (), Networks(),
        "Client networks allowed to use the REST API and /metrics (CIDRs); empty = any "
        "(hookcast)",
    )
    # --- web root ----------------------------------------------------------------
    web_root_dir: str = prop(
        "web_root_dir", "www", Text(),
        "Folder of public pages and files served at web_root_path on the HTTP port, as WCS "
        "serves its example pages (relative to the home); empty = none (hookcast)",
    )
    web_root_path: str = prop(
        "web_root_path", "/www/", UrlPrefix(),
        "URL path of web_root_dir: <web_root_path>page.html is <web_root_dir>/page.html "
        "(hookcast)",
    )
    # --- REST hooks --------------------------------------------------------------
    keep_alive_streaming_sessions_enabled: bool = prop(
        "keep_alive_streaming_sessions_enabled", False, Boolean(),
        "Send StreamKeepAliveEvent for every stream each interval",
    )
    streaming_sessions_keep_alive_interval: int = prop(
        "streaming_sessions_keep_alive_interval", 10000, Integer(minimum=100, unit="ms"),
        "Interval of stream keep-alive hooks",
    )
    streaming_sessions_keep_alive_app_keys: tuple[str, ...] = prop(
        "streaming_sessions_keep_alive_app_keys", ("defaultApp",), CommaList(),
        "Applications (appKey) whose streams get StreamKeepAliveEvent, each stream's sent "
        "to its own application",
    )
    # --- recording and media -----------------------------------------------------
    record_streams: bool = prop(
        "record_streams", True, Boolean(),
        "Allow recording of published streams that ask for it (record: true)",
    )
    record_formats: tuple[str, ...] = prop(
        "record_formats", ("h264-mp4", "vp8-webm"),
        Choices(("h264-mp4", "h264-mkv", "vp8-webm", "vp8-mkv")),
        "Container per video codec (audio-only streams: MP4, audio as record_mp4_audio)",
    )
    record_mp4_audio: str = prop(
        "record_mp4_audio", "aac", OneOf(("aac", "opus")),
        "Audio of MP4 recordings: aac (WCS's; transcoded from Opus, plays everywhere) or "
        "opus (kept as it arrived, no transcode: plays in current browsers, VLC, FFmpeg; "
        "not in Safari before 17 or QuickTime) (hookcast)",
    )
    stream_record_policy_template: str = prop(
        "stream_record_policy_template", "stream-{sessionId}-{mediaSessionId}",
        RecordTemplate(),
        "Record file name template (without extension); {endTime}, {endTimeMillis} and "
        "{duration} are filled in when the file is finished",
    )
    record_rotation: Rotation | None = prop(
        "record_rotation", None, RotationType(),
        "Cut recordings into parts of N seconds (20) or N megabytes (20M); empty = never "
        "(plugin record_rotation)",
    )
    media_dir: str = prop(
        "media_dir", "media", Text(),
        "Folder of the files vod:// and vod-live:// play (relative to the home)",
    )
    vod_max_readings: int = prop(
        "vod_max_readings", 32, Integer(minimum=1, unit="readings"),
        "Files read at once (vod:// players and vod-live:// streams); beyond it a player "
        "is FAILED and REST answers 503 (hookcast)",
    )
    vod_live_idle_timeout: float = prop(
        "vod_live_idle_timeout", 60.0, Seconds(minimum=1),
        "A vod-live:// stream with no player (and no recording) this long is stopped "
        "(hookcast)",
    )


    # --- not properties: what the server resolved --------------------------------
    #: the plugins' properties (``plugin_properties``), by property name, once resolved
    plugin_values: Mapping[str, Any] = field(default_factory=dict, compare=False)
    #: the raw properties that are not the core's: the plugins' (and unknown ones)
    others: Mapping[str, str] = field(default_factory=dict, compare=False)
    #: where the properties were read (a file, or "defaults")
    source: str = field(default="defaults", compare=False)

    @classmethod
    def defaults(cls) -> Settings:
        return cls()

    def value(self, name: str) -> Any:
        """The value of the property ``name`` (``keep_alive.probes``, a plugin's
        ``pull_max``): a core property's, else a plugin's. KeyError naming it when
        no core property and no loaded plugin declares it."""
        core = _CORE_ATTRIBUTES.get(name)
        if core is not None:
            return getattr(self, core)
        try:
            return self.plugin_values[name]
        except KeyError:
            raise KeyError(f"no property {name}: neither the core's nor a loaded "
                           "plugin's (plugin_properties)") from None

    def with_plugins(self, declared: Sequence[tuple[str, Property]]) -> tuple[Settings, list[str]]:
        """These settings with the plugins' properties resolved: each declared one's
        value from the raw properties (or its default). Returns them and the warnings
        for properties nobody declares (with the nearest known name). Raises
        ConfigError naming the file, the property and what is wrong."""
        values, problems, unknown = _parse_declared(self.others, declared, self.source)
        known = [info.name for info in known_properties()] + [p.name for _, p in declared]
        warnings = [_unknown_property(self.source, name, known) for name in unknown]
        if problems:
            raise ConfigError(problems, warnings)
        return replace(self, plugin_values=values), warnings


def server_url(settings: Settings, port: int | None = None) -> str:
    """``http://host:port`` of this server's HTTP listener, as a local client reaches it:
    loopback when bound to every address, IPv6 hosts bracketed. ``port`` defaults to
    ``http.port`` (give the bound one when that is 0)."""
    host = settings.bind_address
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http_port if port is None else port}"


def media_address_problem(ip: str) -> str | None:
    """Why ``ip`` cannot be the media address (it must be an address of this machine:
    candidates are gathered on it), or None. Empty means every host address."""
    if not ip:
        return None
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((ip, 0))
    except OSError as error:
        return f"ip={ip}: not an address of this machine ({error.strerror})"
    return None


@dataclass(frozen=True)
class PropertyInfo:
    """One known property, as ``hookcast config --list`` shows it."""

    name: str
    attribute: str
    type: PropertyType[Any]
    default: Any
    description: str

    @property
    def default_text(self) -> str:
        return self.type.format(self.default)


def known_properties() -> Iterator[PropertyInfo]:
    """The core's properties (plugins declare theirs: ``plugin_properties``)."""
    for f in fields(Settings):
        if "property" not in f.metadata:
            continue
        yield PropertyInfo(
            name=f.metadata["property"],
            attribute=f.name,
            type=f.metadata["type"],
            default=f.default,
            description=f.metadata["description"],
        )


#: property name -> Settings attribute, for the core's properties
_CORE_ATTRIBUTES: dict[str, str] = {}


class ConfigError(Exception):
    """Configuration that stops the server: every problem found, one per line, and the
    warnings (unknown properties) found beside them, so that none is hidden."""

    def __init__(self, problems: list[str], warnings: list[str] | None = None) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        self.warnings = list(warnings or [])


def parse_properties(raw: dict[str, str], source: str,
                     declared: Sequence[tuple[str, Property]] | None = None,
                     ) -> tuple[Settings, list[str]]:
    """Turn raw properties into Settings.

    ``declared``: the plugins' properties (``plugin_properties``), when the plugins are
    known; with None they are resolved later (``Settings.with_plugins``, by the server
    once it has loaded them), and what is not the core's is kept (``others``), unwarned, until then.
    Returns the settings and the warnings (unknown properties, with the nearest known
    name). Raises ConfigError naming ``source``, the property and what is wrong for
    every bad value, carrying the warnings too.
    """
    by_name = {info.name: info for info in known_properties()}
    values: dict[str, Any] = {}
    problems: list[str] = []
    others: dict[str, str] = {}
    for name, text in raw.items():
        info = by_name.get(name)
        if info is None:
            others[name] = text
            continue
        try:
            values[info.attribute] = info.type.parse(text)
        except ValueError as error:
            problems.append(f"{source}: {name}={text}: {error}")
    problems += [f"{source}: {problem}" for problem in _inconsistencies(values)]
    settings = Settings(**values, others=others, source=source)
    warnings: list[str] = []
    if declared is not None:
        try:
            settings, warnings = settings.with_plugins(declared)
        except ConfigError as error:
            raise ConfigError(problems + error.problems, error.warnings) from None
    if problems:
        raise ConfigError(problems, warnings)
    return settings, warnings


def _parse_declared(raw: Mapping[str, str], declared: Sequence[tuple[str, Property]],
                    source: str) -> tuple[dict[str, Any], list[str], list[str]]:
    """(values of the declared properties, problems, names of raw ones nobody declares)."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for _, prop_ in declared:
        text = raw.get(prop_.name)
        if text is None:
            values[prop_.name] = prop_.default
            continue
        try:
            values[prop_.name] = prop_.type.parse(text)
        except ValueError as error:
            problems.append(f"{source}: {prop_.name}={text}: {error}")
    for _, prop_ in declared:
        if values.get(prop_.name):
            problems += [f"{source}: {needed}: required when {prop_.name}={raw.get(prop_.name)}"
                         for needed in prop_.requires if not values.get(needed)]
    names = {p.name for _, p in declared}
    return values, problems, [name for name in raw if name not in names]


def _inconsistencies(values: dict[str, Any]) -> Iterator[str]:
    """Properties that are valid alone but not together (by attribute, as parsed)."""
    settings = Settings(**values)
    if bool(settings.tls_certificate) != bool(settings.tls_private_key):
        yield "tls_certificate and tls_private_key must be set together"
    if bool(settings.rest_api_user) != bool(settings.rest_api_password):
        yield "rest_api_user and rest_api_password must be set together"
    ports = {
        "ws.port": settings.ws_port,
        "http.port": settings.http_port,
    }
    if settings.tls_certificate:
        ports.update({"wss.port": settings.wss_port, "https.port": settings.https_port})
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if port and port in seen:
            yield f"{name}={port}: already used by {seen[port]}"
        seen.setdefault(port, name)


def _unknown_property(source: str, name: str, known: list[str]) -> str:
    nearest = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"; did you mean {nearest[0]}?" if nearest else ""
    return f"{source}: unknown property {name}{hint} (ignored)"


def render_default_properties(declared: Sequence[tuple[str, Property]] = ()) -> str:
    """The commented default conf/server.properties (``hookcast config --defaults``):
    the core's properties, then each plugin's (``declared``)."""
    lines = [
        "# hookcast server properties (WCS names where WCS has the property).",
        "# Every property hookcast knows is listed with its default value;",
        "# `hookcast config --list` prints the same table, `hookcast config --check` validates.",
        "",
    ]
    for info in known_properties():
        lines.append(f"# {info.description} [{info.type.name}]")
        lines.append(f"{info.name}={info.default_text}")
        lines.append("")
    plugin = None
    for name, prop_ in declared:
        if name != plugin:
            plugin = name
            lines.append(f"# --- plugin {name} " + "-" * max(3, 70 - len(name)))
            lines.append("")
        lines.append(f"# {prop_.description} [{prop_.type.name}]")
        lines.append(f"{prop_.name}={prop_.default_text}")
        lines.append("")
    return "\n".join(lines)


def read_settings(path: Path, declared: Sequence[tuple[str, Property]] | None = None,
                  ) -> tuple[Settings, list[str]]:
    """Read ``path`` (a missing file means all defaults): the settings and the warnings
    (unknown properties, with the nearest known name), the plugins' properties resolved
    when ``declared`` (see parse_properties). Raises ConfigError."""
    raw: dict[str, str] = {}
    if path.exists():
        try:
            with path.open(encoding="utf-8") as handle:
                raw = javaproperties.load(handle)
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise ConfigError([f"{path}: cannot be read: {error}"]) from error
    return parse_properties(raw, str(path), declared)


def load_settings(path: Path) -> Settings:
    """Read ``path`` (a missing file means all defaults); the plugins' properties are
    resolved, and unknown ones warned about, once the server has loaded the plugins."""
    if not path.exists():
        log.info("%s not found, using default settings", path)
    settings, _ = read_settings(path)
    return settings


_CORE_ATTRIBUTES.update({info.name: info.attribute for info in known_properties()})
