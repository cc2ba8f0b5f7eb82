"""The source contract a plugin author can use alone: a drop-in MediaSource written from
scratch (its own encoder, frames built with hookcast.make_frame) plays as any stream;
one that lacks part of the contract is refused, naming what it lacks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from hookcast.config.home import Home
from hookcast.signalling.client import WcsClient
from tests.conftest import write_plugin
from tests.plugins.vod_files import Received, receive

Start = Callable[..., Any]

PATTERN = """
    import asyncio
    from fractions import Fraction

    import av
    from aiortc.mediastreams import MediaStreamError

    from hookcast import hookimpl, make_frame

    FRAMES = 60

    class Pattern:
        kind, mime, keyframes_on_request = "video", "video/VP8", True

        def __init__(self):
            self.encoder = av.CodecContext.create("libvpx", "w")
            self.encoder.width, self.encoder.height = 320, 240
            self.encoder.pix_fmt, self.encoder.time_base = "yuv420p", Fraction(1, 90000)
            self.encoder.options = {"deadline": "realtime", "lag-in-frames": "0"}
            self.count = 0
            self.asked = 0

        def request_keyframe(self):
            self.asked += 1

        async def recv(self):
            while True:
                if self.count >= FRAMES:
                    raise MediaStreamError
                await asyncio.sleep(1 / 30)
                frame = av.VideoFrame(320, 240, "yuv420p")
                for plane in frame.planes:
                    plane.update(bytes([self.count * 4 % 256]) * plane.buffer_size)
                frame.pts, frame.time_base = self.count * 3000, Fraction(1, 90000)
                self.count += 1
                for packet in self.encoder.encode(frame):
                    return make_frame(self.mime, 90000, bytes(packet), packet.pts)

    class PatternSource:
        shared, loop, failure = False, False, ""

        def __init__(self, uri):
            self.uri = uri

        async def open(self):
            return [Pattern()]

        def start(self):
            pass

        async def close(self):
            pass

    class Incomplete:
        shared = False

        def __init__(self, uri):
            self.uri = uri

    @hookimpl
    def media_source_for_uri(uri, home, loop):
        if uri.startswith("pattern://"):
            return PatternSource(uri)
        if uri.startswith("broken://"):
            return Incomplete(uri)
"""


@pytest.mark.usefixtures("loopback")
async def test_a_source_written_from_the_contract_alone_plays(
    home: Home, start_server: Start, connect_client: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_plugin(home, "pattern", PATTERN)
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    player = await client.play("pattern://anything")
    await player.wait_status("PLAYING")
    assert player.last["videoCodec"] == "VP8"
    got = Received()
    await asyncio.wait_for(receive(list(player.tracks), got), 15)
    assert got.errors == 0 and len(got.pictures) >= 45, (got.errors, len(got.pictures))
    ended = await player.wait_status("STOPPED")
    assert ended["info"] == "End of file"
    broken = await client.play("broken://x")
    assert (await broken.wait_status("FAILED"))["info"] == "Failed by error"
    assert "it lacks loop, failure, open, start, close" in caplog.text
