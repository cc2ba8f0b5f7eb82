"""A REST-hook backend in a process of its own, for tests that kill and restart it:

    python -m tests.hook_backend --port P --log FILE [--answer METHOD=STATUS[,STATUS...]]
                                 [--hang METHOD]

It serves ``POST http://127.0.0.1:P/hooks/<method>`` and appends one JSON line per hook
it receives to FILE (``{"time", "method", "id", "body", "answer"}``; ``id`` is the
``webhook-id`` header, ``answer`` the status it answers or ``"hang"``), written and
flushed before it answers, so a line is there by the time the server sees the answer.
It answers 200; ``--answer M=500,500,200`` answers M's hooks 500, 500, then 200 from
then on (the last status repeats); ``--hang M`` never answers M (until the client gives
up). It listens with SO_REUSEADDR: killed (even with SIGKILL), it can be started again on
the same port at once. It prints ``listening`` on stdout once it accepts connections.

``HookBackend`` runs it from a test: start, kill, restart, and read what it received.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from aiohttp import web

#: how long a hanging answer waits: longer than any test (the client gives up first)
HANG = 3600.0


class Answers:
    """The status each method's hooks get, in turn (``--answer``), and those that hang."""

    def __init__(self, answers: list[str], hang: list[str]) -> None:
        self.hang = set(hang)
        self.statuses: dict[str, list[int]] = {}
        for item in answers:
            method, _, statuses = item.partition("=")
            self.statuses[method] = [int(s) for s in statuses.split(",")]

    def next(self, method: str) -> int | str:
        if method in self.hang:
            return "hang"
        statuses = self.statuses.get(method)
        if not statuses:
            return 200
        return statuses.pop(0) if len(statuses) > 1 else statuses[0]


class Recorder:
    """Appends one JSON line per hook to the log, in the order the hooks came: one
    writer thread (the file is never written on the event loop), flushed per line."""

    def __init__(self, log: IO[str]) -> None:
        self.log = log
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hook-log")

    def _write(self, line: str) -> None:
        self.log.write(line + "\n")
        self.log.flush()

    async def record(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, separators=(",", ":"))
        await asyncio.get_running_loop().run_in_executor(self.writer, self._write, line)


def handler(answers: Answers, recorder: Recorder) -> Callable[..., Any]:
    async def handle(request: web.Request) -> web.Response:
        method = request.match_info["method"]
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        answer = answers.next(method)
        await recorder.record({"time": time.time(), "method": method,
                               "id": request.headers.get("webhook-id"), "body": body,
                               "answer": answer})
        if answer == "hang":
            await asyncio.sleep(HANG)
        status = int(answer)
        return web.json_response(body if status == 200 else {"status": status},
                                 status=status)
    return handle


async def serve(port: int, answers: Answers, log: Path) -> None:
    with log.open("a") as out:
        recorder = Recorder(out)
        app = web.Application()
        app.router.add_post("/hooks/{method}", handler(answers, recorder))
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        print("listening", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
            recorder.writer.shutdown(wait=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.hook_backend", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--answer", action="append", default=[], metavar="METHOD=STATUS")
    parser.add_argument("--hang", action="append", default=[], metavar="METHOD")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, Answers(args.answer, args.hang), args.log))


# --- from a test ---------------------------------------------------------------------


class HookBackend:
    """The backend process on one port, writing to one log; start, kill and start it
    again as a test needs. ``url`` is what conf/apps.json names."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.url = f"http://127.0.0.1:{port}/hooks"
        self.process: subprocess.Popen[str] | None = None

    def start(self, *options: str, timeout: float = 15) -> None:
        """Start it (``--answer``/``--hang`` options); returns once it accepts
        connections."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.hook_backend", "--port", str(self.port),
             "--log", str(self.log), *options],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
            cwd=Path(__file__).resolve().parents[1])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the backend exited: {self.process.returncode}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"the backend did not listen on {self.port} in {timeout} s")

    def kill(self) -> None:
        """SIGKILL, and wait for it to be gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def received(self) -> list[dict[str, Any]]:
        """Every hook received so far, in order (a line being written is left out)."""
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    async def wait_until(self, condition: Callable[[list[dict[str, Any]]], bool], what: str,
                         timeout: float) -> list[dict[str, Any]]:
        """Poll the log (read off the event loop) until ``condition`` holds for it."""
        deadline = time.monotonic() + timeout
        while True:
            received = await asyncio.to_thread(self.received)
            if condition(received):
                return received
            if time.monotonic() > deadline:
                methods = [(r["method"], r["body"].get("status")) for r in received
                           if isinstance(r["body"], dict)]
                raise AssertionError(f"waited {timeout} s for {what}; the backend received "
                                     f"{len(received)} hooks: {methods[-40:]}")
            await asyncio.sleep(0.1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


if __name__ == "__main__":
    main(sys.argv[1:])
