"""records/ shared by processes (the workers of ``hookcast serve --workers N``): a
server starting finishes the files a crash left, never those another running process
is writing."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from hookcast.config.home import Home
from hookcast.recording import store
from tests.served import Served, configure

STREAM = {"name": "cam", "mediaSessionId": "m1", "published": True, "status": "PUBLISHING",
          "sessionId": "s1", "appKey": "defaultApp"}


def test_a_starting_server_leaves_the_files_of_a_running_process(home: Home) -> None:
    marker = {"state": "recording", "stream": STREAM, "part": 1, "startedAt": time.time()}
    home.records.mkdir(exist_ok=True)
    running = home.records / "running.mp4"  # written by this (running) process
    store.claim_marker(running, marker)
    running.write_bytes(b"")
    gone = subprocess.run(  # a process that claimed a file, then died
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from hookcast.recording import store; "
         f"store.claim_marker(Path(sys.argv[1]), {marker!r})", str(home.records / "cut.mp4")],
        timeout=30, capture_output=True, text=True)
    assert gone.returncode == 0, gone.stderr
    (home.records / "cut.mp4").write_bytes(b"")
    held = store.marker_of(running).read_text()
    assert json.loads(held)[store.OWNER].startswith(f"{__import__('os').getpid()}:")

    configure(home)
    served = Served.start(home)
    try:
        served.wait_ready()
        deadline = time.monotonic() + 20
        while store.marker_of(home.records / "cut.mp4").exists():
            assert time.monotonic() < deadline, served.log()[-3000:]
            time.sleep(0.1)
    finally:
        log = served.stop()
    assert "recovering cut.mp4" in log
    assert "running.mp4" not in log
    assert store.marker_of(running).read_text() == held
