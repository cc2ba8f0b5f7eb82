"""The Opus cache of personal VOD (issue 27), through the real server: a file's AAC is
transcoded once, by a transcode that every reading started meanwhile follows; the next
readings play the cached Opus (and the file's video), a changed file is transcoded
again, a corrupt cache file is not used, a transcode that fails leaves its readings to
make their own."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hookcast.config.home import Home
from hookcast.media import opus_cache, reader
from hookcast.media.opus_cache import SUFFIX, CacheCounts, OpusCache
from hookcast.server import Server
from hookcast.signalling.client import WcsClient
from tests.plugins.test_vod import play
from tests.plugins.vod_files import FPS, Received, make_media, numbers, receive

Start = Callable[..., Any]
Connect = Callable[..., Any]
pytestmark = pytest.mark.usefixtures("loopback")
SECONDS = 3


@pytest.fixture
def transcodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every AAC -> Opus transcoder (a libopus encoder) made, by the file's name."""
    made: list[str] = []
    original = reader._OpusOut.__init__

    def counted(self: Any, stream: Any, codec: str, *args: Any, **kwargs: Any) -> None:
        if codec == "aac":
            made.append(Path(stream.container.name).name)
        original(self, stream, codec, *args, **kwargs)

    monkeypatch.setattr(reader._OpusOut, "__init__", counted)
    yield made


def cache_of(server: Server) -> OpusCache:
    plugin = next(r.plugin for r in server.bus.plugins() if r.name == "vod")
    assert plugin.opus_cache is not None
    return plugin.opus_cache


def cached_files(home: Home) -> list[Path]:
    folder = home.root / "state" / "vod-opus"
    return sorted(folder.iterdir()) if folder.is_dir() else []


async def play_to_the_end(client: WcsClient, uri: str) -> Received:
    player, got, receiving = await play(client, uri)
    ended = await player.wait_status("STOPPED", timeout=SECONDS + 15)
    assert ended["info"] == "End of file"
    await asyncio.wait_for(receiving, 10)
    return got


def assert_played(got: Received, seconds: float = SECONDS) -> None:
    """Every picture from the first, in order; the audio decoded."""
    sequence = numbers(got)
    assert got.errors == 0 and got.video_codec == "video/h264"
    assert sequence[0] == 0 and sequence == list(range(len(sequence)))
    assert len(sequence) >= 0.9 * seconds * FPS
    assert got.audio_frames >= 0.9 * seconds * 50, "Opus frames decoded"


