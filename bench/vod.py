"""VOD benchmark: server CPU per viewer of a file, hookcast vs aiortc's MediaPlayer.

    python bench/vod.py                       # about 4 minutes
    python bench/vod.py --live 1,10 --personal 4 --seconds 6 --drift 20   # a quick look
    python bench/vod.py --drift-only --length 620 --drift 600    # drift over ten minutes

One file for everything: 640x480@30 H.264 (Constrained Baseline, a keyframe every 2 s,
--bitrate) with AAC audio (two tones and noise), --length seconds, encoded once with PyAV and kept in
.cache/. Viewers are bench/loadgen.py players (video only, lean receive: they count
frames and never decode). In one run, one server after the other:

  * hookcast (`hookcast serve`): ``vod-live://`` with 1 viewer, then with each count of
    --live: the server's CPU (utime+stime, /proc, % of one core), per extra viewer and
    in total; then --personal ``vod://`` viewers, each with a reading of its own
    (demux, AVCC -> Annex B), per viewer over no viewer, two ways side by side: first
    readings of a file, which transcode its AAC to Opus (and write the Opus cache), and
    readings of a file whose Opus the cache holds (a second file, warm.mp4, read once
    to its end first), which decode and encode nothing.
  * the baseline (bench/mediaplayer_server.py): the same counts, served by aiortc's
    MediaPlayer + MediaRelay, which decode the file and re-encode it per viewer.

Every window prints, beside the server's CPU, the viewers' processes' CPU, the whole
machine's busy share (/proc/stat, 100 = every core) and the part of it used by processes
outside the benchmark (*others*, as bench/recording.py and bench/fanout.py count it); a
window whose others exceed 10 % of all cores is flagged *disturbed*.

Then drift: one viewer of a ``vod://`` file for --drift seconds (--drift 600 for the
issue's ten minutes): how far the last frame's arrival is from where its timestamp puts
it, measured from the first frame. Benchmarks assert nothing: this prints what it
measured, the ratios and whether each goal was met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import struct
import sys
import tempfile
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import recording
from aiortc.mediastreams import MediaStreamError
from fanout import HOST, NCPU, ROOT, Child, Children
from loadgen import TextureVideoTrack
from recording import WINDOW_HEADER, Window, cpu_window, load_summary, others_range

from hookcast.media.opus_cache import OpusCache
from hookcast.media.reader import OPUS_ENCODER
from hookcast.plugins.vod import OPUS_CACHE_FOLDER as OPUS_CACHE
from hookcast.rtc import aiortc as compat
from hookcast.signalling.client import WcsClient

HERE = Path(__file__).resolve().parent
GOAL_LIVE_50 = 15.0  # % of a core for vod-live:// to 50 viewers
GOAL_PERSONAL = 1.5  # % of a core per personal vod:// viewer
GOAL_DRIFT = 0.050  # seconds over ten minutes


def sound_frames() -> list[bytes]:
    """Sixteen 1024-sample planes of two tones and noise, cycled as the file's audio
    (silence would make the AAC -> Opus transcode look cheaper than it is)."""
    noise = random.Random(27)
    return [struct.pack("<1024f", *(
        0.25 * math.sin(2 * math.pi * 10 * n / 1024) + 0.15 * math.sin(2 * math.pi * 15 * n / 1024)
        + noise.uniform(-0.1, 0.1) for n in range(1024))) for _ in range(16)]


def make_file(path: Path, seconds: int, bitrate: int) -> Path:
    """640x480@30 H.264 + AAC (tones and noise), built once."""
    if path.exists():
        return path
    texture = TextureVideoTrack()
    partial = path.with_suffix(".partial.mp4")
    with av.open(str(partial), "w") as out:
        video = out.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = 640, 480, "yuv420p"
        video.bit_rate = bitrate
        video.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                         "g": "60", "bf": "0"}
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        samples = 0
        planes = sound_frames()
        for index in range(seconds * 30):
            frame = texture.picture()
            frame.pts, frame.time_base = index, Fraction(1, 30)
            for packet in video.encode(frame):
                out.mux(packet)
            while samples < (index + 1) * 1600:
                sound = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
                for plane in sound.planes:
                    plane.update(planes[samples // 1024 % len(planes)][:plane.buffer_size])
                sound.sample_rate, sound.pts = 48000, samples
                for packet in audio.encode(sound):
                    out.mux(packet)
                samples += 1024
        for stream in (video, audio):
            for packet in stream.encode(None):
                out.mux(packet)
    partial.rename(path)
    return path


async def start_hookcast(children: Children, workdir: Path, media: Path) -> tuple[Child, int]:
    server, ws_port, _ = await recording.start_hookcast(
        children, workdir, "hookcast-vod", f"media_dir={media}\nvod_live_loop=true\n")
    return server, ws_port


async def start_baseline(children: Children, media: Path, bitrate: int) -> tuple[Child, int]:
    argv = [sys.executable, str(HERE / "mediaplayer_server.py"), "--media", str(media),
            "--bitrate", str(bitrate)]
    server = await children.start("mediaplayer", argv, talk=True)
    assert server.proc.stdout is not None
    line = await asyncio.wait_for(server.proc.stdout.readline(), 60)
    if not line.startswith(b"READY "):
        raise RuntimeError(f"the baseline did not start (log: {server.log})")
    return server, int(line.split()[1])


class Viewers:
    """A loadgen process of viewers of one name."""

    def __init__(self, child: Child) -> None:
        self.child = child
        self.count = 0

    @classmethod
    async def start(cls, children: Children, port: int, name: str, tag: str) -> Viewers:
        argv = [sys.executable, str(HERE / "loadgen.py"), "players", "--url",
                f"ws://{HOST}:{port}/", "--name", name, "--mode", "lean"]
        return cls(await children.start(f"viewers-{tag}", argv, talk=True))

    async def add(self, count: int) -> None:
        if count <= 0:
            return
        reply = await self.child.ask({"cmd": "add", "count": count}, timeout=180)
        if reply.get("failed"):
            raise RuntimeError(f"viewers failed: {reply['errors']}")
        self.count = reply["players"]


async def measure(children: Children, server: Child, port: int, live: list[int],
                  personal: int, seconds: float, tag: str,
                  cache: Path | None = None, media: Path | None = None) -> dict[str, Window]:
    """Windows with 1 and each count of live viewers, with no viewer, with personal ones
    (and, with the ``cache`` folder of a server that has one, personal ones whose file's
    Opus it holds)."""
    found: dict[str, Window] = {}
    viewers = await Viewers.start(children, port, "vod-live://bench.mp4", f"{tag}-live")
    for count in sorted({1, *live}):
        await viewers.add(count - viewers.count)
        await asyncio.sleep(2)
        found[f"live{count}"] = await cpu_window(server, [viewers.child], seconds,
                                                 f"{tag} vod-live://",
                                                 f"{count} viewer{'s' if count != 1 else ''}")
    await children.stop(viewers.child)
    await asyncio.sleep(3)
    found["idle"] = await cpu_window(server, [], seconds, f"{tag} vod://", "no viewer")
    own = await Viewers.start(children, port, "vod://bench.mp4", f"{tag}-own")
    await own.add(personal)
    await asyncio.sleep(2)
    found["personal"] = await cpu_window(server, [own.child], seconds, f"{tag} vod://",
                                         f"{personal} viewers" + (", transcoding" if cache else ""))
    await children.stop(own.child)
    if cache is None:
        return found
    assert media is not None
    made = cache / OpusCache(cache, 1, OPUS_ENCODER).key(media / "warm.mp4").name
    started = time.monotonic()
    warming = await Viewers.start(children, port, "vod://warm.mp4", f"{tag}-warming")
    await warming.add(1)
    while not await asyncio.to_thread(made.is_file):
        if time.monotonic() - started > warm_length(seconds) + 30:
            raise RuntimeError(f"warm.mp4's Opus was not cached (folder {cache})")
        await asyncio.sleep(0.5)
    await children.stop(warming.child)
    print(f"(warm.mp4's Opus cached {time.monotonic() - started:.1f} s after its first "
          f"reading started: one transcode, faster than real time)", flush=True)
    await asyncio.sleep(2)
    warm = await Viewers.start(children, port, "vod://warm.mp4", f"{tag}-warm")
    await warm.add(personal)
    await asyncio.sleep(2)
    found["cached"] = await cpu_window(server, [warm.child], seconds, f"{tag} vod://",
                                       f"{personal} viewers, Opus cached")
    await children.stop(warm.child)
    return found


def warm_length(seconds: float) -> int:
    """warm.mp4 lasts the personal viewers' start, settling and window, with room."""
    return int(seconds) + 12


