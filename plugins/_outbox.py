"""The durable outbox of REST-hook notifications: written before the state change is
acknowledged, delivered at least once, in order per stream (and per session), retried
with backoff, kept dead (not deleted) when it cannot be delivered.

- ``Store`` is the interface; ``SqliteStore`` keeps the rows in SQLite (WAL) in the home
  (``rest_outbox_path``, ``state/outbox.db``; a worker of ``--workers N`` has its own
  ``outbox-w<N>.db``). Every SQLite call runs in the store's own thread, never on the
  event loop; rows added at the same time are committed together (one commit for all of
  them), and ``Outbox.add`` returns once its row is committed; the results of the
  deliveries of UPDATE_DELAY are committed together (a crash in between delivers those
  again, under the same id).
- ``Outbox`` delivers: per *ordering key* (an application and a stream, or a session)
  only the oldest pending row is in flight, so a key's events arrive in order; keys are
  independent. A delivery that fails (no connection, a timeout, 5xx, 408, 429) is tried
  again after ``rest_retry_min_delay``, doubling to ``rest_retry_max_delay``, with ±20 %
  jitter, until ``rest_retry_span`` after the event: then it is *dead*. Any other 4xx is
  final: dead at once. While an application does not answer at all (down), one key
  tries it (the probe, on its backoff, at most ``PROBE_MAX_DELAY`` apart) and its other
  keys wait, parked: a backend that is down costs one attempt per backoff, not one per
  stream. Once it answers, every key
  parked or waiting out a backoff is due at once.
- Bounds: at most ``rest_outbox_max_rows`` rows; past it the oldest delivered, then the
  oldest dead rows are deleted, and only then the oldest pending one (counted in
  ``hookcast_rest_outbox_dropped_total`` and logged). Delivered rows are kept
  ``rest_outbox_max_age`` seconds, dead ones too (for replay).
- A database that cannot be opened (deleted is fine: it is made again; corrupt: moved
  aside; a read-only folder) is said in one sentence, and the outbox runs in memory: it
  delivers, but what is pending does not survive a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import random
import sqlite3
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

log = logging.getLogger("hookcast.rest_hooks")

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
#: deliveries at once, across every key
MAX_IN_FLIGHT = 64
#: deliveries started in one turn of the event loop at most (draining a backlog)
START_BATCH = 8
#: seconds a delivery's result waits to be written with the others' (a crash in between
#: delivers it again, under the same webhook-id)
UPDATE_DELAY = 0.05
#: seconds at most between two tries of an application that is down (the probe's)
PROBE_MAX_DELAY = 30.0
#: statuses that are worth trying again (besides no answer at all)
RETRIED = frozenset({408, 429})
T = TypeVar("T")


@dataclass
class Row:
    """One notification to deliver."""

    id: int
    event_id: str
    app: str
    method: str
    url: str
    key: str
    body: bytes
    created: float
    status: str = PENDING
    attempts: int = 0
    next_at: float = 0.0
    result: str = ""

    def entry(self) -> dict[str, Any]:
        return {"id": self.id, "eventId": self.event_id, "appKey": self.app,
                "method": self.method, "url": self.url, "orderingKey": self.key,
                "status": self.status, "attempts": self.attempts,
                "created": int(self.created * 1000),
                "nextAttempt": int(self.next_at * 1000) if self.status == PENDING else None,
                "lastResult": self.result, "size": len(self.body)}


class Store(Protocol):
    """Where the rows live (SQLite here; a cluster could keep them in Redis streams).
    Every method is blocking: the Outbox calls them off the event loop."""

    durable: bool

    def add(self, rows: list[Row]) -> None:
        """Insert the rows, setting each one's ``id``; committed when it returns."""

    def gone(self) -> bool:
        """True when what the store writes to is no longer where it is read from."""

    def reopen(self) -> None: ...

    def update(self, rows: list[Row]) -> None:
        """Save status, attempts, next_at and result of these rows."""

    def pending(self) -> list[Row]:
        """Every pending row, oldest first (at start)."""

    def find(self, status: str | None, app: str | None, limit: int) -> list[Row]: ...

    def counts(self) -> dict[tuple[str, str], tuple[int, float]]:
        """(app, status) -> (rows, oldest created)."""

    def delete(self, ids: Iterable[int]) -> int: ...

    def trim(self, max_rows: int, max_age: float, now: float) -> list[int]:
        """Apply the bounds; the ids of the pending rows it had to drop."""

    def close(self) -> None: ...


SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    app TEXT NOT NULL,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    ordering TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    result TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_status ON outbox (status, id);
"""
COLUMNS = "id, event_id, app, method, url, ordering, body, created, status, attempts, " \
          "next_at, result"


class SqliteStore:
    """The rows in one SQLite database, WAL mode, ``synchronous=NORMAL`` (a commit
    survives the process being killed; a power cut may lose the last ones)."""

    def __init__(self, path: Path | None) -> None:
        self.durable = path is not None
        self.path = path
        self._open(path)
        self.inode = os.stat(path).st_ino if path is not None else 0

    def gone(self) -> bool:
        """True when the file was deleted or replaced since it was opened (SQLite would
        go on writing to the deleted file, lost at the next start)."""
        if self.path is None:
            return False
        try:
            return os.stat(self.path).st_ino != self.inode
        except OSError:
            return True

    def reopen(self) -> None:
        """Open (make) the file at the path again."""
        self.db.close()
        assert self.path is not None
        self._open(self.path)
        self.inode = os.stat(self.path).st_ino

    def _open(self, path: Path | None) -> None:
        self.db = sqlite3.connect(str(path) if path else ":memory:", isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        if path is not None:  # a damaged file fails here, not at the first write
            (ok,) = self.db.execute("PRAGMA quick_check").fetchone()
            if ok != "ok":
                self.db.close()
                raise sqlite3.DatabaseError(f"quick_check: {ok}")
            probe = str(uuid.uuid4())  # a read-only file or folder fails here
            self.db.execute("BEGIN")
            self.db.execute("INSERT INTO outbox (event_id, app, method, url, ordering, body, "
                            "created, status, next_at) VALUES (?, '', '', '', '', x'', 0, "
                            "'probe', 0)", (probe,))
            self.db.execute("ROLLBACK")

    @staticmethod
    def _row(values: tuple[Any, ...]) -> Row:
        (id_, event_id, app, method, url, key, body, created, status, attempts, next_at,
         result) = values
        return Row(id_, event_id, app, method, url, key, bytes(body), created, status,
                   attempts, next_at, result)

    def add(self, rows: list[Row]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            for row in rows:
                cursor = self.db.execute(
                    "INSERT INTO outbox (event_id, app, method, url, ordering, body, created, "
                    "status, attempts, next_at, result) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (row.event_id, row.app, row.method, row.url, row.key, row.body,
                     row.created, row.status, row.attempts, row.next_at, row.result))
                row.id = int(cursor.lastrowid or 0)

    def update(self, rows: list[Row]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "UPDATE outbox SET status=?, attempts=?, next_at=?, result=? WHERE id=?",
                [(r.status, r.attempts, r.next_at, r.result, r.id) for r in rows])

    def pending(self) -> list[Row]:
        return [self._row(v) for v in self.db.execute(
            f"SELECT {COLUMNS} FROM outbox WHERE status=? ORDER BY id", (PENDING,))]

    def find(self, status: str | None, app: str | None, limit: int) -> list[Row]:
        where, args = [], []
        if status:
            where.append("status=?")
            args.append(status)
        if app:
            where.append("app=?")
            args.append(app)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return [self._row(v) for v in self.db.execute(
            f"SELECT {COLUMNS} FROM outbox {clause} ORDER BY id DESC LIMIT ?", (*args, limit))]

    def counts(self) -> dict[tuple[str, str], tuple[int, float]]:
        return {(app, status): (count, oldest) for app, status, count, oldest in self.db.execute(
            "SELECT app, status, COUNT(*), MIN(created) FROM outbox GROUP BY app, status")}

    def delete(self, ids: Iterable[int]) -> int:
        chosen = list(ids)
        with self.db:
            self.db.execute("BEGIN")
            deleted = 0
            for start in range(0, len(chosen), 500):
                part = chosen[start:start + 500]
                deleted += self.db.execute(
                    f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(part))})",
                    part).rowcount
        return deleted

    def trim(self, max_rows: int, max_age: float, now: float) -> list[int]:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM outbox WHERE status IN (?, ?) AND created < ?",
                            (DELIVERED, DEAD, now - max_age))
            (total,) = self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()
            excess = total - max_rows
            for status in (DELIVERED, DEAD):
                if excess <= 0:
                    break
                excess -= self.db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE status=? "
                    "ORDER BY id LIMIT ?)", (status, excess)).rowcount
            dropped: list[int] = []
            if excess > 0:
                dropped = [i for (i,) in self.db.execute(
                    "SELECT id FROM outbox WHERE status=? ORDER BY id LIMIT ?",
                    (PENDING, excess))]
                self.db.executemany("DELETE FROM outbox WHERE id=?", [(i,) for i in dropped])
        return dropped

    def close(self) -> None:
        self.db.close()


def open_store(path: Path) -> SqliteStore:
    """The SQLite store at ``path``; in memory (and said in one sentence) when it cannot
    be opened there. A corrupt file is moved aside and a new one made."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteStore(path)
    except sqlite3.DatabaseError as error:
        if path.exists() and "readonly" not in str(error) and "read-only" not in str(error):
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            try:
                path.rename(aside)
                for extra in ("-wal", "-shm"):
                    Path(f"{path}{extra}").unlink(missing_ok=True)
                log.error("REST-hook outbox %s could not be read (%s): moved aside to %s, "
                          "a new one is used", path, error, aside.name)
                return SqliteStore(path)
            except (OSError, sqlite3.Error) as again:
                error = again  # type: ignore[assignment]
        log.error("REST-hook outbox %s cannot be used (%s): notifications are kept in "
                  "memory only, and pending ones are lost if the server stops", path, error)
    except OSError as error:
        log.error("REST-hook outbox %s cannot be used (%s): notifications are kept in "
                  "memory only, and pending ones are lost if the server stops", path, error)
    return SqliteStore(None)


