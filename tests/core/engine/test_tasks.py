"""Tasks.wait() against a task that has just finished: its done callback is still queued
on the loop. Waiting for it must yield to the loop; before the fix it spun forever (a
gather of finished tasks completes eagerly in Python 3.12 without yielding), so a
recording test hung now and then. Run in a child process: a spinning loop cannot be
timed out from inside."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCENARIO = textwrap.dedent("""
    import asyncio
    from hookcast.engine.tasks import Tasks

    async def main():
        tasks = Tasks("test")
        failures = []

        async def quick():
            return 1

        async def broken():
            raise ValueError("logged, never lost")

        finished = tasks.spawn(quick())
        failed = tasks.spawn(broken())
        await asyncio.sleep(0)  # both ran and finished; their done callbacks are queued
        assert finished.done() and failed.done() and len(tasks) == 2
        await asyncio.wait_for(tasks.wait(), 5)
        assert len(tasks) == 0
        later = tasks.spawn(asyncio.sleep(0.05))
        await asyncio.wait_for(tasks.wait(), 5)
        assert later.done() and len(tasks) == 0
        print("done")

    asyncio.run(main())
""")


def test_waiting_for_tasks_that_just_finished_returns() -> None:
    result = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr
    assert "test failed" in result.stderr and "logged, never lost" in result.stderr
