"""CPU of the SFU per extra subscriber: hookcast.rtc relay vs aiortc's MediaRelay + re-encode.

Two processes per run, over 127.0.0.1 only (run it inside `unshare -n` if you can):
  edge  - one publisher (640x480 moving pattern, VP8 or H.264) and K subscribers that
          only count what they receive (compat installed: no decoding);
  sfu   - the process measured: receives the publisher and serves the K subscribers,
          either with hookcast.rtc (PublishedTrack/SubscriberTrack, no codec work) or with
          aiortc.contrib.media.MediaRelay (decode once, one encoder per subscriber).
SDP goes over a multiprocessing pipe. The SFU reports time.process_time() over a
window after a warm-up; the script prints CPU per run and the marginal CPU per extra
subscriber for each mode, and their ratio.

    unshare -n sh -c 'ip link set lo up && python bench/fanout_core.py --subscribers 1,4'
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WIDTH, HEIGHT = 640, 480


def loopback_only() -> None:
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def pattern_track() -> Any:
    import av
    from aiortc import VideoStreamTrack

    ramp = bytes((i * 7) & 0xFF for i in range(WIDTH + 512))

    class Pattern(VideoStreamTrack):
        count = 0

        async def recv(self) -> av.VideoFrame:
            pts, time_base = await self.next_timestamp()
            frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
            luma = frame.planes[0]
            shift = (self.count * 3) % 256
            rows = [ramp[(r + shift) % 256 :][:WIDTH].ljust(luma.line_size) for r in range(HEIGHT)]
            luma.update(b"".join(rows))
            for plane in frame.planes[1:]:
                plane.update(bytes([128]) * plane.buffer_size)
            frame.pts, frame.time_base = pts, time_base
            self.count += 1
            return frame

    return Pattern()


async def answer(pc: Any, offer: Any) -> Any:
    await pc.setRemoteDescription(offer)
    await pc.setLocalDescription(await pc.createAnswer())
    return pc.localDescription


async def offer_via(pc: Any, pipe: Connection) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    pipe.send(pc.localDescription)
    loop = asyncio.get_running_loop()
    await pc.setRemoteDescription(await loop.run_in_executor(None, pipe.recv))


async def edge_main(pipe: Connection, mime: str, subscribers: int) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection

    from hookcast.rtc import aiortc as compat

    config = RTCConfiguration(iceServers=[])
    publisher = RTCPeerConnection(config)
    compat.force_codec(publisher.addTransceiver(pattern_track(), "sendonly"), mime)
    await offer_via(publisher, pipe)
    peers, counts = [], [0] * subscribers

    async def count(track: Any, index: int) -> None:
        while True:
            await track.recv()
            counts[index] += 1

    tasks = []
    for index in range(subscribers):
        pc = RTCPeerConnection(config)
        compat.force_codec(pc.addTransceiver("video", "recvonly"), mime)
        await offer_via(pc, pipe)
        peers.append(pc)
        tasks.append(asyncio.create_task(count(pc.getTransceivers()[0].receiver.track, index)))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, pipe.recv)  # the SFU's "done"
    pipe.send(counts)
    for task in tasks:
        task.cancel()
    for pc in [*peers, publisher]:
        await pc.close()


async def sfu_main(
    pipe: Connection, mime: str, mode: str, subscribers: int, window: float
) -> dict[str, float]:
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.contrib.media import MediaRelay

    from hookcast.rtc import aiortc as compat
    from hookcast.rtc.relay import PublishedTrack

    if mode == "relay":
        compat.install()
    config = RTCConfiguration(iceServers=[])
    loop = asyncio.get_running_loop()
    ingest = RTCPeerConnection(config)
    receiver = ingest.addTransceiver("video", "recvonly")
    compat.force_codec(receiver, mime)
    pipe.send(await answer(ingest, await loop.run_in_executor(None, pipe.recv)))
    source = receiver.receiver.track
    published = stock = None
    if mode == "relay":
        published = PublishedTrack(
            source, send_pli=lambda: compat.request_keyframe(receiver.receiver)
        )
        published.start()
    else:
        stock = MediaRelay()
    peers = []
    for _ in range(subscribers):
        pc = RTCPeerConnection(config)
        if published is not None:
            track = published.subscribe()
            sender = pc.addTransceiver(track, "sendonly")
            compat.on_keyframe_request(sender.sender, track.request_keyframe)
        else:
            assert stock is not None
            sender = pc.addTransceiver(stock.subscribe(source), "sendonly")
        compat.force_codec(sender, mime)
        pipe.send(await answer(pc, await loop.run_in_executor(None, pipe.recv)))
        peers.append(pc)
    await asyncio.sleep(3)  # warm-up: ICE, DTLS, first keyframes
    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.sleep(window)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    pipe.send("done")
    counts = await loop.run_in_executor(None, pipe.recv)
    if published:
        await published.close()
    for pc in [*peers, ingest]:
        await pc.close()
    return {
        "cpu_percent": 100 * cpu / wall,
        "min_received": min(counts),
        "max_received": max(counts),
    }


def run_edge(pipe: Connection, mime: str, subscribers: int) -> None:
    loopback_only()
    asyncio.run(edge_main(pipe, mime, subscribers))


def run_sfu(
    pipe: Connection, result: Connection, mime: str, mode: str, k: int, window: float
) -> None:
    loopback_only()
    result.send(asyncio.run(sfu_main(pipe, mime, mode, k, window)))


def measure(mime: str, mode: str, k: int, window: float) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    edge_end, sfu_end = ctx.Pipe()
    result_out, result_in = ctx.Pipe(duplex=False)
    sfu = ctx.Process(target=run_sfu, args=(sfu_end, result_in, mime, mode, k, window))
    edge = ctx.Process(target=run_edge, args=(edge_end, mime, k))
    sfu.start()
    edge.start()
    result: dict[str, float] = result_out.recv()
    sfu.join(30)
    edge.join(30)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", default="video/VP8", choices=["video/VP8", "video/H264"])
    parser.add_argument("--subscribers", default="1,4", help="comma-separated K values")
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring window")
    args = parser.parse_args()
    ks = sorted(int(k) for k in args.subscribers.split(","))
    marginal = {}
    for mode in ("relay", "reencode"):
        cpu = {}
        for k in ks:
            row = measure(args.codec, mode, k, args.seconds)
            cpu[k] = row["cpu_percent"]
            print(
                f"{mode:9} K={k:<3} SFU CPU {row['cpu_percent']:6.1f} %  frames received per "
                f"subscriber {row['min_received']:.0f}-{row['max_received']:.0f}",
                flush=True,
            )
        if len(ks) > 1:
            marginal[mode] = (cpu[ks[-1]] - cpu[ks[0]]) / (ks[-1] - ks[0])
            print(f"{mode:9} marginal CPU per extra subscriber: {marginal[mode]:.2f} % of a core")
    if len(marginal) == 2 and marginal["relay"] > 0:
        ratio = marginal["reencode"] / marginal["relay"]
        print(f"re-encode / relay, per extra subscriber: {ratio:.1f}x")


if __name__ == "__main__":
    main()
