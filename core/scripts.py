"""Operator scripts run on events: argv (never a shell), a clean environment, bounded.

One ``ScriptRunner`` runs every script of one plugin (the record script; the publish,
unpublish, play and stop scripts). At most ``concurrency`` run at once; the others wait
in a queue of QUEUE_LIMIT, and a run that finds it full is dropped, logged and counted.
A script still running after ``timeout`` seconds gets SIGTERM, then SIGKILL
KILL_GRACE seconds later, sent to its whole process group (it runs in a session of its
own, so what it started goes too). Exit status and duration are logged in one line with
the tails of the script's stdout and stderr (the last LOGGED_CHARACTERS of each, control
characters escaped); outcomes are counted for Prometheus. A missing or non-executable
script is warned about once (again only after it was found in between) and counted.

``submit`` queues a run and returns at once; ``run`` queues one and returns its outcome
once it is over (bounded: see ``longest_wait``). Once the server stops (``stopping``),
runs get what is left of the shutdown grace, and those that would start after it are
dropped.

The environment holds nothing of the server's but PATH, HOME, LANG, LC_ALL, TZ, USER,
LOGNAME and any variable named ``HOOKCAST_SCRIPT_*`` (the operator's settings for
scripts), plus the event's own ``HOOKCAST_*`` variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hookcast.hookspecs import hookimpl
from hookcast.untrusted import printable

log = logging.getLogger(__name__)

#: runs waiting for a free slot; beyond it a run is dropped (logged and counted)
QUEUE_LIMIT = 1000
#: seconds between SIGTERM and SIGKILL for a script past its timeout
KILL_GRACE = 2.0
#: bytes of stdout and of stderr kept for the log
TAIL_BYTES = 2000
#: characters of each tail in the log line (escaped, cut from the start)
LOGGED_CHARACTERS = 500
#: seconds to wait for the pipes once the script has exited (a daemon it left may hold them)
PIPE_GRACE = 1.0
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME")
OPERATOR_PREFIX = "HOOKCAST_SCRIPT_"
OUTCOMES = ("ok", "failed", "timeout", "error", "missing", "dropped")
Outcome = str  # one of OUTCOMES
#: seconds given at shutdown to the scripts still waiting or running (then they are killed)
SHUTDOWN_GRACE = 10.0


def script_environment(variables: Mapping[str, str]) -> dict[str, str]:
    """The environment of a script: the few safe variables of the server's, the
    operator's ``HOOKCAST_SCRIPT_*``, and ``variables``."""
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    env.setdefault("PATH", os.defpath)
    env.update({k: v for k, v in os.environ.items() if k.startswith(OPERATOR_PREFIX)})
    env.update({k: _no_nul(v) for k, v in variables.items()})
    return env


