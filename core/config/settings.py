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
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import javaproperties

from hookcast.config.properties import (
    Address,
    Boolean,
    Choices,
    CommaList,
    HostPatterns,
    Integer,
    Networks,
    OneOf,
    Port,
    PropertyType,
    RecordNameEncoding,
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
    disable_rest_requests: bool = prop(
        "disable_rest_requests", False, Boolean(), "Send no REST hooks to applications"
    )
    rest_request_timeout: int = prop(
        "rest_request_timeout", 15, Integer(minimum=0, unit="s"),
        "Timeout of one REST hook request; 0 = no timeout",
    )
    rest_hook_send_hash: bool = prop(
        "rest_hook_send_hash", False, Boolean(),
        "Sign REST hook bodies with rest_hook_secret_key (Authorization: WCS <hash>)",
    )
    rest_hook_secret_key: str = prop(
        "rest_hook_secret_key", "", Text(), "Secret key for signed REST hooks"
    )
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
        "Container per video codec (audio-only streams: MP4 with AAC)",
    )
    stream_record_policy: str = prop(
        "stream_record_policy", "template", OneOf(("template", "streamName")),
        "Record file names: from stream_record_policy_template, or the stream name "
        "(plugin record_naming)",
    )
    stream_record_policy_template: str = prop(
        "stream_record_policy_template", "stream-{sessionId}-{mediaSessionId}",
        RecordTemplate(),
        "Record file name template (without extension); {endTime}, {endTimeMillis} and "
        "{duration} are filled in when the file is finished",
    )
    encode_record_name: str = prop(
        "encode_record_name", "", RecordNameEncoding(),
        "Encode record file names in hexadecimal or file-name-safe BASE64",
    )
    exclude_record_name_characters: str = prop(
        "exclude_record_name_characters", "/", Text(),
        "Characters removed from record file names (not applied when they are encoded)",
    )
    record_rotation: Rotation | None = prop(
        "record_rotation", None, RotationType(),
        "Cut recordings into parts of N seconds (20) or N megabytes (20M); empty = never "
        "(plugin record_rotation)",
    )
    on_record_hook_script: str = prop(
        "on_record_hook_script", "hooks/on_record_hook.sh", Text(),
        "Script run with (stream name, file path) when a recording part is finished; "
        "relative to the home; empty = none (plugin record_script)",
    )
    record_hook_concurrency: int = prop(
        "record_hook_concurrency", 4, Integer(minimum=1, unit="scripts"),
        "Record scripts running at once; the others wait in a queue",
    )
    record_hook_timeout: float = prop(
        "record_hook_timeout", 60.0, Seconds(minimum=0.1),
        "A record script still running after this is killed (its process group)",
    )
    on_publish_hook_script: str = prop(
        "on_publish_hook_script", "", Text(),
        "Script run with (stream name, mediaSessionId) when a stream starts publishing "
        "(hookcast; plugin stream_scripts)",
    )
    on_unpublish_hook_script: str = prop(
        "on_unpublish_hook_script", "", Text(),
        "Script run with (stream name, mediaSessionId) when a published stream ends (hookcast)",
    )
    on_play_hook_script: str = prop(
        "on_play_hook_script", "", Text(),
        "Script run with (stream name, mediaSessionId) when a player starts playing (hookcast)",
    )
    on_stop_hook_script: str = prop(
        "on_stop_hook_script", "", Text(),
        "Script run with (stream name, mediaSessionId) when a player stops (hookcast)",
    )
    stream_hook_concurrency: int = prop(
        "stream_hook_concurrency", 4, Integer(minimum=1, unit="scripts"),
        "Publish/unpublish/play/stop scripts running at once; the others wait (hookcast)",
    )
    stream_hook_timeout: float = prop(
        "stream_hook_timeout", 60.0, Seconds(minimum=0.1),
        "A publish/unpublish/play/stop script still running after this is killed (hookcast)",
    )
    media_dir: str = prop(
        "media_dir", "media", Text(),
        "Folder of the files vod:// and vod-live:// play (relative to the home)",
    )
    vod_live_loop: bool = prop(
        "vod_live_loop", False, Boolean(),
        "Loop vod-live:// files when they end (REST /vod/startup loop overrides)",
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

    pull_retry_attempts: int = prop(
        "pull_retry_attempts", 10, Integer(minimum=0, unit="attempts"),
        "Reconnections a pull or push tries after its remote fails or drops, before it "
        "gives up (FAILED); 0: none (hookcast)",
    )
    pull_retry_initial_delay: float = prop(
        "pull_retry_initial_delay", 1.0, Seconds(minimum=0.1),
        "Wait before the first reconnection; it doubles with each failed one (hookcast)",
    )
    pull_retry_max_delay: float = prop(
        "pull_retry_max_delay", 30.0, Seconds(minimum=0.1),
        "Longest wait between two reconnections (hookcast)",
    )
    pull_connect_timeout: float = prop(
        "pull_connect_timeout", 15.0, Seconds(minimum=1),
        "Seconds a pull or push gets to connect to its remote, be accepted and have its "
        "media flowing; longer is a failed attempt (hookcast)",
    )
    pull_tls_ca_file: str = prop(
        "pull_tls_ca_file", "", Text(),
        "PEM file of extra certificate authorities trusted for wss:// pulls and pushes "
        "(beside the system's), relative to the home or absolute (hookcast)",
    )
    pull_allowed_hosts: tuple[str, ...] = prop(
        "pull_allowed_hosts", (), HostPatterns(),
        "Hosts pulls and pushes may connect to: names with * wildcards "
        "(media-*.example.com) and CIDR networks (10.0.0.0/8); an address in the URI "
        "matches the networks, a name the name patterns (it is not resolved to check); "
        "other URIs get 403; empty = any (hookcast)",
    )
    pull_max: int = prop(
        "pull_max", 100, Integer(minimum=1, unit="pulls and pushes"),
        "Pulls and pushes at once (ended ones listed by /pull/find_all count too, until "
        "terminated); beyond it REST answers 503 (hookcast)",
    )

    @classmethod
    def defaults(cls) -> Settings:
        return cls()


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
    for f in fields(Settings):
        yield PropertyInfo(
            name=f.metadata["property"],
            attribute=f.name,
            type=f.metadata["type"],
            default=f.default,
            description=f.metadata["description"],
        )


class ConfigError(Exception):
    """Configuration that stops the server: every problem found, one per line, and the
    warnings (unknown properties) found beside them, so that none is hidden."""

    def __init__(self, problems: list[str], warnings: list[str] | None = None) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        self.warnings = list(warnings or [])


def parse_properties(raw: dict[str, str], source: str) -> tuple[Settings, list[str]]:
    """Turn raw properties into Settings.

    Returns the settings and the warnings (unknown properties, with the nearest
    known name). Raises ConfigError naming ``source``, the property and what is
    wrong for every bad value, carrying the warnings too.
    """
    by_name = {info.name: info for info in known_properties()}
    values: dict[str, Any] = {}
    problems: list[str] = []
    warnings: list[str] = []
    for name, text in raw.items():
        info = by_name.get(name)
        if info is None:
            warnings.append(_unknown_property(source, name, list(by_name)))
            continue
        try:
            values[info.attribute] = info.type.parse(text)
        except ValueError as error:
            problems.append(f"{source}: {name}={text}: {error}")
    if problems:
        raise ConfigError(problems, warnings)
    settings = Settings(**values)
    problems = [f"{source}: {problem}" for problem in _inconsistencies(settings)]
    if problems:
        raise ConfigError(problems, warnings)
    return settings, warnings


def _inconsistencies(settings: Settings) -> Iterator[str]:
    """Properties that are valid alone but not together."""
    if bool(settings.tls_certificate) != bool(settings.tls_private_key):
        yield "tls_certificate and tls_private_key must be set together"
    if bool(settings.rest_api_user) != bool(settings.rest_api_password):
        yield "rest_api_user and rest_api_password must be set together"
    if settings.rest_hook_send_hash and not settings.rest_hook_secret_key:
        yield "rest_hook_secret_key: required when rest_hook_send_hash=true"
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


def render_default_properties() -> str:
    """The commented default conf/server.properties (``hookcast config --defaults``)."""
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
    return "\n".join(lines)


def read_settings(path: Path) -> tuple[Settings, list[str]]:
    """Read ``path`` (a missing file means all defaults): the settings and the warnings
    (unknown properties, with the nearest known name). Raises ConfigError."""
    if not path.exists():
        return Settings(), []
    try:
        with path.open(encoding="utf-8") as handle:
            raw = javaproperties.load(handle)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ConfigError([f"{path}: cannot be read: {error}"]) from error
    return parse_properties(raw, str(path))


def load_settings(path: Path) -> Settings:
    """Read ``path`` (a missing file means all defaults) and log unknown properties."""
    if not path.exists():
        log.info("%s not found, using default settings", path)
    settings, warnings = read_settings(path)
    for warning in warnings:
        log.warning("%s", warning)
    return settings
