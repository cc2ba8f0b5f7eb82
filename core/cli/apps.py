"""``hookcast apps`` and ``hookcast app-rest-method``: edit conf/apps.json as WCS's
CLI edits its applications. Every edit is validated and written atomically; a running
server picks it up within a second."""

from __future__ import annotations

import argparse
from dataclasses import replace

from hookcast.config.apps import (
    REST_METHODS,
    Application,
    Applications,
    load_applications,
    save_applications,
)
from hookcast.config.home import Home


class AppsError(Exception):
    """An edit that cannot be made; the message says why."""


def add_parsers(commands: argparse._SubParsersAction, home: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    apps = commands.add_parser("apps", parents=[home], help="show or edit REST-hook applications")
    verbs = apps.add_subparsers(dest="verb", required=True)
    show = verbs.add_parser("show", parents=[home], help="list applications")
    show.add_argument("-d", "--detail", action="store_true", help="with their enabled methods")
    add = verbs.add_parser("add", parents=[home], help="add an application (no methods enabled)")
    add.add_argument("name")
    add.add_argument("key")
    add.add_argument("url")
    update = verbs.add_parser("update", parents=[home], help="change an application")
    update.add_argument("-l", "--url", help="new hook URL (http(s)://... or /path on this server)")
    update.add_argument("-k", "--key", help="new appKey")
    update.add_argument("name")
    remove = verbs.add_parser("remove", parents=[home], help="remove an application")
    remove.add_argument("name")
    methods = commands.add_parser(
        "app-rest-method", parents=[home], help="show or change an application's hook methods"
    )
    method_verbs = methods.add_subparsers(dest="verb", required=True)
    method_show = method_verbs.add_parser("show", parents=[home], help="enabled methods")
    method_show.add_argument("key")
    for verb in ("add", "remove"):
        parser = method_verbs.add_parser(verb, parents=[home], help=f"{verb} methods")
        parser.add_argument("-a", "--all", action="store_true", help="every method")
        parser.add_argument("key")
        parser.add_argument("method", nargs="?")


def run(args: argparse.Namespace, home: Home) -> str:
    """Carry out one apps/app-rest-method command; returns what to print."""
    path = home.apps_file
    apps = load_applications(path)
    if args.command == "apps":
        if args.verb == "show":
            return _show(apps, args.detail)
        apps = _edit_apps(apps, args)
    else:
        app = _by_key(apps, args.key)
        if args.verb == "show":
            return "\n".join(m for m in REST_METHODS if m in app.methods) or "(no methods)"
        apps = _replace(apps, app, replace(app, methods=_methods(app, args)))
    save_applications(path, apps)
    return f"{path} updated"


def _show(apps: Applications, detail: bool) -> str:
    lines = []
    for app in apps.apps:
        lines.append(f"{app.name}  key={app.app_key}  url={app.url}")
        if detail:
            enabled = [m for m in REST_METHODS if m in app.methods]
            lines.append(f"    methods: {', '.join(enabled) or '(none)'}")
            for method, config in sorted(app.rest_client_config.items()):
                fields = ", ".join(f"{k}={v}" for k, v in config.to_json().items() if v)
                lines.append(f"    restClientConfig {method}: {fields}")
    return "\n".join(lines) or "(no applications)"


def _edit_apps(apps: Applications, args: argparse.Namespace) -> Applications:
    if args.verb == "add":
        if apps.by_name(args.name) or apps.by_key(args.key):
            raise AppsError(f"an application named {args.name} or with key {args.key} exists")
        return Applications((*apps.apps, Application(args.name, args.key, args.url, frozenset())))
    if args.verb == "update" and args.url is None and args.key is None:
        raise AppsError(f"apps update {args.name}: nothing to change; "
                        "give --url URL and/or --key KEY")
    app = apps.by_name(args.name)
    if app is None:
        raise AppsError(f"no application named {args.name}")
    if args.verb == "remove":
        return Applications(tuple(a for a in apps.apps if a is not app))
    if args.key and args.key != app.app_key and apps.by_key(args.key):
        raise AppsError(f"appKey {args.key} is used by another application")
    changed = replace(app, url=app.url if args.url is None else args.url,
                      app_key=app.app_key if args.key is None else args.key)
    return _replace(apps, app, changed)


def _by_key(apps: Applications, key: str) -> Application:
    app = apps.by_key(key)
    if app is None:
        raise AppsError(f"no application with key {key}")
    return app


def _methods(app: Application, args: argparse.Namespace) -> frozenset[str]:
    if args.all:
        chosen = set(REST_METHODS)
    elif args.method in REST_METHODS:
        chosen = {args.method}
    elif args.method is None:
        raise AppsError("name a method, or use -a for all")
    else:
        raise AppsError(f"unknown method {args.method}; valid: {', '.join(REST_METHODS)}")
    return frozenset(app.methods | chosen if args.verb == "add" else app.methods - chosen)


def _replace(apps: Applications, old: Application, new: Application) -> Applications:
    return Applications(tuple(new if a is old else a for a in apps.apps))
