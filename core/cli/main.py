"""The ``hookcast`` command: serve, init, config, plugins, streams, terminate, apps,
app-rest-method, pull, push, records, vod, hooks."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from hookcast.bus import HookBus
from hookcast.cli import apps as apps_cli
from hookcast.cli import rest_commands
from hookcast.cli.rest_client import (
    RestCallError,
    Unreachable,
    call,
    format_streams,
    http_url,
    is_stream_list,
    message_of,
    none_found,
    not_the_rest_api,
    parse_bool,
)
from hookcast.cli.workers import refusal, supervise, worker_count, worker_settings
from hookcast.config.apps import load_applications
from hookcast.config.home import Home
from hookcast.config.properties import Property
from hookcast.config.settings import (
    ConfigError,
    Settings,
    known_properties,
    media_address_problem,
    read_settings,
    render_default_properties,
    server_url,
)
from hookcast.config.skeleton import HomeExists, init_home
from hookcast.loader import PluginLoader
from hookcast.server import StartupError, serve
from hookcast.untrusted import SafeFormatter
from hookcast.version import __version__

log = logging.getLogger("hookcast")

#: seconds between a worker's checks that its supervisor is still there
ORPHAN_CHECK = 1.0

URL_HELP = "the server's HTTP URL, http://host:port (default: from the home's conf/)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hookcast", description="WebRTC media server")
    parser.add_argument("--version", action="version", version=f"hookcast {__version__}")
    home = argparse.ArgumentParser(add_help=False)
    home.add_argument(
        "--home", help="server home (conf/, media/, records/, hooks/, plugins/); "
        "default $HOOKCAST_HOME or the current directory",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", parents=[home], help="run the server")
    serve_cmd.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    serve_cmd.add_argument(
        "--workers", type=worker_count, default=1, metavar="N",
        help="worker processes sharing the public ports (auto: one per core); more than "
        "one needs cluster_redis_url (default 1: this process serves alone)",
    )
    # a worker of `serve --workers N`, as its supervisor starts it
    serve_cmd.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    config = commands.add_parser("config", parents=[home], help="show or check configuration")
    group = config.add_mutually_exclusive_group(required=True)
    group.add_argument("--list", action="store_true", help="every property: type, default, meaning")
    group.add_argument("--check", action="store_true", help="validate conf/ and exit")
    group.add_argument(
        "--defaults", action="store_true", help="print a commented default server.properties"
    )
    init = commands.add_parser("init", help="write a new server home (never overwrites a file)")
    init.add_argument("dir", nargs="?", help="the folder (created if missing); default: --home")
    init.add_argument("--home", help=argparse.SUPPRESS)
    plugins = commands.add_parser(
        "plugins", parents=[home], help="the running server's plugins, hooks and load failures"
    )
    plugins.add_argument("--url", type=http_url, help=URL_HELP)
    server = argparse.ArgumentParser(add_help=False, parents=[home])
    server.add_argument("--url", type=http_url, help=URL_HELP)
    streams = commands.add_parser(
        "streams", parents=[server], help="list a running server's streams"
    )
    streams.add_argument("--json", action="store_true", help="print the REST answer as JSON")
    terminate = commands.add_parser(
        "terminate", parents=[server], help="stop the streams matching every filter given"
    )
    terminate.add_argument("--name", help="stream name")
    terminate.add_argument("--published", type=parse_bool, help="true: publishers, false: players")
    terminate.add_argument("--status", help="e.g. PUBLISHING, PLAYING")
    terminate.add_argument(
        "--media-session-id", action="append", dest="ids", help="repeat for several"
    )
    terminate.add_argument("--all", action="store_true", help="stop every stream (no filter)")
    apps_cli.add_parsers(commands, home)
    rest_commands.add_parsers(commands, server)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status. When the reader of the output goes
    away (``hookcast config --list | head``) the command ends quietly with status 1,
    the recipe of the Python documentation (signal module, "Note on SIGPIPE")."""
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        # What is still buffered would fail again when Python flushes it at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            os.dup2(devnull, stream.fileno())
        os.close(devnull)
        return 1


