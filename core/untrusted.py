"""Input from clients, kept harmless: JSON nesting bounded, text made safe for logs.

Clients choose stream names, message names and ``custom`` objects. Nothing they send
may forge a log line (a newline), make a log binary (a NUL) or amplify it (a 200 KB
name written on every status change); nothing may be nested deep enough to exhaust
the interpreter's recursion when it is copied, frozen or serialised; and nothing a
client or a remote server does repeatedly may fill the disk with log lines (LogBudget).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

#: deepest nesting of arrays and objects accepted in a client's JSON
MAX_DEPTH = 32
#: longest log message written; the rest is cut and counted
MAX_LOG_MESSAGE = 2000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def json_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of decoded JSON (a scalar is 0), counted without recursion; stops
    counting at ``limit + 1``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            level += 1
            deepest = max(deepest, level)
            if level > limit:
                return level
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level) for child in children)
    return deepest


def printable(text: str, limit: int = 200) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x00``) and cut at ``limit``
    characters, saying how much was cut: for client strings in logs and messages."""
    escaped = _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)
    if len(escaped) > limit:
        return f"{escaped[:limit]}...({len(escaped) - limit} more)"
    return escaped


class SafeFormatter(logging.Formatter):
    """Log lines that no message can forge or bloat: the message's control characters
    are escaped and it is cut at MAX_LOG_MESSAGE characters. A traceback, which the
    server writes itself, keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message, MAX_LOG_MESSAGE)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        """A traceback, its last line (the exception, which may quote a client) cut."""
        text = super().formatException(ei)
        head, _, last = text.rpartition("\n")
        last = printable(last, MAX_LOG_MESSAGE)
        return f"{head}\n{last}" if head else last


class LogBudget:
    """What one client or remote causes, logged at a bounded rate.

    A session, a pull link or any other owner of lines that someone outside the server
    can trigger keeps one budget: ``burst`` lines at once, then ``per_second`` more a
    second (a token bucket). Lines beyond it are not written but counted; the next line
    the budget allows (or ``close()``) is preceded by one ``<owner>: N similar lines
    suppressed``. A flood of any length therefore writes a few lines a second at most.
    """

    def __init__(self, logger: logging.Logger, owner: str, burst: int = 10,
                 per_second: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.owner = owner
        self.burst = burst
        self.per_second = per_second
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        #: lines not written since the last one that was
        self.suppressed = 0

    def log(self, level: int, message: str, *args: Any, exc_info: Any = None) -> None:
        """Write one line (``logger.log`` arguments) if the budget allows, else count it."""
        if not self.logger.isEnabledFor(level):
            return
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.per_second)
        self._last = now
        if self._tokens < 1:
            self.suppressed += 1
            return
        self._tokens -= 1
        self._report(level)
        self.logger.log(level, message, *args, exc_info=exc_info, stacklevel=3)

    def debug(self, message: str, *args: Any) -> None:
        self.log(logging.DEBUG, message, *args)

    def info(self, message: str, *args: Any) -> None:
        self.log(logging.INFO, message, *args)

    def warning(self, message: str, *args: Any) -> None:
        self.log(logging.WARNING, message, *args)

    def error(self, message: str, *args: Any, exc_info: Any = None) -> None:
        self.log(logging.ERROR, message, *args, exc_info=exc_info)

    def close(self) -> None:
        """Say how many lines were suppressed since the last one written, if any."""
        self._report(logging.INFO)

    def _report(self, level: int) -> None:
        if self.suppressed:
            count, self.suppressed = self.suppressed, 0
            self.logger.log(level, "%s: %d similar lines suppressed", self.owner, count)