async def drift(port: int, seconds: float) -> float:
    """How much later (seconds) the frames of the last second arrive, against where
    their timestamps put them, than those of the first second: the server hands packets
    out up to 40 ms early in batches, so each end is the mean over a second of frames."""
    compat.install()
    compat.use_host_addresses(HOST)
    client = WcsClient(f"ws://{HOST}:{port}/")
    await client.connect()
    try:
        player = await client.play("vod://bench.mp4", kinds=("video",))
        await player.wait_status("PLAYING")
        video = next(t for t in player.tracks if t.kind == "video")
        first = await video.recv()
        started, first_pts = time.monotonic(), int(first.pts or 0)
        lates: list[float] = [0.0]
        until = started + seconds
        with contextlib.suppress(MediaStreamError):  # the end of the file
            while time.monotonic() < until:
                packet = await video.recv()
                lates.append((time.monotonic() - started)
                             - (int(packet.pts or 0) - first_pts) / 90000)
        return sum(lates[-30:]) / len(lates[-30:]) - sum(lates[:30]) / len(lates[:30])
    finally:
        await client.close()


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b > 0 else "n/a"


async def run(args: argparse.Namespace) -> int:
    live = sorted({int(n) for n in args.live.split(",")})
    cache = ROOT / ".cache"
    cache.mkdir(exist_ok=True)
    media = cache / f"vod-bench-{args.length}s-{args.bitrate}-tones"
    media.mkdir(exist_ok=True)
    print(f"file: 640x480@30 H.264 {args.bitrate / 1e6:.1f} Mb/s + AAC (tones, noise), {args.length} s "
          f"(built once); {args.seconds:g} s windows; {NCPU} CPUs", flush=True)
    await asyncio.to_thread(make_file, media / "bench.mp4", args.length, args.bitrate)
    await asyncio.to_thread(make_file, media / "warm.mp4", warm_length(args.seconds),
                            args.bitrate)
    if args.drift_only:
        with tempfile.TemporaryDirectory(prefix="hookcast-vod-") as folder:
            children = Children(Path(folder))
            try:
                _, port = await start_hookcast(children, Path(folder), media)
                late = await drift(port, args.drift)
            finally:
                await children.stop_all()
        print(f"drift over {args.drift:.0f} s: {late * 1000:+.1f} ms -> goal <= "
              f"{GOAL_DRIFT * 1000:.0f} ms {'met' if abs(late) <= GOAL_DRIFT else 'NOT met'}")
        return 0
    print("server: the server process, 100 = one core (loop: its main thread); load gen: the "
          "viewers' processes; machine: every core (100 = all busy); others: the part of it "
          "outside this benchmark (disturbed > 10 %)\n")
    print(WINDOW_HEADER, flush=True)
    with tempfile.TemporaryDirectory(prefix="hookcast-vod-") as folder:
        children = Children(Path(folder))
        try:
            server, port = await start_hookcast(children, Path(folder), media)
            ours = await measure(children, server, port, live, args.personal, args.seconds,
                                 "hookcast", Path(folder) / "hookcast-vod" / OPUS_CACHE, media)
            late = await drift(port, args.drift)
            await children.stop(server)
            base_live = [n for n in live if n <= args.baseline_max]
            baseline, base_port = await start_baseline(children, media, args.bitrate)
            theirs = await measure(children, baseline, base_port, base_live,
                                   args.personal, args.seconds, "MediaPlayer")
        finally:
            await children.stop_all()
    print()
    for line in report(ours, theirs, live, late, args):
        print(line)
    return 0


