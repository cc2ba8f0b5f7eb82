"""The hook bus: registers plugins and dispatches hooks by their kind.

pluggy calls implementations but never awaits them, so the bus calls each
implementation itself: it awaits coroutines under the hook timeout, isolates
failures (one plugin's exception never reaches another plugin or the caller) and
counts every outcome. Call sites use the typed facade methods at the end; nothing
outside this module touches ``pm.hook``.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

from hookcast import hookspecs
from hookcast.config.properties import Property, Rotation
from hookcast.config.settings import known_properties
from hookcast.engine.media import MediaSource
from hookcast.events import Amend, Refuse, Terminate, Verdict
from hookcast.hookspecs import KINDS

if TYPE_CHECKING:
    from aiohttp import web

    from hookcast.config.home import Home
    from hookcast.config.settings import Settings
    from hookcast.events import RecordingInfo, ServerInfo, SessionInfo, StreamInfo

log = logging.getLogger(__name__)

#: The ``info`` a client sees when a plugin failed while admitting it.
ADMIT_FAILURE = "Failed by error"
#: A plugin object may set this attribute (seconds) to replace ``plugin_hook_timeout``
#: for its own admit and notify hooks (e.g. REST hooks with their own request timeout).
PLUGIN_TIMEOUT = "hookcast_timeout"


class PluginError(Exception):
    """A plugin that cannot be registered; the message names it, the hook and where."""


@dataclass(frozen=True)
class PluginRecord:
    """A registered plugin: its name, where it came from and the hooks it implements."""

    name: str
    source: str
    plugin: object
    hooks: tuple[str, ...]


def _where(function: Any) -> str:
    try:
        return f"{inspect.getsourcefile(function)}:{function.__code__.co_firstlineno}"
    except (TypeError, AttributeError):
        return repr(function)


class HookBus:
    """Owns the plugin manager; one per server."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        #: (hook, plugin, outcome) -> count; outcome is ok, error, timeout or refused.
        self.outcomes: Counter[tuple[str, str, str]] = Counter()
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._records: dict[str, PluginRecord] = {}

    # --- registration ---------------------------------------------------------------

    def register(self, plugin: object, name: str, source: str) -> PluginRecord:
        """Validate and register ``plugin``; raises PluginError and registers nothing."""
        if name in self._records:
            raise PluginError(f"plugin {name} ({source}): a plugin of that name is loaded")
        hooks = tuple(self._validate(plugin, name))
        try:
            self._pm.register(plugin, name=name)
        except pluggy.PluginValidationError as error:
            raise PluginError(f"plugin {name} ({source}): {error}") from error
        record = PluginRecord(name, source, plugin, hooks)
        self._records[name] = record
        return record

    def unregister(self, name: str) -> PluginRecord | None:
        record = self._records.pop(name, None)
        if record is not None:
            self._pm.unregister(name=name)
        return record

    def plugins(self) -> list[PluginRecord]:
        return list(self._records.values())

    def _validate(self, plugin: object, name: str) -> Iterator[str]:
        for attribute in dir(plugin):
            options = self._pm.parse_hookimpl_opts(plugin, attribute)
            if options is None:
                continue
            function = getattr(plugin, attribute)
            where = f"plugin {name} ({_where(function)})"
            kind = KINDS.get(attribute)
            if kind is None:
                if options.get("optionalhook"):
                    continue
                nearest = difflib.get_close_matches(attribute, KINDS, n=1)
                hint = f"; did you mean {nearest[0]}?" if nearest else ""
                raise PluginError(f"{where}: {attribute} is not a hookcast hook{hint}")
            if options.get("hookwrapper") or options.get("wrapper"):
                raise PluginError(f"{where}: {attribute}: hook wrappers are not supported")
            if kind in ("decide", "collect") and inspect.iscoroutinefunction(function):
                raise PluginError(
                    f"{where}: {attribute} is a {kind} hook and must be a plain function, "
                    "not async def"
                )
            yield attribute

    # --- dispatch -------------------------------------------------------------------

    def _impls(self, hook: str) -> list[pluggy.HookImpl]:
        """Implementations in pluggy's call order (last registered first)."""
        caller = getattr(self._pm.hook, hook)
        return list(reversed(caller.get_hookimpls()))

    async def _run(
        self, hook: str, impl: pluggy.HookImpl, kwargs: dict[str, Any]
    ) -> tuple[bool, Any]:
        """Call one implementation; (True, result) or (False, None) after logging."""
        name = impl.plugin_name
        timeout = getattr(impl.plugin, PLUGIN_TIMEOUT, None) or self.timeout
        try:
            result = impl.function(*(kwargs[arg] for arg in impl.argnames))
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, timeout)
        except TimeoutError:
            log.error("plugin %s: %s took longer than %gs, skipped", name, hook, timeout)
            self.outcomes[(hook, name, "timeout")] += 1
            return False, None
        except Exception:
            log.exception("plugin %s: %s raised", name, hook)
            self.outcomes[(hook, name, "error")] += 1
            return False, None
        self.outcomes[(hook, name, "ok")] += 1
        return True, result

    async def _notify(self, hook: str, **kwargs: Any) -> list[Any]:
        impls = self._impls(hook)
        runs = await asyncio.gather(*(self._run(hook, impl, kwargs) for impl in impls))
        return [result for ok, result in runs if ok and result is not None]

    async def _admit(self, hook: str, **kwargs: Any) -> Verdict:
        impls = self._impls(hook)
        runs = await asyncio.gather(*(self._run(hook, impl, kwargs) for impl in impls))
        fields: dict[str, Any] = {}
        refusal: str | None = None
        for impl, (ok, result) in zip(impls, runs, strict=True):
            if ok and not isinstance(result, Refuse | Amend | None):
                log.error(
                    "plugin %s: %s returned %r; expected None, Amend or Refuse",
                    impl.plugin_name, hook, result,
                )
                self.outcomes[(hook, impl.plugin_name, "error")] += 1
                ok = False
            if not ok:
                refusal = refusal or ADMIT_FAILURE
            elif isinstance(result, Refuse):
                self.outcomes[(hook, impl.plugin_name, "refused")] += 1
                refusal = refusal or result.reason
            elif isinstance(result, Amend):
                fields.update(result.fields)
        if refusal is not None:
            return Verdict(admitted=False, reason=refusal)
        return Verdict(admitted=True, fields=fields)

    def _decide(self, hook: str, **kwargs: Any) -> Any:
        for impl in self._impls(hook):
            name = impl.plugin_name
            try:
                result = impl.function(*(kwargs[arg] for arg in impl.argnames))
            except Exception:
                log.exception("plugin %s: %s raised; asking the next plugin", name, hook)
                self.outcomes[(hook, name, "error")] += 1
                continue
            self.outcomes[(hook, name, "ok")] += 1
            if result is not None:
                return result
        return None

    def _collect(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Every implementation's result with its plugin name; exceptions propagate."""
        return [
            (impl.plugin_name, impl.function(*(kwargs[arg] for arg in impl.argnames)))
            for impl in self._impls(hook)
        ]

    # --- the facade: one typed method per hook ------------------------------------------

    async def after_server_start(self, server: ServerInfo) -> None:
        await self._notify("after_server_start", server=server)

    async def before_server_stop(self, server: ServerInfo) -> None:
        await self._notify("before_server_stop", server=server)

    async def after_server_stop(self, server: ServerInfo) -> None:
        await self._notify("after_server_stop", server=server)

    def plugin_properties(self) -> list[tuple[str, Property]]:
        """(plugin name, property) for every property a plugin declares, in plugin
        order. Raises ValueError naming both when two declare one name (or one the
        core has)."""
        owners = {info.name: "the core" for info in known_properties()}
        found: list[tuple[str, Property]] = []
        for name, declared in self._collect("plugin_properties"):
            for prop in declared or ():
                if not isinstance(prop, Property):
                    raise ValueError(f"plugin {name}: plugin_properties returned "
                                     f"{type(prop).__name__}, not a hookcast.properties.Property")
                owner = owners.setdefault(prop.name, f"plugin {name}")
                if owner != f"plugin {name}":
                    raise ValueError(f"plugin {name}: property {prop.name} is declared "
                                     f"by {owner} already")
                found.append((name, prop))
        return found

    def register_rest_routes(
        self, settings: Settings, home: Home
    ) -> list[tuple[str, Iterable[web.RouteDef]]]:
        """(plugin name, its routes) for every plugin that contributed routes."""
        results = self._collect("register_rest_routes", settings=settings, home=home)
        return [(name, routes) for name, routes in results if routes is not None]

    def prometheus_metrics(self) -> list[Any]:
        """Every plugin's metric families for this scrape; a failing plugin is skipped."""
        families: list[Any] = []
        for impl in self._impls("prometheus_metrics"):
            try:
                contributed: Any = impl.function()
                families.extend(contributed or ())
            except Exception:
                log.exception("plugin %s: prometheus_metrics raised", impl.plugin_name)
                self.outcomes[("prometheus_metrics", impl.plugin_name, "error")] += 1
        return families

    async def before_connect(self, session: SessionInfo) -> Verdict:
        return await self._admit("before_connect", session=session)

    async def after_session_connect(self, session: SessionInfo) -> None:
        await self._notify("after_session_connect", session=session)

    async def after_session_disconnect(self, session: SessionInfo, reason: str) -> None:
        await self._notify("after_session_disconnect", session=session, reason=reason)

    async def before_publish(self, session: SessionInfo, stream: StreamInfo) -> Verdict:
        return await self._admit("before_publish", session=session, stream=stream)

    async def before_play(self, session: SessionInfo, stream: StreamInfo) -> Verdict:
        return await self._admit("before_play", session=session, stream=stream)

    async def after_stream_status(self, stream: StreamInfo, previous_status: str | None) -> None:
        await self._notify("after_stream_status", stream=stream, previous_status=previous_status)

    async def on_stream_keep_alive(self, stream: StreamInfo) -> Terminate | None:
        """The first ``Terminate`` any plugin returned, or None to keep the stream."""
        results = await self._notify("on_stream_keep_alive", stream=stream)
        return next((r for r in results if isinstance(r, Terminate)), None)

    def record_file_name(
        self, stream: StreamInfo, template: str, variables: dict[str, str]
    ) -> str | None:
        result = self._decide(
            "record_file_name", stream=stream, template=template, variables=dict(variables)
        )
        return result if isinstance(result, str) and result else None

    def record_rotation_policy(
        self, stream: StreamInfo, configured: Rotation | None, requested: Rotation | None
    ) -> Rotation | None:
        """The rotation a plugin chose; None (never cut) when none chose or it chose
        ``Rotation()``."""
        result = self._decide("record_rotation_policy", stream=stream, configured=configured,
                              requested=requested)
        if isinstance(result, Rotation) and (result.seconds or result.megabytes):
            return result
        return None

    async def on_record_started(self, recording: RecordingInfo) -> None:
        await self._notify("on_record_started", recording=recording)

    async def on_record_finished(self, recording: RecordingInfo) -> None:
        await self._notify("on_record_finished", recording=recording)

    def media_source_for_uri(self, uri: str, home: Home,
                             loop: bool | None = None) -> MediaSource | None:
        result: MediaSource | None = self._decide("media_source_for_uri", uri=uri, home=home,
                                                  loop=loop)
        return result  # checked against the MediaSource contract by the engine's Sources
