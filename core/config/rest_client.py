"""restClientConfig: how each REST hook method is handled, per method and per field.

WCS takes it from the backend's reply to ``connect`` and keeps it for the session;
every field has a default (restOnError LOG, restPolicy NOTIFY, empty lists). hookcast
adds a second source: an application in conf/apps.json may declare its own
``restClientConfig``, which replaces those defaults for its sessions. The two merge
**field by field** (:meth:`MethodConfig.merged`): a field the ``connect`` reply gives for a method
wins; a field it leaves out keeps the application's value; a field neither gives keeps
WCS's default. So ``"publishStream": {"restOnError": "FAIL"}`` in apps.json holds
unless the backend's own ``connect`` reply says otherwise for that very field. (The
rest_hooks plugin applies it: ``session_config`` in hookcast.plugins._rest_config.)

The application's copy is validated strictly (:func:`parse_rest_client_config`: every
problem names the method and the field); a backend's reply is read leniently, as WCS
does: unknown fields are ignored, a bad value is ignored (the application's value or
the default stays) and reported to the caller.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

#: the fields of one method's entry, in WCS spelling
FIELDS: tuple[str, ...] = ("restExclude", "clientExclude", "restOnError", "restPolicy",
                           "restOverwrite")
ON_ERROR: tuple[str, ...] = ("LOG", "FAIL")
POLICIES: tuple[str, ...] = ("NOTIFY", "OVERWRITE", "DISABLE")
#: field -> MethodConfig attribute, for the comma-separated name lists
_LISTS = {"restExclude": "rest_exclude", "clientExclude": "client_exclude",
          "restOverwrite": "overwrite"}


@dataclass(frozen=True)
class MethodConfig:
    """The restClientConfig entry of one hook method (WCS's defaults when absent)."""

    rest_exclude: frozenset[str] = frozenset()
    client_exclude: frozenset[str] = frozenset()
    on_error: str = "LOG"  # LOG | FAIL
    policy: str = "NOTIFY"  # NOTIFY | OVERWRITE | DISABLE
    overwrite: frozenset[str] = frozenset()

    def merged(self, entry: Any, problem: Callable[[str], None] | None = None) -> MethodConfig:
        """This entry with the fields ``entry`` (one method's object of a
        restClientConfig) gives, field by field. Unknown fields are ignored; a bad
        value leaves this entry's value and is reported to ``problem`` ("restOnError:
        expected LOG or FAIL, got 'x'"); an ``entry`` that is not an object changes
        nothing."""
        if not isinstance(entry, Mapping):
            return self
        changes: dict[str, Any] = {}
        for name in FIELDS:
            if name in entry:
                value, error = _read_field(name, entry[name])
                if error:
                    if problem is not None:
                        problem(f"{name}: {error}")
                    continue
                changes[_attribute(name)] = value
        return replace(self, **changes) if changes else self

    def to_json(self) -> dict[str, str]:
        """WCS's form: every field, name lists comma-separated (sorted)."""
        return {
            "restExclude": ",".join(sorted(self.rest_exclude)),
            "clientExclude": ",".join(sorted(self.client_exclude)),
            "restOnError": self.on_error,
            "restPolicy": self.policy,
            "restOverwrite": ",".join(sorted(self.overwrite)),
        }


DEFAULT = MethodConfig()


def _attribute(name: str) -> str:
    return _LISTS.get(name) or {"restOnError": "on_error", "restPolicy": "policy"}[name]


def _read_field(name: str, value: Any) -> tuple[Any, str]:
    """(the field's value, "") or (None, what is wrong with it)."""
    if name in _LISTS:
        if isinstance(value, str):
            return frozenset(p.strip() for p in value.split(",") if p.strip()), ""
        if isinstance(value, list) and all(isinstance(p, str) for p in value):
            return frozenset(p.strip() for p in value if p.strip()), ""
        return None, f"expected comma-separated field names (or a list of them), got {_show(value)}"
    choices = ON_ERROR if name == "restOnError" else POLICIES
    word = value.upper() if isinstance(value, str) else None
    if name == "restPolicy" and word == "DISABLED":  # older WCS documents spell it so
        word = "DISABLE"
    if word not in choices:
        return None, f"expected {' or '.join(choices)}, got {_show(value)}"
    return word, ""


def _show(value: Any) -> str:
    """A bad value for a message: its repr, cut short (it may come from a backend)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def did_you_mean(name: str, known: Collection[str]) -> str:
    """"; did you mean <the nearest of known>?" or "" when none is near."""
    found = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {found[0]}?" if found else ""


def parse_rest_client_config(document: Any, methods: Collection[str], where: str,
                             problems: list[str]) -> dict[str, MethodConfig]:
    """An application's ``restClientConfig`` from apps.json: method -> its entry over
    WCS's defaults. Strict: a value that is not an object, a method not in ``methods``,
    an unknown field or a bad value each add a problem to ``problems``, naming
    ``where`` (the application), the method and the field, with the nearest known
    name for a misspelt one."""
    where = f"{where}restClientConfig"
    if not isinstance(document, Mapping):
        problems.append(f"{where}: expected an object of method name -> "
                        f"{{{', '.join(FIELDS)}}}")
        return {}
    configs: dict[str, MethodConfig] = {}
    for method, entry in document.items():
        at = f"{where}.{method}"
        if method not in methods:
            problems.append(f"{at}: unknown method {method!r}{did_you_mean(method, methods)}; "
                            f"valid: {', '.join(methods)}")
            continue
        if not isinstance(entry, Mapping):
            problems.append(f"{at}: expected an object with any of {', '.join(FIELDS)}")
            continue
        for field in sorted(set(entry) - set(FIELDS)):
            problems.append(f"{at}: unknown field {field!r}{did_you_mean(field, FIELDS)}")
        configs[method] = DEFAULT.merged(entry, prefixed(problems.append, f"{at}."))
    return configs


def prefixed(problem: Callable[[str], None] | None,
              prefix: str) -> Callable[[str], None] | None:
    """``problem`` (None: nobody is told) with ``prefix`` before every message."""
    if problem is None:
        return None
    report = problem
    return lambda error: report(prefix + error)