def _no_nul(text: str) -> str:
    """Arguments and variables cannot hold NUL or lone surrogates (the door refuses
    names with either); replaced, should one come from elsewhere."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


@dataclass(frozen=True)
class Run:
    """One script to run: ``prop`` names the property that configured it."""

    prop: str
    script: Path
    args: tuple[str, ...]
    variables: Mapping[str, str]
    about: str  # for log lines: what the run is for ("stream 'cam'")
    #: resolved with the run's outcome once it is over (``ScriptRunner.run``)
    done: asyncio.Future[Outcome] | None = None

    def end(self, outcome: Outcome) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(outcome)


class ScriptRunner:
    """Runs scripts for one plugin; ``kind`` names its Prometheus metrics
    (``hookcast_<kind>_scripts_total``, ...)."""

    def __init__(self, kind: str, home: Path, concurrency: int, timeout: float) -> None:
        self.kind = kind
        self.home = home
        self.concurrency = concurrency
        self.timeout = timeout
        #: (property, outcome) -> runs
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.seconds: dict[str, float] = {}
        self.running = 0
        self._queue: asyncio.Queue[Run] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._processes: set[asyncio.subprocess.Process] = set()
        self._warned: set[Path] = set()
        self._closed = False
        #: monotonic time by which every run must be over (set once the server stops),
        #: and the event set then (what still runs is killed)
        self._stop_at: float | None = None
        self._deadline = asyncio.Event()

    def resolve(self, script: str) -> Path:
        """A script's path: as given when absolute, else inside the home."""
        path = Path(script).expanduser()
        return path if path.is_absolute() else self.home / path

    def check(self, prop: str, script: str) -> bool:
        """At start: warn (once) when the script cannot be run; True when it can."""
        problem = _unrunnable(self.resolve(script))
        if problem:
            self._warned.add(self.resolve(script))
            log.warning("%s=%s: %s; it is not run until it is there", prop, script, problem)
        return problem is None

    @property
    def waiting(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    @property
    def longest_wait(self) -> float:
        """Seconds ``run`` can take at most: a full queue ahead of it, each run killed at
        its timeout."""
        one = self.timeout + 2 * KILL_GRACE + PIPE_GRACE + 1
        return (QUEUE_LIMIT // self.concurrency + 1) * one

    def submit(self, prop: str, script: str, args: Sequence[str],
               variables: Mapping[str, str], about: str) -> bool:
        """Queue one run (returns at once); False when it was dropped."""
        return self._enqueue(Run(prop, self.resolve(script), tuple(_no_nul(a) for a in args),
                                 dict(variables), about))

    async def run(self, prop: str, script: str, args: Sequence[str],
                  variables: Mapping[str, str], about: str) -> Outcome:
        """Queue one run and return its outcome once it is over (``dropped`` at once when
        the queue is full or the runner is closed)."""
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        run = Run(prop, self.resolve(script), tuple(_no_nul(a) for a in args),
                  dict(variables), about, done)
        if not self._enqueue(run):
            return "dropped"
        return await done

    def _enqueue(self, run: Run) -> bool:
        if self._closed:
            return False
        if self._queue is None:
            self._queue = asyncio.Queue(QUEUE_LIMIT)
            self._workers = [asyncio.create_task(self._work(), name=f"{self.kind} script {n}")
                             for n in range(self.concurrency)]
        try:
            self._queue.put_nowait(run)
        except asyncio.QueueFull:
            self.outcomes[run.prop, "dropped"] += 1
            log.error("%s=%s not run for %s: %d runs already wait (dropped)", run.prop,
                      run.script, run.about, QUEUE_LIMIT)
            return False
        return True

    def stopping(self, grace: float) -> None:
        """The server stops: every run must be over within ``grace`` seconds (each gets
        what is left of it as its timeout; one that would start later is dropped)."""
        if self._stop_at is None:
            self._stop_at = time.monotonic() + grace
            asyncio.get_running_loop().call_later(grace, self._deadline.set)

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            run = await self._queue.get()
            self.running += 1
            outcome = "error"  # also when the worker is cancelled (the server stops)
            try:
                outcome = await self._run(run)
            except Exception:  # a bug here must not stop the other runs
                log.exception("%s=%s for %s failed", run.prop, run.script, run.about)
                self.outcomes[run.prop, "error"] += 1
            finally:
                self.running -= 1
                self._queue.task_done()
                run.end(outcome)

    async def _run(self, run: Run) -> Outcome:
        problem = _unrunnable(run.script)
        if problem:
            self.outcomes[run.prop, "missing"] += 1
            if run.script not in self._warned:
                self._warned.add(run.script)
                log.warning("%s=%s: %s; not run for %s", run.prop, run.script, problem,
                            run.about)
            return "missing"
        self._warned.discard(run.script)
        timeout = self._time_left()
        if timeout <= 0:
            self.outcomes[run.prop, "dropped"] += 1
            log.warning("%s=%s not run for %s: the server is stopping", run.prop, run.script,
                        run.about)
            return "dropped"
        started = time.monotonic()
        try:
            process = await asyncio.create_subprocess_exec(
                str(run.script), *run.args, env=script_environment(run.variables),
                cwd=self.home, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group, killed as one
            )
        except OSError as error:  # e.g. a bad #! line
            self.outcomes[run.prop, "error"] += 1
            log.warning("%s=%s cannot start for %s: %s", run.prop, run.script, run.about, error)
            return "error"
        self._processes.add(process)
        assert process.stdout is not None and process.stderr is not None
        stdout, stderr = _Tail(process.stdout), _Tail(process.stderr)
        try:
            timed_out = not await self._ended(process, timeout)
            if timed_out:
                await _kill_group(process)
        finally:
            self._processes.discard(process)
        # what it wrote; a daemon it left may hold the pipes: what came so far
        await _Tail.finish(PIPE_GRACE, stdout, stderr)
        seconds = time.monotonic() - started
        self.seconds[run.prop] = self.seconds.get(run.prop, 0.0) + seconds
        return self._report(run, process.returncode, timed_out, timeout, seconds,
                            stdout.text(), stderr.text())

    async def _ended(self, process: asyncio.subprocess.Process, limit: float) -> bool:
        """Wait for the script to exit, at most ``limit`` seconds and never past the
        shutdown deadline; whether it exited."""
        exited = asyncio.ensure_future(process.wait())
        stopped = asyncio.ensure_future(self._deadline.wait())
        try:
            await asyncio.wait((exited, stopped), timeout=limit,
                               return_when=asyncio.FIRST_COMPLETED)
            return exited.done()
        finally:
            for waiter in (exited, stopped):
                waiter.cancel()
            await asyncio.gather(exited, stopped, return_exceptions=True)

    def _time_left(self) -> float:
        """The timeout of a run starting now (less once the server is stopping)."""
        if self._stop_at is None:
            return self.timeout
        return min(self.timeout, self._stop_at - time.monotonic())

    def _report(self, run: Run, code: int | None, timed_out: bool, timeout: float,
                seconds: float, stdout: str, stderr: str) -> Outcome:
        """Log the run's end in one line, with what it wrote; count and return its
        outcome."""
        said = "".join(f"; {name}: {tail}" for name, tail in (("stdout", stdout),
                                                              ("stderr", stderr)) if tail)
        if timed_out and self._deadline.is_set():
            outcome, level = "timeout", logging.WARNING
            ending = f"killed after {seconds:.2f} s: the server is stopping"
        elif timed_out:
            outcome, level = "timeout", logging.WARNING
            ending = f"killed after {timeout:g} s (record_hook_timeout or stream_hook_timeout)"
        elif code == 0:
            outcome, level, ending = "ok", logging.INFO, f"exit 0 in {seconds:.2f} s"
        else:
            outcome, level, ending = "failed", logging.WARNING, f"exit {code} in {seconds:.2f} s"
        self.outcomes[run.prop, outcome] += 1
        log.log(level, "%s=%s for %s: %s%s", run.prop, run.script, run.about, ending, said)
        return outcome

    async def close(self, grace: float) -> None:
        """Take no more runs; let those queued and running finish for up to ``grace``
        seconds, then kill what still runs and drop what still waits (logged)."""
        self._closed = True
        if self._queue is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), grace)
        left = self._queue.qsize()
        if left:
            log.warning("%d %s script runs not started: the server is stopping", left,
                        self.kind)
        while not self._queue.empty():  # those waiting on them hear they were dropped
            run = self._queue.get_nowait()
            self.outcomes[run.prop, "dropped"] += 1
            run.end("dropped")
            self._queue.task_done()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        await asyncio.gather(*(_kill_group(p) for p in list(self._processes)))

    def metrics(self) -> list[Metric]:
        runs = CounterMetricFamily(
            f"hookcast_{self.kind}_scripts", f"{self.kind} script runs by outcome",
            labels=["property", "outcome"])
        for (prop, outcome), count in sorted(self.outcomes.items()):
            runs.add_metric([prop, outcome], count)
        seconds = CounterMetricFamily(
            f"hookcast_{self.kind}_script_seconds", f"time {self.kind} scripts ran",
            labels=["property"])
        for prop, total in sorted(self.seconds.items()):
            seconds.add_metric([prop], total)
        waiting = GaugeMetricFamily(f"hookcast_{self.kind}_scripts_waiting",
                                    f"{self.kind} script runs waiting for a free slot",
                                    value=self.waiting)
        active = GaugeMetricFamily(f"hookcast_{self.kind}_scripts_running",
                                   f"{self.kind} scripts running", value=self.running)
        return [runs, seconds, waiting, active]