def _run(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    level = getattr(args, "log_level", "WARNING")
    worker = getattr(args, "worker", None)
    handler = logging.StreamHandler()
    # client strings reach log messages: escaped and cut, they cannot forge or bloat a line;
    # a worker's lines say which it is (the workers share their supervisor's output)
    who = "" if worker is None else f"w{worker} "
    handler.setFormatter(SafeFormatter(f"%(asctime)s {who}%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # aioice logs every candidate pair's every state at INFO: WARNING unless debugging
        logging.getLogger("aioice").setLevel(logging.WARNING)
    home = Home.locate(getattr(args, "dir", None) or args.home)
    try:
        return _command(args, home)
    except ConfigError as error:
        for warning in error.warnings:
            print(f"hookcast: warning: {warning}", file=sys.stderr)
        for problem in error.problems:
            print(f"hookcast: {problem}", file=sys.stderr)
        return 2
    except apps_cli.AppsError as error:
        print(f"hookcast: {error}", file=sys.stderr)
        return 2
    except (StartupError, RestCallError) as error:
        print(f"hookcast: {error}", file=sys.stderr)
        return 1


def _command(args: argparse.Namespace, home: Home) -> int:
    if args.command == "init":
        return _init(home)
    if args.command == "config" and args.list:
        return _config_list(home)
    if args.command == "config" and args.defaults:
        print(render_default_properties(_declared(home)), end="")
        return 0
    if not home.root.is_dir():
        print(f"hookcast: the server home {home.root} does not exist; "
              f"create one with: hookcast init {home.root}", file=sys.stderr)
        return 2
    if args.command in ("apps", "app-rest-method"):
        print(apps_cli.run(args, home))
        return 0
    if args.command == "config":
        return _config_check(home)
    if args.command == "serve":
        try:  # the core's properties; the server resolves its plugins' and warns
            settings, _ = read_settings(home.properties_file)
        except ConfigError:
            _load(home)  # loads the plugins too, to name every problem and warning
            raise
        load_applications(home.apps_file)
        return _serve(home, settings, args.workers, args.worker, args.log_level)
    settings, _ = read_settings(home.properties_file)  # what a client command needs
    load_applications(home.apps_file)
    if args.command == "plugins":
        return _plugins(args, home, settings)
    if args.command == "streams":
        return _streams(args, settings)
    if args.command == "terminate":
        return _terminate(args, settings)
    base = args.url or server_url(settings)
    return rest_commands.run(args, rest_commands.Rest(base, settings))


def _declared(home: Home, disabled: tuple[str, ...] = ()) -> list[tuple[str, Property]]:
    """The properties the plugins declare (``plugin_properties``): the built-in and
    installed ones, and the home's drop-ins when the home has any, but the ``disabled``
    ones (``disabled_plugins``)."""
    bus = HookBus()
    PluginLoader(bus, home.plugins, disabled).load_all()
    return bus.plugin_properties()


def _config_list(home: Home) -> int:
    for info in known_properties():
        print(f"{info.name}={info.default_text}")
        print(f"    {info.type.name}: {info.description}")
    for plugin, declared in _declared(home):
        print(f"{declared.name}={declared.default_text}")
        print(f"    {declared.type.name}: {declared.description} (plugin {plugin})")
    return 0


def _load(home: Home) -> tuple[Settings, list[str]]:
    """The home's settings, the plugins' properties known (the built-in, installed and
    drop-in plugins but the disabled ones), and the warnings (unknown properties): a
    ConfigError lists every problem with every warning beside them."""
    try:
        core, _ = read_settings(home.properties_file)
        disabled = core.disabled_plugins
    except ConfigError:
        disabled = ()
    try:
        declared = _declared(home, disabled)
    except ValueError as error:  # two plugins declare one property
        raise ConfigError([f"{home.plugins}: {error}"]) from None
    return read_settings(home.properties_file, declared)


def _config_check(home: Home) -> int:
    """What ``serve`` checks before it listens, every problem at once: the properties,
    apps.json, the media address (status 2, the warnings listed with them). Unknown
    properties are warnings, as ``serve`` starts with them: listed, status 0."""
    problems: list[str] = []
    warnings: list[str] = []
    try:
        settings, warnings = _load(home)
        problems += _media_address_problems(home, settings)
    except ConfigError as error:
        problems += error.problems
        warnings += error.warnings
    try:
        load_applications(home.apps_file)
    except ConfigError as error:
        problems += error.problems
    if problems:
        raise ConfigError(problems, warnings)
    for warning in warnings:
        print(f"hookcast: warning: {warning}", file=sys.stderr)
    count = len(warnings)
    note = f" ({count} warning{'' if count == 1 else 's'})" if count else ""
    print(f"{home.conf}: configuration is valid{note}")
    return 0


def _media_address_problems(home: Home, settings: Settings) -> list[str]:
    problem = media_address_problem(settings.ip)
    return [] if problem is None else [f"{home.properties_file}: {problem}"]


def _init(home: Home) -> int:
    try:
        written = init_home(home, _declared(home))
    except HomeExists as error:
        print(f"hookcast: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    print(f"start it with: hookcast serve --home {home.root}")
    return 0


def _plugins(args: argparse.Namespace, home: Home, settings: Settings) -> int:
    """What the running server has loaded; a dry load here when no server answers."""
    base = args.url or server_url(settings)
    path = "/rest-api/plugins/find_all"
    try:
        status, report = call(base, path, {}, settings)
    except Unreachable as error:
        print(f"{error}; loading the plugins here instead, to check them "
              "(a running server may have loaded others)", file=sys.stderr)
        report = _dry_load(home, settings)
    else:
        if status != 200:
            print(f"hookcast: {message_of(report)}", file=sys.stderr)
            return 1
        if not (isinstance(report, dict) and all(
                isinstance(report.get(key), list) for key in ("plugins", "disabled", "failures"))):
            raise not_the_rest_api(base, path, f"{status} JSON of another shape")
    for plugin in report["plugins"]:
        print(f"{plugin['name']}  [{plugin['source']}]")
        print(f"    hooks: {', '.join(plugin['hooks']) or '(none)'}")
    for name in report["disabled"]:
        print(f"{name}  [disabled by disabled_plugins]")
    for failure in report["failures"]:
        print(f"failed: {failure['problem']}")
    return 1 if report["failures"] else 0


def _dry_load(home: Home, settings: Settings) -> dict[str, Any]:
    loader = PluginLoader(HookBus(), home.plugins, settings.disabled_plugins)
    dry = loader.load_all()
    return {
        "plugins": [{"name": r.name, "source": r.source, "hooks": r.hooks} for r in dry.loaded],
        "disabled": dry.disabled,
        "failures": [{"problem": p} for p in dry.problems],
    }


def _streams(args: argparse.Namespace, settings: Settings) -> int:
    base = args.url or server_url(settings)
    path = "/rest-api/stream/find_all"
    status, body = call(base, path, None, settings)
    if none_found(status, body):
        body = []
    elif status != 200:
        print(f"hookcast: {message_of(body)}", file=sys.stderr)
        return 1
    if not is_stream_list(body):
        raise not_the_rest_api(base, path, f"{status} JSON that is not a list of streams")
    print(json.dumps(body, indent=2) if args.json else format_streams(body))
    return 0


def _terminate(args: argparse.Namespace, settings: Settings) -> int:
    filters: dict[str, object] = {
        key: value for key, value in (
            ("name", args.name), ("published", args.published), ("status", args.status),
            ("mediaSessionIds", args.ids),
        ) if value is not None
    }
    if not filters and not args.all:
        print("hookcast: no filter given; add --all to stop every stream", file=sys.stderr)
        return 2
    base = args.url or server_url(settings)
    path = "/rest-api/stream/terminate"
    status, body = call(base, path, filters, settings)
    if none_found(status, body) and not filters:
        print("no streams")
        return 0
    if status != 200:
        print(f"hookcast: {message_of(body)}", file=sys.stderr)
        return 1
    terminated = body.get("terminated") if isinstance(body, dict) else None
    if not isinstance(terminated, list):
        raise not_the_rest_api(base, path, f"{status} JSON without a terminated list")
    print(f"terminated {len(terminated)} stream(s)")
    return 0


def _serve(home: Home, settings: Settings, workers: int, worker: int | None,
           log_level: str) -> int:
    """Serve alone (one worker), as a worker (``worker``: its index), or supervise
    ``workers`` of them."""
    problems = _media_address_problems(home, settings)
    if problems:
        raise ConfigError(problems)
    if worker is not None:
        log.info("hookcast %s, home %s, worker %d", __version__, home.root, worker)
        trigger = functools.partial(_signal_trigger, os.getppid())
        asyncio.run(serve(home, worker_settings(settings), trigger, worker))
        return 0
    if workers > 1:
        refused = refusal(_load(home)[0], workers)
        if refused is not None:
            print(f"hookcast: {refused}", file=sys.stderr)
            return 2
        log.info("hookcast %s, home %s, %d workers", __version__, home.root, workers)
        return supervise(home, settings, workers, log_level)
    log.info("hookcast %s, home %s", __version__, home.root)
    asyncio.run(serve(home, settings, _signal_trigger))
    return 0


async def _signal_trigger(parent: int | None = None) -> None:
    """Return on the first SIGINT or SIGTERM, or (a worker, given its supervisor's pid
    ``parent``) once that process is gone; a second signal forces the process out."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(130)
        log.info("%s: shutting down (send it again to force)", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    while parent is not None and not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), ORPHAN_CHECK)
        except TimeoutError:
            if os.getppid() != parent:
                log.warning("the supervisor (pid %d) is gone: shutting down", parent)
                stop.set()
    await stop.wait()


if __name__ == "__main__":
    sys.exit(main())