async def test_the_first_reading_transcodes_and_caches_the_next_reads_the_cache(
    home: Home, start_server: Start, connect_client: Connect, transcodes: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_media(home.media / "sample.mp4", seconds=SECONDS)
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    assert_played(await play_to_the_end(client, "vod://sample.mp4"))
    assert transcodes == ["sample.mp4"]
    (made,) = cached_files(home)
    assert made.name.endswith(SUFFIX) and made.stat().st_size > SECONDS * 4000
    assert cache_of(server).counts == CacheCounts(made=1, followed=1)

    caplog.set_level("INFO", logger="hookcast.media.reader")
    again = await asyncio.gather(*(play_to_the_end(client, "vod://sample.mp4")
                                   for _ in range(2)))
    for got in again:
        assert_played(got)
    assert transcodes == ["sample.mp4"], "no libopus encoder for the cached readings"
    assert cache_of(server).counts == CacheCounts(hits=2, made=1, followed=1)
    assert sum("audio from the Opus cache" in r.message for r in caplog.records) == 2
    assert cached_files(home) == [made]


async def test_a_changed_file_is_transcoded_again_and_its_old_cache_goes(
    home: Home, start_server: Start, connect_client: Connect, transcodes: list[str]
) -> None:
    media = make_media(home.media / "sample.mp4", seconds=SECONDS)
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    await play_to_the_end(client, "vod://sample.mp4")
    (first,) = cached_files(home)
    stat = media.stat()
    os.utime(media, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # touched
    assert_played(await play_to_the_end(client, "vod://sample.mp4"))
    (second,) = cached_files(home)
    assert second != first and not first.exists()
    make_media(media, seconds=SECONDS + 1)  # rewritten
    assert_played(await play_to_the_end(client, "vod://sample.mp4"), SECONDS + 1)
    (third,) = cached_files(home)
    assert third not in (first, second)
    assert transcodes == ["sample.mp4"] * 3
    assert cache_of(server).counts == CacheCounts(made=3, followed=3)
    assert_played(await play_to_the_end(client, "vod://sample.mp4"), SECONDS + 1)
    assert cache_of(server).counts == CacheCounts(hits=1, made=3, followed=3)


@pytest.mark.parametrize("damage", ["flipped", "cut", "empty"])
async def test_a_corrupt_cache_file_is_removed_and_the_reading_transcodes(
    home: Home, start_server: Start, connect_client: Connect, transcodes: list[str],
    damage: str,
) -> None:
    make_media(home.media / "sample.mp4", seconds=SECONDS)
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    await play_to_the_end(client, "vod://sample.mp4")
    (made,) = cached_files(home)
    data = bytearray(made.read_bytes())
    if damage == "flipped":
        data[len(data) // 2] ^= 0x40
    made.write_bytes(b"" if damage == "empty" else data[:-5] if damage == "cut" else data)
    assert_played(await play_to_the_end(client, "vod://sample.mp4"))
    assert transcodes == ["sample.mp4"] * 2, "the corrupt file was not used"
    assert cache_of(server).counts == CacheCounts(made=2, corrupt=1, followed=2)
    (remade,) = cached_files(home)
    assert remade.name == made.name
    assert_played(await play_to_the_end(client, "vod://sample.mp4"))
    assert cache_of(server).counts.hits == 1


async def test_readings_started_together_follow_one_transcode(
    home: Home, start_server: Start, connect_client: Connect, transcodes: list[str],
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(opus_cache, "HEAD_START", 1.0)  # (still going on when the
    monkeypatch.setattr(opus_cache, "SPEED", 1.5)       # third reading starts)
    make_media(home.media / "sample.mp4", seconds=SECONDS)
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    caplog.set_level("INFO", logger="hookcast.media.reader")
    together = await asyncio.gather(*(play_to_the_end(client, "vod://sample.mp4")
                                      for _ in range(3)))
    for got in together:
        assert_played(got)
    assert transcodes == ["sample.mp4"], "one libopus encoder for the three readings"
    assert cache_of(server).counts == CacheCounts(made=1, followed=3)
    assert sum("the file's transcode going on" in r.message for r in caplog.records) == 3
    assert len(cached_files(home)) == 1


async def test_a_reading_stopped_before_the_end_leaves_its_transcode_going_on(
    home: Home, start_server: Start, connect_client: Connect, transcodes: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(opus_cache, "HEAD_START", 0.5)  # (it takes two seconds)
    monkeypatch.setattr(opus_cache, "SPEED", 1.5)
    make_media(home.media / "sample.mp4", seconds=SECONDS)
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    player, _, receiving = await play(client, "vod://sample.mp4")
    await asyncio.sleep(0.5)
    (job,) = cache_of(server)._jobs.values()
    await client.stop(player)
    await asyncio.wait_for(receiving, 10)
    assert job.thread.is_alive(), "the transcode goes on after its reading stopped"
    for _ in range(40):  # the transcode is the file's, not the reading's: it finishes
        if [p for p in cached_files(home) if p.name.endswith(SUFFIX)]:
            break
        await asyncio.sleep(0.25)
    (made,) = cached_files(home)
    assert made.name.endswith(SUFFIX), "complete, no temporary file left"
    assert cache_of(server).counts == CacheCounts(made=1, followed=1)
    assert_played(await play_to_the_end(client, "vod://sample.mp4"))
    assert transcodes == ["sample.mp4"] and cache_of(server).counts.hits == 1


async def test_a_transcode_that_fails_leaves_its_readings_to_make_their_own(
    home: Home, start_server: Start, connect_client: Connect, transcodes: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The disk fills up under the transcode, 1.5 s of audio in: the reading following
    it plays its whole audio all the same, made by itself from where it was."""
    written: list[int] = []
    original = opus_cache.OpusWriter._write

    def filling(self: Any, data: bytes) -> None:
        written.append(len(data))
        if len(written) > 2 + int(1.5 * 50):
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, data)

    monkeypatch.setattr(opus_cache.OpusWriter, "_write", filling)
    monkeypatch.setattr(opus_cache, "HEAD_START", 0.5)  # (the failure comes while it plays)
    monkeypatch.setattr(opus_cache, "SPEED", 1.0)
    make_media(home.media / "sample.mp4", seconds=SECONDS)
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    got = await play_to_the_end(client, "vod://sample.mp4")
    assert_played(got)
    steps = {b - a for a, b in zip(got.audio_times, got.audio_times[1:], strict=False)}
    assert steps == {960}, "the audio goes on where the transcode stopped, in 20 ms steps"
    assert len(got.audio_times) >= SECONDS * 50 - 2
    assert transcodes == ["sample.mp4"] * 2, "the transcode, then the reading's own"
    assert cached_files(home) == [], "nothing half-written is left"
    assert cache_of(server).counts == CacheCounts(abandoned=1, followed=1)


async def test_the_servers_stop_ends_a_transcode_and_leaves_no_temporary_file(
    home: Home, start_server: Start, connect_client: Connect, transcodes: list[str]
) -> None:
    make_media(home.media / "long.mp4", seconds=40)
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    player = await client.play("vod://long.mp4", kinds=("video",))
    await player.wait_status("PLAYING")
    folder = home.root / "state" / "vod-opus"
    for _ in range(40):
        if folder.is_dir() and [p for p in folder.iterdir() if p.name.endswith(".tmp")]:
            break
        await asyncio.sleep(0.25)
    else:
        raise AssertionError("no transcode being written")
    job = next(iter(cache_of(server)._jobs.values()))
    await client.close()
    started = asyncio.get_running_loop().time()
    await server.stop()
    assert asyncio.get_running_loop().time() - started < 10
    assert not job.thread.is_alive() and job.failed
    assert cached_files(home) == [], "the temporary file is removed"


async def test_a_looped_reading_plays_its_later_passes_from_the_cache(
    home: Home, start_server: Start, connect_client: Connect, transcodes: list[str]
) -> None:
    make_media(home.media / "short.mp4", seconds=2)
    server = await start_server(home, vod_live_loop="true")
    client: WcsClient = await connect_client(server)
    player, got, receiving = await play(client, "vod-live://short.mp4")
    await asyncio.sleep(7)
    await client.stop(player)
    await asyncio.wait_for(receiving, 10)
    sequence = numbers(got)
    assert got.errors == 0 and sequence.count(0) >= 3, "the file came round again"
    assert got.audio_frames >= 0.9 * 6 * 50, "the audio goes on across passes"
    assert transcodes == ["short.mp4"], "only the first pass transcoded"
    assert cache_of(server).counts.hits >= 2


async def test_an_audio_only_file_plays_from_the_cache(
    home: Home, start_server: Start, connect_client: Connect, transcodes: list[str]
) -> None:
    make_media(home.media / "voice.mp4", video=None, seconds=SECONDS)
    server = await start_server(home)
    client: WcsClient = await connect_client(server)
    for _ in range(2):
        player = await client.play("vod://voice.mp4", kinds=("audio",))
        await player.wait_status("PLAYING")
        got = Received()
        receiving = asyncio.create_task(receive(list(player.tracks), got))
        ended = await player.wait_status("STOPPED", timeout=SECONDS + 15)
        assert ended["info"] == "End of file"
        await asyncio.wait_for(receiving, 10)
        assert got.errors == 0 and got.audio_frames >= 0.9 * SECONDS * 50
    assert transcodes == ["voice.mp4"]
    assert cache_of(server).counts == CacheCounts(hits=1, made=1, followed=1)


async def test_no_cache_with_vod_opus_cache_mb_0(
    home: Home, start_server: Start, connect_client: Connect, transcodes: list[str]
) -> None:
    make_media(home.media / "sample.mp4", seconds=SECONDS)
    server = await start_server(home, vod_opus_cache_mb="0")
    client: WcsClient = await connect_client(server)
    for _ in range(2):
        assert_played(await play_to_the_end(client, "vod://sample.mp4"))
    assert transcodes == ["sample.mp4"] * 2 and cached_files(home) == []
    assert cache_of(server).counts == CacheCounts()


def test_the_cache_keeps_the_most_recently_used_files_that_fit(tmp_path: Path) -> None:
    """Bounded: a new file pushes out the least recently used ones (a read counts as a
    use); a file larger than the whole cache is not kept."""
    cache = OpusCache(tmp_path / "cache", max_bytes=3000)
    files = []
    for number in range(3):
        media = tmp_path / f"m{number}.mp4"
        media.write_bytes(bytes(number + 1))
        files.append(media)
    keys = [cache.key(media) for media in files]
    for age, key in enumerate(keys[:2]):
        write(cache, key, 1000)
        os.utime(cache.folder / key.name, (1000 + age, 1000 + age))
    stored = cache.read(keys[0])  # m0 is now the most recently used
    assert stored is not None and [len(d) for _, d in stored.packets()] == [88] * 10
    stored.close()
    write(cache, keys[2], 1000)
    assert sorted(p.name for p in cache.folder.iterdir()) == sorted([keys[0].name, keys[2].name])
    huge = cache.writer(keys[1])
    assert huge is not None
    for _ in range(40):
        huge.add(0, bytes(100))
    assert not huge.finish() and cache.read(keys[1]) is None
    assert not any(p.name.endswith(".tmp") for p in cache.folder.iterdir())


def write(cache: OpusCache, key: Any, size: int) -> None:
    writer = cache.writer(key)
    assert writer is not None
    for number in range(size // 100):
        writer.add(number * 960, bytes(100 - 12))
    assert writer.finish()
