"""``hookcast serve --workers N``: a supervisor of N worker processes on one host.

Each worker is ``hookcast serve --worker I`` on the same home: it shares the public
ports with the others (``SO_REUSEPORT``), owns its media sockets and is a cluster node
of its own, so the workers need the cluster's Redis (``cluster_redis_url``) and a shared
``cluster_secret`` (made up here when the home has none). The supervisor restarts a
worker that exits unasked (after 1 s, doubling while it keeps dying young, at most
30 s) and, on SIGTERM or SIGINT, sends SIGTERM to every worker and waits for them
(``DRAIN_TIMEOUT``, then SIGKILL). The workers run in their own process groups, so a
Ctrl-C in the terminal reaches the supervisor alone and each worker is told once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace

from hookcast.config.home import Home
from hookcast.config.settings import Settings

log = logging.getLogger(__name__)

#: the environment variable that hands the supervisor's cluster_secret to its workers
SECRET_ENV = "HOOKCAST_CLUSTER_SECRET"
#: seconds before a worker that exited is started again, the first time
RESTART_DELAY = 1.0
#: the longest of those delays (doubled while the worker keeps dying young)
RESTART_DELAY_MAX = 30.0
#: a worker that ran less than this many seconds died young
YOUNG = 10.0
#: seconds the workers have to stop after SIGTERM before they are killed
DRAIN_TIMEOUT = 30.0
#: seconds to wait for a killed worker to be reaped
KILL_TIMEOUT = 5.0


def worker_count(text: str) -> int:
    """The argparse type of ``--workers``: a number >= 1, or ``auto`` (one per core)."""
    if text == "auto":
        return max(1, os.cpu_count() or 1)
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of processes >= 1, or auto")
    return count


def refusal(settings: Settings, count: int) -> str | None:
    """Why ``count`` workers cannot run with ``settings`` (one sentence), or None."""
    try:
        redis_url = settings.value("cluster_redis_url")
    except KeyError:  # the cluster plugin is not loaded (disabled, or not installed)
        redis_url = ""
    if not redis_url:
        return (f"--workers {count} needs cluster_redis_url: the workers share their "
                "streams through Redis; start one (apt-get install redis-server, or "
                "redis-server --port 6379 --save '') and set "
                "cluster_redis_url=redis://127.0.0.1:6379/0 in conf/server.properties "
                "(the cluster plugin must not be in disabled_plugins)")
    zero = [name for name, port in (("ws.port", settings.ws_port),
                                     ("http.port", settings.http_port)) if port == 0]
    if zero:
        return (f"--workers {count} needs fixed public ports: with {zero[0]}=0 each worker "
                "would listen on a port of its own; set it to a port number")
    return None


def worker_settings(settings: Settings) -> Settings:
    """A worker's settings: its home's, with the supervisor's cluster_secret when the
    home sets none."""
    handed = os.environ.get(SECRET_ENV, "")
    if settings.cluster_secret or not handed:
        return settings
    return replace(settings, cluster_secret=handed)


class Supervisor:
    """Keeps ``count`` workers of ``home`` running until SIGTERM or SIGINT."""

    def __init__(self, home: Home, settings: Settings, count: int, log_level: str) -> None:
        self.home = home
        self.count = count
        self.log_level = log_level
        self.env = dict(os.environ)
        if not settings.cluster_secret:
            self.env[SECRET_ENV] = secrets.token_urlsafe(32)
        self._stop = asyncio.Event()
        self._deadline = 0.0
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._forced = False

    def command(self, index: int) -> Sequence[str]:
        return (sys.executable, "-m", "hookcast", "serve", "--home", str(self.home.root),
                "--log-level", self.log_level, "--worker", str(index))

    async def run(self) -> int:
        """Until a signal, then drain; 0, or 130 when a second signal forced the end."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)
        log.info("supervising %d workers of %s", self.count, self.home.root)
        await asyncio.gather(*(self._keep(index) for index in range(self.count)))
        log.info("every worker stopped")
        return 130 if self._forced else 0

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self._stop.is_set():
            log.warning("second %s: killing the workers", name)
            self._forced = True
            for process in self._processes.values():
                _send(process, signal.SIGKILL)
            return
        log.info("%s: stopping the workers (within %.0f s; send it again to force)",
                 name, DRAIN_TIMEOUT)
        self._deadline = asyncio.get_running_loop().time() + DRAIN_TIMEOUT
        self._stop.set()

    async def _keep(self, index: int) -> None:
        """Run worker ``index``, again after each unasked exit, until told to stop."""
        loop = asyncio.get_running_loop()
        delay = RESTART_DELAY
        while not self._stop.is_set():
            process = await asyncio.create_subprocess_exec(
                *self.command(index), env=self.env, process_group=0)
            self._processes[index] = process
            started = loop.time()
            log.info("worker %d started (pid %d)", index, process.pid)
            stopping = asyncio.ensure_future(self._stop.wait())
            exited = asyncio.ensure_future(process.wait())
            try:
                await asyncio.wait({stopping, exited}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
            if not exited.done():
                await self._drain(index, process, exited)
                return
            lived = loop.time() - started
            delay = delay if lived < YOUNG else RESTART_DELAY
            log.warning("worker %d (pid %d) %s after %.1f s; starting it again in %.0f s",
                        index, process.pid, _how(exited.result()), lived, delay)
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, RESTART_DELAY_MAX)

    async def _drain(self, index: int, process: asyncio.subprocess.Process,
                     exited: asyncio.Future[int]) -> None:
        """SIGTERM to the worker, then its exit awaited until the deadline, then SIGKILL."""
        _send(process, signal.SIGTERM)
        remaining = max(0.0, self._deadline - asyncio.get_running_loop().time())
        try:
            code = await asyncio.wait_for(asyncio.shield(exited), remaining)
        except TimeoutError:
            log.warning("worker %d (pid %d) still running after %.0f s: killed",
                        index, process.pid, DRAIN_TIMEOUT)
            _send(process, signal.SIGKILL)
            try:
                code = await asyncio.wait_for(exited, KILL_TIMEOUT)
            except TimeoutError:
                log.error("worker %d (pid %d) did not exit even when killed", index,
                          process.pid)
                return
        log.info("worker %d (pid %d) %s", index, process.pid, _how(code))


def _send(process: asyncio.subprocess.Process, signum: signal.Signals) -> None:
    if process.returncode is None:
        try:
            process.send_signal(signum)
        except ProcessLookupError:
            pass  # it has just exited; its wait() says how


def _how(code: int) -> str:
    """How a process ended, from its return code (negative: the signal)."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def supervise(home: Home, settings: Settings, count: int, log_level: str) -> int:
    """Run ``count`` workers of ``home`` until SIGTERM or SIGINT; the exit status."""
    return asyncio.run(Supervisor(home, settings, count, log_level).run())