@dataclass(frozen=True)
class Policy:
    min_delay: float = 5.0
    max_delay: float = 3600.0
    span: float = 86400.0
    max_rows: int = 100_000
    max_age: float = 7 * 86400.0

    def delay(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1`` (after ``attempts`` failed), jittered."""
        base = min(self.min_delay * 2 ** min(attempts - 1, 30), self.max_delay)
        return float(base * random.uniform(0.8, 1.2))


#: what sends one row: (status, result name, detail); status 0 when nothing came back
Send = Callable[[Row], Awaitable[tuple[int, str, str]]]


@dataclass
class _Key:
    rows: deque[Row] = field(default_factory=deque)
    busy: bool = False


@dataclass
class _App:
    """What the outbox knows of an application: while its last attempt got no answer at
    all (refused, unreachable, timed out: it is down), one key tries it (the probe, on
    its own backoff, until it has nothing left) and the others are parked, not sent,
    until it answers again. An answer, even 5xx or 429, is per key: each retries on its
    own backoff and no method's trouble holds up another's notifications."""

    name: str = ""
    failing: bool = False
    probe: str | None = None
    parked: set[str] = field(default_factory=set)


class Outbox:
    """Adds rows durably and delivers them (see the module docstring)."""

    def __init__(self, store: Store, send: Send, policy: Policy) -> None:
        self.store = store
        self.send = send
        self.policy = policy
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rest-outbox")
        self._keys: dict[str, _Key] = {}
        self._apps: dict[str, _App] = {}
        self._due: list[tuple[float, int, str]] = []  # (when, tie, key)
        self._tie = 0
        self._wake = asyncio.Event()
        self._adding: list[tuple[Row, asyncio.Future[None]]] = []
        self._updating: list[Row] = []
        self._later: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._lock = threading.Lock()
        #: (method, result) -> deliveries; dropped: pending rows the bounds removed
        self.results: Counter[str] = Counter()
        self.dropped = 0
        self.pending_count = 0
        self.dead_count = 0

    async def _off(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    # --- life ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load what was pending (a restart delivers it) and begin delivering."""
        for row in await self._off(self.store.pending):
            self._queue(row)
        counts = await self._off(self.store.counts)
        self.dead_count = sum(n for (_, status), (n, _) in counts.items() if status == DEAD)
        if self.pending_count:
            log.info("REST-hook outbox: %d notifications pending from before, delivering",
                     self.pending_count)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="rest outbox")

    async def stop(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109
        """Stop delivering (what is in flight gets ``timeout``), save, close."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._deliveries:
            await asyncio.wait(self._deliveries, timeout=timeout)
            for task in self._deliveries:
                task.cancel()
            await asyncio.gather(*self._deliveries, return_exceptions=True)
        if self._later is not None:
            self._later.cancel()
            self._later = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._flush(), timeout)
        await self._off(self.store.close)
        self._thread.shutdown(wait=False)

    # --- adding ------------------------------------------------------------------------

    async def add(self, app: str, method: str, url: str, key: str, body: bytes) -> Row:
        """Keep a notification; returns once it is committed."""
        now = time.time()
        row = Row(0, uuid.uuid4().hex, app, method, url, key, body, now, next_at=now)
        done = asyncio.get_running_loop().create_future()
        self._adding.append((row, done))
        self._kick()
        await done
        self._queue(row)
        self._wake.set()
        return row

    def _kick_later(self) -> None:
        self._later = None
        self._kick()

    def _kick(self) -> None:
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        """Commit what was added and changed since the last flush, in one transaction
        each, until there is nothing left."""
        while self._adding or self._updating:
            adding, self._adding = self._adding, []
            updating, self._updating = self._updating, []
            rows = [row for row, _ in adding]
            gone, add_error, update_error = await self._off(self._commit, rows, updating)
            if gone:  # (rare: then a second trip, once the file is made again)
                await self._still_there()
                _, add_error, update_error = await self._off(self._commit, rows, updating,
                                                             False)
            if add_error is not None:
                log.error("REST-hook outbox: %d notifications could not be written (%s);"
                          " they are delivered from memory", len(adding), add_error)
            if update_error is not None:
                log.error("REST-hook outbox: %d deliveries could not be recorded (%s)",
                          len(updating), update_error)
            for _, done in adding:
                if not done.done():
                    done.set_result(None)
            if adding:
                await self._trim()

    def _commit(self, adding: list[Row], updating: list[Row], check: bool = True
                ) -> tuple[bool, Exception | None, Exception | None]:
        """On the store's thread, in one trip from the loop: the new rows in one
        transaction, the delivered/retried/dead ones in another. Returns (the database
        was deleted or replaced: nothing written, when ``check``; the errors)."""
        if check and self.store.durable and self.store.gone():
            return True, None, None
        add_error = update_error = None
        if adding:
            try:
                self.store.add(adding)
            except Exception as error:
                add_error = error
        if updating:
            try:
                self.store.update(updating)
            except Exception as error:
                update_error = error
        return False, add_error, update_error

    async def _still_there(self) -> None:
        """The database deleted or replaced while the server runs: make it again and
        write what is pending into it (or it would be lost at the next start)."""
        if not self.store.durable or not await self._off(self.store.gone):
            return
        pending = [row for key in self._keys.values() for row in key.rows]
        pending.sort(key=lambda row: row.id)

        def again() -> None:
            self.store.reopen()
            self.store.add(pending)

        try:
            await self._off(again)
        except Exception as error:
            log.error("REST-hook outbox: its database was deleted or replaced and cannot be "
                      "made again (%s): pending notifications are kept in memory only", error)
            return
        log.error("REST-hook outbox: its database was deleted or replaced while the server "
                  "ran: made again, with the %d notifications pending", len(pending))

    async def _trim(self) -> None:
        if self.pending_count + len(self._adding) < self.policy.max_rows // 2:
            return  # cheap: only near the bound does it cost a query
        dropped = await self._off(self.store.trim, self.policy.max_rows, self.policy.max_age,
                                  time.time())
        if dropped:
            gone = set(dropped)
            for key in self._keys.values():
                head = key.rows[0] if key.busy and key.rows else None
                kept = deque(r for r in key.rows if r is head or r.id not in gone)
                self.pending_count -= len(key.rows) - len(kept)
                key.rows = kept
            self.dropped += len(dropped)
            log.error("REST-hook outbox: %d pending notifications dropped (rest_outbox_max_rows"
                      " reached; delivered and dead ones went first)", len(dropped))

    # --- delivering ----------------------------------------------------------------------

    def _queue(self, row: Row) -> None:
        key = self._keys.setdefault(row.key, _Key())
        key.rows.append(row)
        self.pending_count += 1
        if len(key.rows) == 1 and not key.busy:
            self._schedule(row.key, row.next_at)

    def _schedule(self, key: str, when: float) -> None:
        self._tie += 1
        heapq.heappush(self._due, (when, self._tie, key))
        self._wake.set()

    async def _run(self) -> None:
        while True:
            now = time.time()
            started = 0
            while self._due and self._due[0][0] <= now:
                _, _, name = heapq.heappop(self._due)
                key = self._keys.get(name)
                if key is None or key.busy or not key.rows or key.rows[0].next_at > now:
                    continue  # a stale entry: rescheduled or delivered meanwhile
                app = self._app(key.rows[0].app)
                if app.failing and app.probe is not None and app.probe != name:
                    app.parked.add(name)  # one attempt at a time while it fails
                    continue
                if app.failing:
                    app.probe = name
                await self._slots.acquire()
                key.busy = True
                task = asyncio.get_running_loop().create_task(self._deliver(name, key))
                self._deliveries.add(task)
                task.add_done_callback(self._deliveries.discard)
                started += 1
                if started % START_BATCH == 0:  # a backlog: the loop's other work goes
                    await asyncio.sleep(0)      # between every few deliveries started
            self._wake.clear()
            timeout = max(0.0, self._due[0][0] - time.time()) if self._due else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _deliver(self, name: str, key: _Key) -> None:
        row = key.rows[0]
        try:
            status, result, detail = await self.send(row)
        except Exception as error:
            status, result, detail = 0, "error", f"{type(error).__name__}: {error}"
        finally:
            self._slots.release()
        row.attempts += 1
        self.results[result] += 1
        now = time.time()
        app = self._app(row.app)
        if status:
            self._answered(app, now)  # it answers: whatever waited for it goes now
        else:  # no answer at all (refused, timed out): it is down; this key probes it
            app.failing = True
            if app.probe is None:
                app.probe = name
        if 200 <= status < 300:
            row.status, row.result = DELIVERED, result
        elif status and 400 <= status < 500 and status not in RETRIED:
            row.status, row.result = DEAD, f"{result}: final"
            self.dead_count += 1
            log.warning("%s %s: %s, final (event %s is dead)", row.method, row.url, detail,
                        row.event_id)
        else:
            delay = self.policy.delay(row.attempts)
            if app.probe == name:  # it tells when an application that is down is back
                delay = min(delay, PROBE_MAX_DELAY * random.uniform(0.8, 1.2))
            if now + delay > row.created + self.policy.span:
                row.status, row.result = DEAD, f"{result}: gave up after {row.attempts} attempts"
                self.dead_count += 1
                log.warning("%s %s: %s; gave up after %d attempts (event %s is dead)",
                            row.method, row.url, detail, row.attempts, row.event_id)
            else:
                row.next_at, row.result = now + delay, result
        self._updating.append(row)
        if self._later is None:  # one commit for the results of UPDATE_DELAY's deliveries
            self._later = asyncio.get_running_loop().call_later(UPDATE_DELAY, self._kick_later)
        key.busy = False
        if row.status != PENDING:
            key.rows.popleft()
            self.pending_count -= 1
        if key.rows:
            self._schedule(name, max(key.rows[0].next_at, now) if row.status != PENDING
                           else row.next_at)
        else:
            self._keys.pop(name, None)
            if app.probe == name:  # the probe's key has nothing left: another one probes
                app.probe = None
                self._release(app, now)

    def _app(self, name: str) -> _App:
        app = self._apps.get(name)
        if app is None:
            app = self._apps[name] = _App(name)
        return app

    def _answered(self, app: _App, now: float) -> None:
        """The application answers (again): the keys parked while it was down, and
        those waiting out a backoff, are due now. Costs a walk of the keys only when it
        had been down."""
        if not app.failing:
            return
        app.failing, app.probe = False, None
        self._release(app, now)
        for name, key in self._keys.items():
            head = key.rows[0] if key.rows else None
            if head is not None and not key.busy and head.app == app.name and head.next_at > now:
                head.next_at = now
                self._schedule(name, now)

    def _release(self, app: _App, now: float) -> None:
        for name in app.parked:
            self._schedule(name, now)
        app.parked.clear()

    # --- operators -------------------------------------------------------------------------

    async def find(self, status: str | None, app: str | None, limit: int) -> list[Row]:
        await self._flush()
        return await self._off(self.store.find, status, app, limit)

    async def counts(self) -> dict[tuple[str, str], tuple[int, float]]:
        await self._flush()
        return await self._off(self.store.counts)

    async def retry(self, ids: list[int] | None, app: str | None) -> list[Row]:
        """Dead rows (these ids, or every dead one of ``app``, or all) pending again,
        due now; each goes behind what its key has pending."""
        await self._flush()
        dead = [r for r in await self._off(self.store.find, DEAD, app, 1_000_000)
                if ids is None or r.id in ids]
        now = time.time()
        for row in sorted(dead, key=lambda r: r.id):
            row.status, row.attempts, row.next_at = PENDING, 0, now
            row.created, row.result = now, "retried by an operator"
            self._queue(row)
        if dead:
            await self._off(self.store.update, dead)
            self.dead_count = max(0, self.dead_count - len(dead))
        return dead

    def oldest_age(self) -> float:
        """Seconds since the oldest pending notification was made (0 if none)."""
        heads = [key.rows[0].created for key in self._keys.values() if key.rows]
        return max(0.0, time.time() - min(heads)) if heads else 0.0

    async def delete(self, ids: list[int] | None, status: str | None,
                     app: str | None) -> int:
        """Delete rows that are not pending (these ids, or every one of ``status``)."""
        await self._flush()
        chosen = [r for r in await self._off(self.store.find, status, app, 1_000_000)
                  if r.status != PENDING and (ids is None or r.id in ids)]
        deleted = await self._off(self.store.delete, [r.id for r in chosen])
        self.dead_count = max(0, self.dead_count - sum(r.status == DEAD for r in chosen))
        return deleted
