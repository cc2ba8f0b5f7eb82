"""Shutdown goes sinks, sources, sockets: players (and the recording) end first, then
their publisher, each client told while its socket is still open, and the recording's
file is final before the server says it stopped."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aiortc.mediastreams import AudioStreamTrack

from hookcast.config.home import Home
from hookcast.server import Server
from hookcast.signalling.client import WcsClient
from tests.conftest import write_plugin
from tests.core.rtc.relay_harness import PatternVideoTrack

ORDER = """
    import json
    from pathlib import Path
    from hookcast import hookimpl

    LOG = Path(__file__).parents[1] / "order.jsonl"

    def seen(*fields):
        with LOG.open("a") as handle:
            handle.write(json.dumps(fields) + "\\n")

    @hookimpl
    def after_stream_status(stream, previous_status):
        if stream.status in ("STOPPED", "UNPUBLISHED"):
            seen("player" if not stream.published else "publisher", stream.info)

    @hookimpl
    def on_record_finished(recording):
        seen("recording", recording.path.name)

    @hookimpl
    def after_server_stop():
        seen("stopped", "")
"""


@pytest.mark.usefixtures("loopback")
async def test_shutdown_ends_sinks_then_sources_then_sockets(
    home: Home, start_server: Callable[..., Any]
) -> None:
    write_plugin(home, "order", ORDER)
    server: Server = await start_server(home, on_record_hook_script="")
    url = f"ws://127.0.0.1:{server.ws_port}/"
    publisher, player = WcsClient(url), WcsClient(url)
    try:
        await publisher.connect()
        published = await publisher.publish("cam", [PatternVideoTrack(), AudioStreamTrack()],
                                            record=True)
        await published.wait_status("PUBLISHING")
        await player.connect()
        played = await player.play("cam")
        await played.wait_status("PLAYING")
        await server.stop()
        # both clients heard why while their sockets were open
        assert (played.status, played.info) == ("STOPPED", "Requested stream shutdown")
        assert (published.status, published.info) == ("UNPUBLISHED",
                                                       "Requested stream shutdown")
    finally:
        await player.close()
        await publisher.close()
    seen = [json.loads(line) for line in (home.root / "order.jsonl").read_text().splitlines()]
    kinds = [kind for kind, _ in seen]
    # plugins hear of ends in the background: the recording's may come before or after
    # the publisher's; the player's comes first and everything before the end
    assert kinds in (["player", "recording", "publisher", "stopped"],
                     ["player", "publisher", "recording", "stopped"]), seen
    (home_file,) = [p for p in home.records.iterdir() if not p.name.startswith(".")]
    assert home_file.name == published.last["recordName"]
