"""``hookcast pull``, ``push``, ``records``, ``vod`` and ``hooks``: the REST API's
``/pull/*``, ``/records/*``, ``/vod/*`` and ``/hooks/outbox/*`` from the command line.

They keep the conventions of ``streams`` and ``terminate``: ``list`` prints a table
(``--json``: the REST answer as it came), every command takes ``--url`` (default: the
home's ``http.port``), and the status is 0 when done, 1 when the server refused or
failed (its message, which names the field, on stderr), 2 for a wrong command line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hookcast.cli.rest_client import (
    Columns,
    call,
    format_table,
    message_of,
    none_found,
    not_the_rest_api,
)
from hookcast.config.settings import Settings

#: the top-level commands this module adds
GROUPS = ("pull", "push", "records", "vod", "hooks")
PLURAL = {"pull": "pulls", "push": "pushes"}

_LINK_COLUMNS: Columns = (("LOCAL", 40), ("REMOTE", 40), ("URI", 40), ("STATUS", 10),
                          ("RETRIES", 7), ("ERROR", 0))
_RECORD_COLUMNS: Columns = (("FILE", 60), ("SIZE", 10), ("DURATION", 9), ("CODECS", 11),
                            ("PICTURE", 9), ("MADE", 0))
_VOD_COLUMNS: Columns = (("MEDIA SESSION", 40), ("NAME", 40), ("URI", 50), ("LOOP", 0))
_OUTBOX_COLUMNS: Columns = (("ID", 8), ("STATUS", 9), ("APP", 16), ("METHOD", 21),
                            ("KEY", 44), ("ATTEMPTS", 8), ("NEXT", 19), ("LAST RESULT", 0))
#: the REST API's 404 when no outbox row matches
OUTBOX_NONE = "Not found"


@dataclass(frozen=True)
class Rest:
    """The REST API of one server, as the home's credentials reach it."""

    base: str
    settings: Settings

    def call(self, method: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        return call(self.base, f"/rest-api/{method}", body, self.settings)

    def listed(self, method: str, not_found: str | None = None,
               query: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The list a ``find_all`` answers (``[]`` for its 404 ``not_found``). Raises
        Refused for another error, NotTheRestApi for an answer that is no such list."""
        status, body = self.call(method, query)
        if not_found is not None and none_found(status, body, not_found):
            return []
        if status != 200:
            raise Refused(message_of(body))
        if not (isinstance(body, list) and all(isinstance(item, dict) for item in body)):
            raise not_the_rest_api(self.base, f"/rest-api/{method}",
                                   f"{status} JSON that is not a list of objects")
        return body

    def done(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """The object a method answers with 200. Raises Refused for any other status."""
        status, answer = self.call(method, body)
        if status != 200:
            raise Refused(message_of(answer))
        if not isinstance(answer, dict):
            raise not_the_rest_api(self.base, f"/rest-api/{method}",
                                   f"{status} JSON that is not an object")
        return answer


class Refused(Exception):
    """The server answered with an error; the message is what it said."""


def json_object(text: str) -> dict[str, Any]:
    """argparse type for ``--custom``: a JSON object."""
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}: {error}") \
            from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def add_parsers(commands: argparse._SubParsersAction,  # type: ignore[type-arg]
                server: argparse.ArgumentParser) -> None:
    """The four commands and their verbs; ``server`` gives each verb --home and --url."""
    listing = argparse.ArgumentParser(add_help=False, parents=[server])
    listing.add_argument("--json", action="store_true", help="print the REST answer as JSON")
    for direction, does, name in (
            ("pull", "play a stream of another server, publish it here", "its name here"),
            ("push", "publish a stream of this server on another", "the stream here")):
        group = commands.add_parser(direction, help=f"{does} (/rest-api/pull/*)")
        verbs = group.add_subparsers(dest="verb", required=True)
        verbs.add_parser("list", parents=[listing], help=f"every {direction}, running or ended")
        start = verbs.add_parser("start", parents=[listing], help=f"{does} (/pull/{direction})")
        start.add_argument("uri", help="the other server's WebSocket: ws://host:8080")
        start.add_argument("name", help=f"{name} (localStreamName)")
        start.add_argument("--remote", help="its name there (default: the same)")
        start.add_argument("--app-key", help="the application there (default: defaultApp)")
        start.add_argument("--custom", type=json_object, help="a JSON object sent as custom")
        start.add_argument("--no-tls-verify", action="store_true",
                           help="wss:// only: accept any certificate")
        stop = verbs.add_parser("terminate", parents=[server],
                                help=f"stop and forget the {PLURAL[direction]} of a stream")
        _link_filters(stop)
    records = commands.add_parser("records", help="finished recordings (/rest-api/records/*)")
    verbs = records.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", parents=[listing], help="finished files, newest first")
    delete = verbs.add_parser("delete", parents=[server], help="delete finished files")
    delete.add_argument("files", nargs="+", metavar="FILE", help="a file name in records/")
    vod = commands.add_parser("vod", help="shared readings of media files (/rest-api/vod/*)")
    verbs = vod.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", parents=[listing], help="every reading")
    start = verbs.add_parser("start", parents=[listing], help="start a vod-live:// reading")
    start.add_argument("uri", help="vod-live://file.mp4 (a file of media_dir)")
    start.add_argument("--name", help="the stream it is published as (default: the uri)")
    start.add_argument("--loop", action=argparse.BooleanOptionalAction,
                       help="start again at the end (default: vod_live_loop)")
    stop = verbs.add_parser("terminate", parents=[server], help="stop a shared reading")
    stop.add_argument("name", help="its stream name (localStreamName)")
    stop.add_argument("--uri", help="and only if it reads this uri")
    _hooks_parsers(commands, server, listing)


def _hooks_parsers(commands: argparse._SubParsersAction,  # type: ignore[type-arg]
                   server: argparse.ArgumentParser, listing: argparse.ArgumentParser) -> None:
    hooks = commands.add_parser(
        "hooks", help="the REST-hook outbox: pending, delivered and dead notifications "
        "(/rest-api/hooks/outbox/*)")
    verbs = hooks.add_subparsers(dest="verb", required=True)
    app = argparse.ArgumentParser(add_help=False)
    app.add_argument("--app", help="this application's notifications only (its appKey)")
    show = verbs.add_parser("outbox", parents=[listing, app],
                            help="the outbox's notifications, newest first")
    show.add_argument("--status", choices=("pending", "delivered", "dead"),
                      help="only these (default: every status)")
    show.add_argument("--limit", type=int, default=200, help="rows at most (default 200)")
    retry = verbs.add_parser("retry", parents=[server, app],
                             help="dead notifications pending again, due now")
    retry.add_argument("ids", nargs="*", type=int, metavar="ID",
                       help="these rows (default: every dead one)")
    delete = verbs.add_parser("delete", parents=[server, app],
                              help="delete delivered or dead notifications (never pending "
                              "ones)")
    delete.add_argument("ids", nargs="*", type=int, metavar="ID", help="these rows")
    delete.add_argument("--status", choices=("delivered", "dead"),
                        help="every row of this status (with IDs: those of them)")


def _link_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the stream's name here (localStreamName)")
    parser.add_argument("--remote", help="only the one with this name there")
    parser.add_argument("--uri", help="only the one with this server")


def run(args: argparse.Namespace, rest: Rest) -> int:
    """Carry out one command; its exit status."""
    command = COMMANDS[(args.command if args.command != "push" else "pull", args.verb)]
    try:
        return command(args, rest)
    except Refused as error:
        print(f"hookcast: {error}", file=sys.stderr)
        return 1


def _print_list(args: argparse.Namespace, found: list[dict[str, Any]], table: str) -> int:
    print(json.dumps(found, indent=2) if args.json else table)
    return 0


# --- pull and push -------------------------------------------------------------------


def _links(rest: Rest, direction: str) -> list[dict[str, Any]]:
    found = rest.listed("pull/find_all", not_found="Not found")
    return [link for link in found if link.get("direction") == direction]


def _link_list(args: argparse.Namespace, rest: Rest) -> int:
    found = _links(rest, args.command)
    rows = [[str(link.get(key, "")) for key in (
        "localStreamName", "remoteStreamName", "uri", "status", "retries", "error")]
        for link in sorted(found, key=lambda link: str(link.get("localStreamName")))]
    return _print_list(args, found, format_table(_LINK_COLUMNS, rows))


def _link_start(args: argparse.Namespace, rest: Rest) -> int:
    body: dict[str, Any] = {"uri": args.uri, "localStreamName": args.name}
    for key, value in (("remoteStreamName", args.remote), ("appKey", args.app_key),
                       ("custom", args.custom)):
        if value is not None:
            body[key] = value
    if args.no_tls_verify:
        body["tlsVerify"] = False
    link = rest.done(f"pull/{args.command}", body)
    status, error = link.get("status"), link.get("error") or ""
    if args.json:
        print(json.dumps(link, indent=2))
    elif args.command == "pull":
        print(f"pull {args.uri} {link.get('remoteStreamName')} as {args.name}: {status}")
    else:
        print(f"push {args.name} to {args.uri} as {link.get('remoteStreamName')}: {status}")
    if status == "ACTIVE":
        return 0
    print(f"hookcast: the first attempt failed: {error or status}; it goes on trying "
          f"(hookcast {args.command} terminate {args.name} stops it)", file=sys.stderr)
    return 1


def _link_terminate(args: argparse.Namespace, rest: Rest) -> int:
    """``/pull/terminate`` stops pulls and pushes alike: the links of this direction are
    found first, then each is terminated by its (local, remote, uri)."""
    chosen = {
        (link["localStreamName"], link.get("remoteStreamName"), link.get("uri"))
        for link in _links(rest, args.command)
        if link.get("localStreamName") == args.name
        and args.remote in (None, link.get("remoteStreamName"))
        and args.uri in (None, link.get("uri"))
    }
    if not chosen:
        raise Refused(f"Not found: no {args.command} of localStreamName {args.name!r}"
                      + "".join(f", {flag} {value!r}" for flag, value in (
                          ("remoteStreamName", args.remote), ("uri", args.uri)) if value))
    count = 0
    for local, remote, uri in sorted(chosen, key=str):
        status, answer = rest.call("pull/terminate", {
            "localStreamName": local, "remoteStreamName": remote, "uri": uri})
        if status == 200 and isinstance(answer, dict):
            count += len(answer.get("terminated") or [])
        elif not none_found(status, answer, "Not found"):  # (ended and forgotten meanwhile)
            raise Refused(message_of(answer))
    print(f"terminated {count} {args.command if count == 1 else PLURAL[args.command]}")
    return 0


# --- records -------------------------------------------------------------------------


def _record_list(args: argparse.Namespace, rest: Rest) -> int:
    found = rest.listed("records/find_all")
    rows = [[
        str(record.get("fileName", "")), _size(record.get("size")),
        f"{float(record.get('duration') or 0):.1f} s",
        "/".join(str(c) for c in (record.get("videoCodec"), record.get("audioCodec")) if c)
        or "-",
        f"{record.get('width')}x{record.get('height')}" if record.get("width") else "-",
        _time(record.get("createDate")),
    ] for record in found]
    return _print_list(args, found, format_table(_RECORD_COLUMNS, rows))


def _record_delete(args: argparse.Namespace, rest: Rest) -> int:
    failed = 0
    for name in args.files:
        status, answer = rest.call("records/delete", {"fileName": name})
        if status == 200:
            print(f"deleted {name}")
        else:
            print(f"hookcast: {name}: {message_of(answer)}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _size(size: Any) -> str:
    value, unit = float(size or 0), 0
    while value >= 1024 and unit < 3:
        value, unit = value / 1024, unit + 1
    return f"{value:.{1 if unit else 0}f} {('B', 'KB', 'MB', 'GB')[unit]}"


def _time(millis: Any) -> str:
    if not isinstance(millis, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(millis / 1000))


# --- vod -----------------------------------------------------------------------------


def _vod_list(args: argparse.Namespace, rest: Rest) -> int:
    found = rest.listed("vod/find_all", not_found="Not found")
    rows = [[str(entry.get(key, "")) for key in (
        "localMediaSessionId", "localStreamName", "uri")]
        + ["yes" if entry.get("loop") else "no"] for entry in found]
    return _print_list(args, found, format_table(_VOD_COLUMNS, rows))


def _vod_start(args: argparse.Namespace, rest: Rest) -> int:
    body: dict[str, Any] = {"uri": args.uri}
    if args.name is not None:
        body["localStreamName"] = args.name
    if args.loop is not None:
        body["loop"] = args.loop
    entry = rest.done("vod/startup", body)
    if args.json:
        print(json.dumps(entry, indent=2))
    else:
        loop = " (looping)" if entry.get("loop") else ""
        print(f"started {args.uri} as {entry.get('localStreamName')}{loop}")
    return 0


def _vod_terminate(args: argparse.Namespace, rest: Rest) -> int:
    body = {"localStreamName": args.name, **({"uri": args.uri} if args.uri else {})}
    answer = rest.done("vod/terminate", body)
    count = len(answer.get("terminated") or [])
    print(f"terminated {count} reading{'s' if count != 1 else ''}")
    return 0


# --- hooks (the REST-hook outbox) -------------------------------------------------


def _outbox_query(args: argparse.Namespace, **more: Any) -> dict[str, Any]:
    """The REST body: the options given (``--app`` is ``appKey``, IDs ``ids``)."""
    body = {"appKey": args.app, "status": getattr(args, "status", None),
            "ids": getattr(args, "ids", None) or None, **more}
    return {key: value for key, value in body.items() if value is not None}


def _outbox_list(args: argparse.Namespace, rest: Rest) -> int:
    found = rest.listed("hooks/outbox/find_all", OUTBOX_NONE,
                        _outbox_query(args, limit=args.limit))
    rows = [[
        str(row.get("id", "")), str(row.get("status", "")), str(row.get("appKey", "")),
        str(row.get("method", "")),
        str(row.get("orderingKey", "")).removeprefix(f"{row.get('appKey')}/"),
        str(row.get("attempts", "")),
        _time(row.get("nextAttempt")) if row.get("status") == "pending" else "-",
        str(row.get("lastResult") or "-"),
    ] for row in found]
    return _print_list(args, found, format_table(_OUTBOX_COLUMNS, rows))


def _outbox_retry(args: argparse.Namespace, rest: Rest) -> int:
    status, answer = rest.call("hooks/outbox/retry", _outbox_query(args))
    if none_found(status, answer, OUTBOX_NONE) and not args.ids:
        print("no dead notifications" + (f" of {args.app}" if args.app else ""))
        return 0
    if status != 200:
        raise Refused(_with_ids(message_of(answer), args.ids, "dead"))
    retried = answer.get("retried") if isinstance(answer, dict) else None
    if not isinstance(retried, list):
        raise not_the_rest_api(rest.base, "/rest-api/hooks/outbox/retry",
                               f"{status} JSON without a retried list")
    print(f"retried {_count(len(retried))}: {', '.join(str(i) for i in retried)}")
    missing = sorted(set(args.ids) - set(retried))
    if missing:
        print(f"hookcast: not dead (or no such row): {', '.join(map(str, missing))}",
              file=sys.stderr)
        return 1
    return 0


def _outbox_delete(args: argparse.Namespace, rest: Rest) -> int:
    if not args.ids and args.status is None:
        print("hookcast: hooks delete: say which rows: IDs, or --status delivered|dead",
              file=sys.stderr)
        return 2
    status, answer = rest.call("hooks/outbox/delete", _outbox_query(args))
    if none_found(status, answer, OUTBOX_NONE) and not args.ids:
        print(f"no {args.status} notifications" + (f" of {args.app}" if args.app else ""))
        return 0
    if status != 200:
        raise Refused(_with_ids(message_of(answer), args.ids, "delivered or dead"))
    deleted = answer.get("deleted") if isinstance(answer, dict) else None
    if not isinstance(deleted, int):
        raise not_the_rest_api(rest.base, "/rest-api/hooks/outbox/delete",
                               f"{status} JSON without a deleted count")
    print(f"deleted {_count(deleted)}")
    if args.ids and deleted < len(set(args.ids)):
        print(f"hookcast: {len(set(args.ids)) - deleted} of the rows given are pending or "
              "do not exist (pending rows are never deleted)", file=sys.stderr)
        return 1
    return 0


def _count(number: int) -> str:
    return f"{number} notification{'' if number == 1 else 's'}"


def _with_ids(message: str, ids: list[int], what: str) -> str:
    if message == OUTBOX_NONE and ids:
        return f"{message}: no {what} row among {', '.join(map(str, ids))}"
    return message


COMMANDS: dict[tuple[str, str], Callable[[argparse.Namespace, Rest], int]] = {
    ("pull", "list"): _link_list,
    ("pull", "start"): _link_start,
    ("pull", "terminate"): _link_terminate,
    ("records", "list"): _record_list,
    ("records", "delete"): _record_delete,
    ("vod", "list"): _vod_list,
    ("vod", "start"): _vod_start,
    ("vod", "terminate"): _vod_terminate,
    ("hooks", "outbox"): _outbox_list,
    ("hooks", "retry"): _outbox_retry,
    ("hooks", "delete"): _outbox_delete,
}