def report(ours: dict[str, Window], theirs: dict[str, Window], live: list[int], late: float,
           args: argparse.Namespace) -> list[str]:
    """The table, the goals and the load of the windows each figure comes from."""
    top, personal = max(live), int(args.personal)
    base_top = max(n for n in live if n <= args.baseline_max)

    def per_extra(found: dict[str, Window], n: int) -> float:
        return (found[f"live{n}"].server - found["live1"].server) / max(n - 1, 1)

    def per_own(found: dict[str, Window], which: str = "personal") -> float:
        return (found[which].server - found["idle"].server) / personal

    def load(*sides: Sequence[Window]) -> str:
        return "; ".join(others_range(side) for side in sides)

    live_windows = ([ours["live1"], ours[f"live{top}"]],
                    [theirs["live1"], theirs[f"live{base_top}"]])
    own_windows = ([ours["idle"], ours["personal"]], [theirs["idle"], theirs["personal"]])
    ours_live, ours_own = per_extra(ours, top), per_own(ours)
    base_extra = f"{per_extra(theirs, base_top):.2f} %" if base_top > 1 else "— (--live)"
    base_ratio = ratio(per_extra(theirs, base_top), per_extra(ours, top)) if base_top > 1 \
        else "n/a"
    ours_cached = per_own(ours, "cached")
    cached_windows = [ours["idle"], ours["cached"]]
    theirs_own = per_own(theirs)
    total = ours[f"live{top}"]
    lines = [
        "| | hookcast | aiortc MediaPlayer (+ MediaRelay) | ratio | others, % of all cores "
        "(hookcast; MediaPlayer) |",
        "|---|---|---|---|---|",
        f"| vod-live://, per extra viewer (1->{top}; MediaPlayer 1->{base_top}) "
        f"| {ours_live:.2f} % | {base_extra} | {base_ratio} "
        f"| {load(*live_windows)} |",
        f"| vod-live:// to {top} viewers, in total | {total.server:.1f} % | — | "
        f"| {load([total])} |",
        f"| vod://, per viewer (own reading), a file new to the cache: the viewers "
        f"follow its one AAC -> Opus transcode "
        f"| {ours_own:.2f} % | {theirs_own:.2f} % "
        f"| {ratio(theirs_own, ours_own)} | {load(*own_windows)} |",
        f"| vod://, per viewer (own reading), later readings: Opus from the cache "
        f"| {ours_cached:.2f} % | {theirs_own:.2f} % "
        f"| {ratio(theirs_own, ours_cached)} | {load(cached_windows, own_windows[1])} |",
        f"| drift over {args.drift:.0f} s | {late * 1000:+.1f} ms | | | |",
        "",
    ]
    if "live50" in ours:
        fifty = ours["live50"]
        lines.append(f"goal vod-live:// to 50 viewers <= {GOAL_LIVE_50:.0f} %: "
                     f"{fifty.server:.1f} % -> {verdict(fifty.server <= GOAL_LIVE_50)} "
                     f"(others {others_range([fifty])})")
    lines.append(f"goal vod:// viewer <= {GOAL_PERSONAL} %: {ours_cached:.2f} % with the Opus "
                 f"cached -> {verdict(ours_cached <= GOAL_PERSONAL)} (others "
                 f"{others_range(cached_windows)}); a file's first readings "
                 f"{ours_own:.2f} % -> {verdict(ours_own <= GOAL_PERSONAL)} "
                 f"(others {others_range(own_windows[0])})")
    lines.append(f"goal drift <= {GOAL_DRIFT * 1000:.0f} ms (over {args.drift:.0f} s here; 600 s "
                 f"in the issue): {late * 1000:+.1f} ms -> {verdict(abs(late) <= GOAL_DRIFT)}")
    lines.append(load_summary([*ours.values(), *theirs.values()]))
    return lines


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--live", default="1,10,50", help="vod-live:// viewer counts")
    parser.add_argument("--personal", type=int, default=5, help="vod:// viewers")
    parser.add_argument("--baseline-max", type=int, default=10,
                        help="largest live count the baseline is measured at")
    parser.add_argument("--seconds", type=float, default=10, help="each CPU window")
    parser.add_argument("--drift", type=float, default=60, help="seconds of the drift run")
    parser.add_argument("--length", type=int, default=120, help="file length (s)")
    parser.add_argument("--bitrate", type=int, default=1_500_000)
    parser.add_argument("--drift-only", action="store_true",
                        help="only the drift run (--length 620 --drift 600: ten minutes)")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