def _unrunnable(path: Path) -> str | None:
    if not path.is_file():
        return "no such file"
    if not os.access(path, os.X_OK):
        return "not executable (chmod +x)"
    return None


class _Tail:
    """Reads one of a script's pipes to its end in the background, keeping its last
    TAIL_BYTES."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.kept = b""
        self._task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self.kept = (self.kept + chunk)[-TAIL_BYTES:]

    def text(self) -> str:
        """The tail for a log line: decoded, stripped, escaped, its last
        LOGGED_CHARACTERS."""
        text = self.kept.decode("utf-8", "replace").strip()
        if len(text) > LOGGED_CHARACTERS:
            text = "..." + text[-LOGGED_CHARACTERS:]
        return printable(text, LOGGED_CHARACTERS * 4 + 3)

    @staticmethod
    async def finish(grace: float, *tails: _Tail) -> None:
        """Wait up to ``grace`` seconds for the pipes to close; stop reading them then."""
        tasks = [tail._task for tail in tails]
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the script's process group, SIGKILL if it is still there after
    KILL_GRACE; returns once the script itself has exited."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            await asyncio.wait_for(process.wait(), KILL_GRACE)
            if sig == signal.SIGKILL or process.returncode is not None:
                break
        except TimeoutError:
            continue
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # whatever it started, still in its group


class ScriptPlugin:
    """What a plugin running scripts shares: its ``runner`` (None while it runs none) is
    closed at shutdown, within SHUTDOWN_GRACE from the moment the server starts stopping,
    and its counts go to Prometheus."""

    runner: ScriptRunner | None = None
    hookcast_timeout = SHUTDOWN_GRACE + 5  # after_server_stop waits for the scripts

    @hookimpl
    def before_server_stop(self) -> None:
        if self.runner is not None:
            self.runner.stopping(SHUTDOWN_GRACE)

    @hookimpl
    async def after_server_stop(self) -> None:
        if self.runner is not None:
            await self.runner.close(SHUTDOWN_GRACE)

    @hookimpl
    def prometheus_metrics(self) -> list[Metric]:
        return self.runner.metrics() if self.runner is not None else []
