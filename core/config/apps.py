"""REST-hook applications from conf/apps.json.

An application has a name, an ``appKey`` the client names in its ``connection``
message, the URL its hooks are POSTed under (``<url>/<method>``) and the hook
methods enabled for it. A newly added application has no methods enabled, as in WCS.
It may declare its own ``restClientConfig`` (hookcast's addition): the defaults its
sessions start from, which the backend's ``connect`` reply can override field by field
(hookcast.config.rest_client).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hookcast.config.rest_client import MethodConfig, did_you_mean, parse_rest_client_config
from hookcast.config.settings import ConfigError

#: Every hook method an application may enable, in WCS spelling.
REST_METHODS: tuple[str, ...] = (
    "connect",
    "ConnectionStatusEvent",
    "publishStream",
    "unPublishStream",
    "playStream",
    "stopStream",
    "StreamStatusEvent",
    "StreamKeepAliveEvent",
    "RecordingStatusEvent",  # hookcast's: a recording file started or finished
)

DEFAULT_APP_KEY = "defaultApp"


@dataclass(frozen=True)
class Application:
    """``url`` is absolute, or a path (``/apps/EchoApp``) on this server's HTTP port.
    ``rest_client_config``: method -> the entry its sessions start from (apps.json's
    ``restClientConfig``; a method not named has WCS's defaults)."""

    name: str
    app_key: str
    url: str
    methods: frozenset[str]
    rest_client_config: Mapping[str, MethodConfig] = field(default_factory=dict)

    def method_url(self, method: str, local: str) -> str:
        """Where ``method`` is POSTed; ``local`` is this server's ``http://host:port``."""
        base = local + self.url if self.url.startswith("/") else self.url
        return f"{base.rstrip('/')}/{method}"

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "name": self.name,
            "appKey": self.app_key,
            "url": self.url,
            "methods": [m for m in REST_METHODS if m in self.methods],
        }
        if self.rest_client_config:
            document["restClientConfig"] = {
                m: c.to_json() for m, c in sorted(self.rest_client_config.items())}
        return document


@dataclass(frozen=True)
class Applications:
    """The validated contents of apps.json, looked up by appKey."""

    apps: tuple[Application, ...]

    def by_key(self, app_key: str) -> Application | None:
        return next((app for app in self.apps if app.app_key == app_key), None)

    def by_name(self, name: str) -> Application | None:
        return next((app for app in self.apps if app.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return {"apps": [app.to_json() for app in self.apps]}


#: The built-in echo application, as a URL relative to this server's HTTP port.
ECHO_APP_URL = "/apps/EchoApp"


def default_applications() -> Applications:
    """``defaultApp`` pointing at the built-in echo application of this server."""
    return Applications((
        Application(
            name="defaultApp",
            app_key=DEFAULT_APP_KEY,
            url=ECHO_APP_URL,
            methods=frozenset(m for m in REST_METHODS
                              if m not in ("StreamKeepAliveEvent", "RecordingStatusEvent")),
        ),
    ))


def parse_applications(document: Any, source: str) -> Applications:
    """Validate a decoded apps.json; every problem names the entry and the field."""
    if not isinstance(document, Mapping) or not isinstance(document.get("apps"), list):
        raise ConfigError([f'{source}: expected an object {{"apps": [...]}}'])
    problems: list[str] = []
    apps = [
        app
        for index, entry in enumerate(document["apps"])
        if (app := _parse_app(entry, source, index, problems)) is not None
    ]
    problems += _duplicates(apps, source)
    if problems:
        raise ConfigError(problems)
    return Applications(tuple(apps))


FIELDS = ("name", "appKey", "url", "methods", "restClientConfig")


def _parse_app(entry: Any, source: str, index: int, problems: list[str]) -> Application | None:
    where = f"{source}: apps[{index}]"
    if not isinstance(entry, Mapping):
        problems.append(f"{where}: expected an object with name, appKey, url, methods")
        return None
    before = len(problems)
    name = _text(entry, "name", where, problems)
    app_key = _text(entry, "appKey", where, problems)
    url = _text(entry, "url", where, problems)
    if url and not url.startswith("/") and urlsplit(url).scheme not in ("http", "https"):
        problems.append(
            f"{where}.url: expected an http:// or https:// URL (or /path on this server), "
            f"got {url!r}"
        )
    methods = entry.get("methods", [])
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        problems.append(f"{where}.methods: expected a list of method names")
        methods = []
    for method in methods:
        if method not in REST_METHODS:
            problems.append(
                f"{where}.methods: unknown method {method!r}; valid: {', '.join(REST_METHODS)}"
            )
    unknown = sorted(set(entry) - set(FIELDS))
    if unknown:
        problems.append(f"{where}: unknown field {unknown[0]!r}{did_you_mean(unknown[0], FIELDS)}")
    named = f"{source}: application {name!r} (apps[{index}])." if name else f"{where}."
    config = parse_rest_client_config(entry.get("restClientConfig", {}), REST_METHODS,
                                      named, problems)
    if len(problems) > before:
        return None
    return Application(name, app_key, url, frozenset(methods), config)


def _text(entry: Mapping[str, Any], key: str, where: str, problems: list[str]) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}.{key}: expected a non-empty string")
        return ""
    return value


def _duplicates(apps: Iterable[Application], source: str) -> list[str]:
    problems: list[str] = []
    names: set[str] = set()
    keys: set[str] = set()
    for app in apps:
        if app.name in names:
            problems.append(f"{source}: application name {app.name!r} is used twice")
        if app.app_key in keys:
            problems.append(f"{source}: appKey {app.app_key!r} is used twice")
        names.add(app.name)
        keys.add(app.app_key)
    return problems


def load_applications(path: Path) -> Applications:
    """Read apps.json; a missing file means just ``defaultApp``."""
    if not path.exists():
        return default_applications()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([f"{path}: cannot be read: {error}"]) from error
    except json.JSONDecodeError as error:
        raise ConfigError([f"{path}:{error.lineno}: invalid JSON: {error.msg}"]) from error
    return parse_applications(document, str(path))


def save_applications(path: Path, apps: Applications) -> None:
    """Write apps.json atomically: a reader (the running server) sees the old file or
    the new one, never half of one. The file keeps its mode, and its owner and group
    where this process may set them (a server running as another user still reads
    it); a new file is 0644 less the umask."""
    parse_applications(apps.to_json(), str(path))  # never write what would not load
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        original: os.stat_result | None = path.stat()
    except FileNotFoundError:
        original = None
    temporary, fd = _create_beside(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            if original is not None:
                _keep_owner_and_mode(handle.fileno(), original)
            json.dump(apps.to_json(), handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _create_beside(path: Path) -> tuple[Path, int]:
    """A new file next to ``path`` (``.apps.<random>.json``), open for writing, created
    0644 less the umask as any new file (mkstemp would make it 0600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(10):
        candidate = path.with_name(f".apps.{secrets.token_hex(8)}.json")
        try:
            return candidate, os.open(candidate, flags, 0o644)
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file beside {path}")


def _keep_owner_and_mode(fd: int, original: os.stat_result) -> None:
    """Give the new file ``original``'s owner and group, or its group alone, or neither,
    as far as this process may; then its mode (set last: chown may clear set-id bits)."""
    for uid in (original.st_uid, -1):
        try:
            os.fchown(fd, uid, original.st_gid)
            break
        except PermissionError:
            continue
    os.fchmod(fd, stat.S_IMODE(original.st_mode))
