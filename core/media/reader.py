"""Reading a media file as a WebRTC source, without re-encoding its video.

A thread per reading demuxes the file and makes the packets the relay carries: H.264
from AVCC to Annex B with SPS and PPS before every keyframe (``h264_mp4toannexb``), VP8
as it is, Opus as it is and AAC transcoded to Opus (the only decode). Video times are
put in 1/90000, audio in 1/48000, as a WebRTC publisher's are. When the reading has an
``OpusCache``, an AAC file's Opus is made once, by a transcode of its own that every
reading of the file follows, and kept: the next readings of the unchanged file read it
back (without a cache, or for a file whose Opus would not fit in it, each reading
transcodes its own). The thread reads at most
AHEAD seconds past the playhead, so a file is never held in memory. One pacer per
reading hands the packets of every track out at their times, against one clock for the
whole reading (no drift, however long the file): it wakes every PACE seconds at most and
hands out, in that one wake-up, each packet due before its next (a packet goes up to PACE
early, which a player's jitter buffer takes without noticing). A looped reading goes on
from the file's end with times that keep growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from hookcast.media.opus_cache import (
    MAGIC,
    RECORD,
    OpusCache,
    StoredOpus,
    Transcode,
    TranscodeFailed,
)
from hookcast.rtc.packets import EncodedPacket, FrameMeta, make_packet

log = logging.getLogger(__name__)

VIDEO_RATE = 90_000
AUDIO_RATE = 48_000
OPUS_FRAME = 960  # 20 ms at 48 kHz
OPUS_BITRATE = 64_000
#: libopus complexity (0-10, default 10): 5 costs about half and sounds the same at 64 kb/s
OPUS_COMPLEXITY = 5
#: seconds of AAC decoded before the point a reading's own transcode takes over from
WARM_UP = 0.1
#: what the Opus made from AAC depends on (the Opus cache keeps one version per value)
OPUS_ENCODER = f"libopus {OPUS_BITRATE} b/s, complexity {OPUS_COMPLEXITY}, {OPUS_FRAME} samples"
#: seconds of media read ahead of the playhead
AHEAD = 1.0
#: packets a track holds at most, read ahead or handed out and not yet taken (about 25 s
#: of video and audio, which the read-ahead never comes near; see FileReading._deliver)
TRACK_QUEUE = 2000
#: seconds between two of the pacer's wake-ups at most: each hands out every packet due
#: before the next (25 wake-ups a second per reading, whatever its tracks and packet rates)
PACE = 0.040
VIDEO_CODECS = {"h264": "video/H264", "vp8": "video/VP8"}
AUDIO_CODECS = {"aac": "audio/opus", "opus": "audio/opus"}


FILE_NOT_FOUND_INFO = "File not found"
WRONG_FORMAT_INFO = "File has wrong format"


class WrongFormat(Exception):
    """Not a file hookcast can send without re-encoding video; the message says why."""


@dataclass(frozen=True)
class FileInfo:
    """What a media file holds, as far as sending it goes."""

    path: Path
    size: int
    duration: float
    video: str  # the codec name in the file ("h264", "vp8"), "" when none
    audio: str  # "aac", "opus", "" when none
    width: int = 0
    height: int = 0

    @property
    def codecs(self) -> dict[str, str]:
        """kind -> the MIME type the relay sends."""
        found = {}
        if self.video:
            found["video"] = VIDEO_CODECS[self.video]
        if self.audio:
            found["audio"] = AUDIO_CODECS[self.audio]
        return found


def inspect_file(path: Path) -> FileInfo:
    """Open ``path`` and check it can be sent (blocking). Raises FileNotFoundError, or
    WrongFormat saying what is wrong."""
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        with av.open(str(path)) as container:
            video = next(iter(container.streams.video), None)
            audio = next(iter(container.streams.audio), None)
            if video is None and audio is None:
                raise WrongFormat("no audio or video track")
            video_codec = video.codec_context.name if video is not None else ""
            audio_codec = audio.codec_context.name if audio is not None else ""
            if video is not None and video_codec not in VIDEO_CODECS:
                raise WrongFormat(f"video {video_codec}: only H.264 and VP8 are sent")
            if audio is not None and audio_codec not in AUDIO_CODECS:
                raise WrongFormat(f"audio {audio_codec}: only AAC and Opus are sent")
            if video is not None and _reorders(container, video):
                raise WrongFormat("H.264 with B-frames: WebRTC players cannot take them")
            duration = container.duration / av.time_base if container.duration else 0.0
            width = video.codec_context.width if video is not None else 0
            height = video.codec_context.height if video is not None else 0
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        raise WrongFormat(f"not a readable media file ({type(error).__name__})") from None
    return FileInfo(path, path.stat().st_size, duration, video_codec, audio_codec,
                    width or 0, height or 0)


def _reorders(container: Any, video: Any) -> bool:
    """True when the first pictures are stored out of display order (B-frames); reading
    them also proves the file has media, not just headers."""
    seen = 0
    for packet in container.demux(video):
        if packet.pts is None or packet.dts is None:
            continue
        if packet.pts != packet.dts:
            return True
        seen += 1
        if seen >= 48:
            break
    if seen == 0:
        raise WrongFormat("no video frames")
    return False


class _End:
    """Put on a track's queue after its last packet."""


END = _End()


class FileReading:
    """One reading of a file: a thread makes packets, ``tracks`` hand them out in time.

    Nothing is read until a track is first asked for a packet (``recv``); from then on
    the reading goes on by the clock. ``close()`` stops the thread.
    """

    def __init__(self, info: FileInfo, loop_file: bool = False, name: str = "",
                 opus_cache: OpusCache | None = None) -> None:
        self.info = info
        self.loop_file = loop_file
        #: where the Opus made from an AAC file is kept for the next readings (None: none);
        #: may be set until the reading starts
        self.opus_cache = opus_cache
        self.name = name or info.path.name
        self.tracks = {kind: FileTrack(self, kind, mime) for kind, mime in info.codecs.items()}
        self._loop = asyncio.get_running_loop()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._clock_set = threading.Event()
        #: monotonic time at which the reading's media time is zero (set at the first recv)
        self._zero: float | None = None
        self.loops = 0
        #: why the reading ended early ("" at the end of the file): the info players see
        self.failure = ""
        self._pass_end = 0.0
        self._pacer: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()  # packets came from the thread
        #: the pacer's wake-ups (each hands out every packet due before the next)
        self.wakeups = 0

    # --- on the loop --------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"vod {self.name}",
                                            daemon=True)
            self._thread.start()
            self._pacer = self._loop.create_task(self._pace(), name=f"vod pacer {self.name}")
            self._pacer.add_done_callback(self._paced)

    def zero(self, first_seconds: float) -> float:
        """The clock's zero, set by the first packet handed out."""
        if self._zero is None:
            self._zero = time.monotonic() - first_seconds
            self._clock_set.set()
        return self._zero

    async def close(self) -> None:
        self._stopped.set()
        self._clock_set.set()
        for track in self.tracks.values():
            track.stop()
        pacer = self._pacer
        if pacer is not None and not pacer.done():
            pacer.cancel()
            await asyncio.wait({pacer}, timeout=5)
        thread = self._thread
        if thread is not None:
            await asyncio.to_thread(thread.join, 5)

    def _paced(self, pacer: asyncio.Task[None]) -> None:
        """The pacer ended: at the end of every track, or by a bug (the tracks end)."""
        if not pacer.cancelled() and pacer.exception() is not None:
            log.error("reading %s: its pacer failed; its stream ends", self.name,
                      exc_info=pacer.exception())
            self.failure = WRONG_FORMAT_INFO
            self._stopped.set()
            for track in self.tracks.values():
                track.stop()

    def _deliver(self, batch: list[tuple[str, EncodedPacket | _End]]) -> None:
        """On the loop: the thread's packets wait in their track for the pacer. A track
        holds TRACK_QUEUE packets at most: one whose consumer stopped taking them loses
        the oldest, which are past due anyway, counted in ``dropped``."""
        for kind, packet in batch:
            track = self.tracks.get(kind)
            if track is not None:
                track.read(packet)
        self._arrived.set()

    async def _pace(self) -> None:
        """Hand each track's packets out at their times, every track in one wake-up: at
        each, what is due before the next goes; then sleep PACE, or until PACE before the
        next packet due (a gap in the file), or until the thread brings more."""
        tracks = list(self.tracks.values())
        while not all(track.done for track in tracks):
            self.wakeups += 1
            now = time.monotonic()
            for track in tracks:
                track.hand_out(now + PACE)
            due = [d for d in (track.next_due() for track in tracks) if d is not None]
            if not due:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            delay = max(PACE, min(due) - PACE - time.monotonic())
            if delay > 2 * PACE and len(due) < sum(not t.done for t in tracks):
                # a far packet, and a track with none yet: the thread's next wake this
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), delay)
                continue
            await asyncio.sleep(delay)

    # --- on the reading thread ------------------------------------------------------------

    def _hand(self, batch: list[tuple[str, EncodedPacket | _End]]) -> None:
        """Give the loop a batch of packets, in one wake-up."""
        if not batch:
            return
        try:
            self._loop.call_soon_threadsafe(self._deliver, batch)
        except RuntimeError:  # the loop is closed
            self._stopped.set()

    def _horizon(self) -> float:
        """The media time up to which packets may be handed out now."""
        if self._zero is None:
            return AHEAD
        return time.monotonic() - self._zero + AHEAD

    def _wait_for(self, seconds: float) -> None:
        """Hold the thread until media time ``seconds`` is at most AHEAD / 2 in the
        future: the thread then reads on to AHEAD, in one batch (two wake-ups a second
        rather than one per packet)."""
        while not self._stopped.is_set():
            if self._zero is None:
                if seconds <= AHEAD:
                    return
                self._clock_set.wait(0.5)
                continue
            early = self._zero + seconds - AHEAD / 2 - time.monotonic()
            if early <= 0:
                return
            self._stopped.wait(min(early, 0.5))

    def _run(self) -> None:
        offset = 0.0
        batch: list[tuple[str, EncodedPacket | _End]] = []
        try:
            while not self._stopped.is_set():
                self._pass_end = offset
                horizon = self._horizon()
                for kind, packet in self._packets(offset):
                    seconds = float((packet.pts or 0) * (packet.time_base or 0))
                    if seconds > horizon and batch:  # (an empty one: a gap, or a file
                        self._hand(batch)            # starting late: take one on)
                        batch = []
                        self._wait_for(seconds)
                        horizon = self._horizon()
                    if self._stopped.is_set():
                        return
                    batch.append((kind, packet))
                if not self.loop_file or self._stopped.is_set() or not self._same_file():
                    break
                self.loops += 1
                offset = max(self._pass_end, offset + 0.02)  # the next pass follows on
        except (av.error.FFmpegError, WrongFormat, OSError, ValueError) as error:  # changed
            self.failure = FILE_NOT_FOUND_INFO if isinstance(error, FileNotFoundError) \
                else WRONG_FORMAT_INFO
            log.error("reading %s failed: %s", self.name, type(error).__name__)
        except Exception:  # a bug: the reading ends, not the server
            self.failure = WRONG_FORMAT_INFO
            log.exception("reading %s failed; its stream ends", self.name)
        finally:
            self._hand([*batch, *((kind, END) for kind in self.tracks)])

    def _same_file(self) -> bool:
        """Before another pass: the file is still there and still what was checked."""
        try:
            again = inspect_file(self.info.path)
        except FileNotFoundError:
            self.failure = FILE_NOT_FOUND_INFO
        except (WrongFormat, OSError) as error:
            self.failure = WRONG_FORMAT_INFO
            log.error("%s changed while it was looped: %s", self.name, error)
        else:
            if again.codecs == self.info.codecs:
                return True
            self.failure = WRONG_FORMAT_INFO
            log.error("%s changed while it was looped: now %s", self.name, again.codecs)
        return False

    def _packets(self, offset: float) -> Iterator[tuple[str, EncodedPacket]]:
        """Every packet of one pass over the file, in file order, ``offset`` seconds on."""
        with av.open(str(self.info.path)) as container:
            video = next(iter(container.streams.video), None)
            sound = self._audio(container, offset)
            try:
                chosen = [s for s in (video, sound and sound.stream) if s is not None]
                annexb = (av.BitStreamFilterContext("h264_mp4toannexb", video)
                          if video is not None and self.info.video == "h264" else None)
                for packet in container.demux(*chosen) if chosen else ():  # audio only, cached
                    if self._stopped.is_set():
                        return
                    if packet.stream is not video:
                        yield from self._audio_packets(sound, packet)
                        continue
                    if packet.pts is None or packet.size == 0:
                        continue
                    if packet.dts is not None and packet.pts != packet.dts:
                        raise WrongFormat("B-frames")  # the file changed since it was checked
                    seconds, length = float(packet.pts * packet.time_base), packet.duration or 0
                    self._pass_end = max(self._pass_end, offset + seconds + (
                        float(length * packet.time_base) if length else 1 / 30))
                    yield from self._audio_packets(sound, None, seconds)
                    for ready in (annexb.filter(packet) if annexb is not None else [packet]):
                        yield "video", self._video(ready, offset)
                yield from self._audio_packets(sound, None)
            finally:
                if sound is not None:
                    sound.close()

    def _audio(self, container: Any, offset: float) -> _Sound | None:
        """The audio of one pass: Opus as it is; AAC from the Opus cache when it has this
        file, else following the file's transcode (started if none is going on), else
        (no cache, too big for it) transcoded by this reading."""
        audio = next(iter(container.streams.audio), None)
        cache = self.opus_cache
        if audio is None or self.info.audio != "aac" or cache is None or not cache.enabled:
            return _OpusOut(audio, self.info.audio, offset) if audio is not None else None
        key = cache.key(self.info.path)
        path = key.path
        found = cache.follow(key, lambda: transcoded(path), opus_bytes(self.info.duration))
        if isinstance(found, StoredOpus):
            log.info("%s: audio from the Opus cache (%d packets)", self.name, found.count)
            return _CachedOpus(found, offset)
        if found is None:
            return _OpusOut(audio, self.info.audio, offset)
        job, handle = found
        log.info("%s: audio from the file's transcode going on", self.name)
        return _FollowedOpus(job, handle, path, offset, self._stopped)

    def _audio_packets(self, sound: _Sound | None, packet: Any,
                       until: float | None = None) -> Iterator[tuple[str, EncodedPacket]]:
        """The audio made from a demuxed ``packet``, or (``until``) what the cache has up
        to that media time, or (neither) the rest at the end of the file."""
        if sound is None:
            return
        made = sound.until(until) if until is not None else sound.feed(packet)
        for one in made:
            yield "audio", one
        self._pass_end = max(self._pass_end, sound.end)

    def _video(self, packet: Any, offset: float) -> EncodedPacket:
        seconds = float(packet.pts * packet.time_base) + offset
        return make_packet(VIDEO_CODECS[self.info.video], VIDEO_RATE, bytes(packet),
                           round(seconds * VIDEO_RATE), arrival=time.monotonic())


def opus_bytes(duration: float) -> int:
    """About how many bytes a file's Opus takes in the cache (with room)."""
    packets = duration * AUDIO_RATE / OPUS_FRAME
    return int(1.25 * (duration * OPUS_BITRATE / 8 + packets * RECORD.size)) + 4096


def transcoded(path: Path, after: int = -1) -> Iterator[tuple[int, bytes]]:
    """The AAC of ``path`` as Opus packets: (time in 1/48000 from the file's start,
    bytes). With ``after`` (the time of the last packet a reading handed out), the ones
    that follow it: the file is sought a little before, the decoder warms up on what
    comes before, and the packets go on from ``after`` in steps of one Opus frame."""
    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        if after > 0 and audio.time_base:
            back = max(after - WARM_UP * AUDIO_RATE, 0)
            container.seek(int(back / AUDIO_RATE / audio.time_base), stream=audio,
                           backward=True)
        out = _OpusOut(audio, "aac", 0.0)
        following = after + OPUS_FRAME
        for packet in container.demux(audio):
            for made in out.feed(packet):
                if after < 0:
                    yield int(made.pts or 0), bytes(made)
                elif int(made.pts or 0) >= following - OPUS_FRAME // 2:
                    yield following, bytes(made)
                    following += OPUS_FRAME
        for made in out.feed(None):
            yield (int(made.pts or 0), bytes(made)) if after < 0 else (following, bytes(made))
            following += OPUS_FRAME


class _OpusOut:
    """Audio packets of a file as Opus packets with 1/48000 times: Opus as it is (its
    times counted in samples), AAC decoded, resampled and encoded."""

    stream: Any

    def __init__(self, stream: Any, codec: str, offset: float) -> None:
        self.stream = stream
        self.shift = round(offset * AUDIO_RATE)
        self.samples: int | None = None  # the next packet's time from the file's start
        self.transcode = codec == "aac"
        if self.transcode:
            self.resampler = av.AudioResampler(format="s16", layout="stereo", rate=AUDIO_RATE,
                                               frame_size=OPUS_FRAME)
            self.encoder = av.CodecContext.create("libopus", "w")
            self.encoder.sample_rate = AUDIO_RATE
            self.encoder.layout = "stereo"
            self.encoder.format = av.AudioFormat("s16")
            self.encoder.bit_rate = OPUS_BITRATE
            self.encoder.time_base = Fraction(1, AUDIO_RATE)
            self.encoder.options = {"compression_level": str(OPUS_COMPLEXITY)}
            self.encoder.open()
            self.encoded = 0

    @property
    def end(self) -> float:
        """The media time the audio made so far reaches (0 before any)."""
        return (self.shift + self.samples) / AUDIO_RATE if self.samples is not None else 0.0

    def _start(self, seconds: float) -> None:
        if self.samples is None:
            self.samples = round(max(seconds, 0.0) * AUDIO_RATE)

    def until(self, seconds: float) -> Iterator[EncodedPacket]:
        """Nothing: this audio comes with the file's own audio packets."""
        return iter(())

    def feed(self, packet: Any) -> Iterator[EncodedPacket]:
        """The Opus made from a demuxed packet; None at the end of the file."""
        if not self.transcode:
            if packet is None or packet.pts is None or packet.size == 0:
                return
            self._start(float(packet.pts * packet.time_base))
            assert self.samples is not None and packet.time_base is not None
            yield make_packet("audio/opus", AUDIO_RATE, bytes(packet), self.shift + self.samples,
                              arrival=time.monotonic())
            length = float(packet.duration * packet.time_base) if packet.duration else 0.02
            self.samples += round(length * AUDIO_RATE) or OPUS_FRAME
            return
        frames = packet.decode() if packet is not None else []
        for frame in frames:
            if frame.pts is not None:
                self._start(float(frame.pts * frame.time_base))
            for resampled in self.resampler.resample(frame):
                yield from self._encode(resampled)
        if packet is None:
            for resampled in self.resampler.resample(None):
                yield from self._encode(resampled)
            yield from self._encode(None)

    def _encode(self, frame: Any) -> Iterator[EncodedPacket]:
        if frame is not None:
            frame.pts = self.encoded
            frame.time_base = Fraction(1, AUDIO_RATE)
            self.encoded += frame.samples
        for encoded in self.encoder.encode(frame):
            self._start(0.0)
            assert self.samples is not None
            yield make_packet("audio/opus", AUDIO_RATE, bytes(encoded),
                              self.shift + self.samples, arrival=time.monotonic())
            self.samples += OPUS_FRAME

    def close(self) -> None:
        pass


class _CachedOpus:
    """A file's AAC as the Opus the cache holds for it: nothing is demuxed, decoded or
    encoded; ``until(t)`` hands out the packets up to media time t (the video's), so
    audio and video stay interleaved by time as they are in the file."""

    stream = None

    def __init__(self, stored: StoredOpus, offset: float) -> None:
        self.stored = stored
        self.shift = round(offset * AUDIO_RATE)
        self.end = 0.0
        self._records = stored.packets()
        self._next = next(self._records, None)

    def until(self, seconds: float) -> Iterator[EncodedPacket]:
        limit = seconds * AUDIO_RATE
        while self._next is not None and self._next[0] <= limit:
            pts, data = self._next
            yield make_packet("audio/opus", AUDIO_RATE, data, self.shift + pts,
                              arrival=time.monotonic())
            self.end = (self.shift + pts + OPUS_FRAME) / AUDIO_RATE
            self._next = next(self._records, None)

    def feed(self, packet: Any) -> Iterator[EncodedPacket]:
        """At the end of the file (None): every packet left."""
        return self.until(math.inf) if packet is None else iter(())

    def close(self) -> None:
        self.stored.close()


class _FollowedOpus:
    """A file's AAC as the Opus its ``Transcode`` is writing: read from the temporary
    file as far as it was written, waiting there for more (nothing demuxed, decoded or
    encoded). A transcode that stops before the end leaves this reading to make its own
    Opus from where it is (``transcoded(after=...)``)."""

    stream = None

    def __init__(self, job: Transcode, handle: Any, path: Path, offset: float,
                 stopped: threading.Event) -> None:
        self.job = job
        self.stopped = stopped
        self.handle = handle
        self.path = path
        self.shift = round(offset * AUDIO_RATE)
        self.end = 0.0
        self._position = handle.seek(len(MAGIC))  # what was read of it
        self._given = -1  # the last time handed out
        self._own: Iterator[tuple[int, bytes]] | None = None
        self._next: tuple[int, bytes] | None = None
        self._started = False

    def _advance(self) -> None:
        """The next packet in ``_next`` (None at the end)."""
        if self._own is None:
            try:
                if self.job.wait_past(self._position, stopped=self.stopped) is not None:
                    self._next = self._read()
                    return
                self._next = None
                return
            except TranscodeFailed as error:
                if self.stopped.is_set():
                    self._next = None
                    return
                log.warning("%s: the shared transcode stopped (%s): this reading makes its "
                            "own Opus from %.1f s", self.path.name, error,
                            max(self._given, 0) / AUDIO_RATE)
                self._own = transcoded(self.path, self._given)
        self._next = next(self._own, None)

    def _read(self) -> tuple[int, bytes]:
        """The next record, written whole before it was flushed (raises TranscodeFailed
        if it is not there: the file was cut)."""
        header = self.handle.read(RECORD.size)
        if len(header) != RECORD.size:
            raise TranscodeFailed("its temporary file was cut short")
        pts, length = RECORD.unpack(header)
        data = self.handle.read(length)
        if len(data) != length:
            raise TranscodeFailed("its temporary file was cut short")
        self._position += RECORD.size + length
        return pts, data

    def until(self, seconds: float) -> Iterator[EncodedPacket]:
        if not self._started:
            self._started = True
            self._advance()
        limit = seconds * AUDIO_RATE
        while self._next is not None and self._next[0] <= limit:
            pts, data = self._next
            yield make_packet("audio/opus", AUDIO_RATE, data, self.shift + pts,
                              arrival=time.monotonic())
            self._given = pts
            self.end = (self.shift + pts + OPUS_FRAME) / AUDIO_RATE
            self._advance()

    def feed(self, packet: Any) -> Iterator[EncodedPacket]:
        """At the end of the file (None): every packet left."""
        return self.until(math.inf) if packet is None else iter(())

    def close(self) -> None:
        self.handle.close()
        if self._own is not None:
            close = getattr(self._own, "close", None)
            if close is not None:
                close()


_Sound = _OpusOut | _CachedOpus | _FollowedOpus


class FileTrack(MediaStreamTrack):
    """One kind of a FileReading; ``recv()`` returns each packet at its time, as the
    reading's pacer hands it out (hookcast.MediaSource's SourceTrack: a file cannot make
    keyframes on request). A packet handed out is taken without a wake-up of its own."""

    keyframes_on_request = False

    def request_keyframe(self) -> None:
        """A file has the keyframes it has."""

    def __init__(self, reading: FileReading, kind: str, mime: str) -> None:
        super().__init__()
        self.kind = kind
        self.mime = mime
        self.reading = reading
        self._read: deque[EncodedPacket | _End] = deque()  # from the thread, not yet due
        self._ready: deque[EncodedPacket | _End] = deque()  # handed out, not yet taken
        self._waiter: asyncio.Future[None] | None = None
        #: packets dropped because the consumer fell TRACK_QUEUE packets behind
        self.dropped = 0
        #: the END came through the pacer: nothing more will be handed out
        self.done = False

    def read(self, item: EncodedPacket | _End) -> None:
        """A packet from the reading's thread (on the loop)."""
        if len(self._read) + len(self._ready) >= TRACK_QUEUE:
            (self._ready or self._read).popleft()
            self.dropped += 1
        self._read.append(item)

    def next_due(self) -> float | None:
        """When the next packet read is due (None: none waits); the first one sets the
        reading's clock."""
        if not self._read:
            return None
        item = self._read[0]
        if isinstance(item, _End):
            return -math.inf
        seconds = float((item.pts or 0) * (item.time_base or 0))
        return self.reading.zero(seconds) + seconds

    def hand_out(self, limit: float) -> None:
        """Every packet due by ``limit`` is ready for ``recv``."""
        handed = False
        while self._read:
            due = self.next_due()
            assert due is not None
            if due > limit:
                break
            item = self._read.popleft()
            if isinstance(item, _End):
                self.done = True
            elif isinstance(item.opaque, FrameMeta):  # it "arrives" when it is due
                item.opaque = replace(item.opaque, arrival=due)  # (recordings time
            self._ready.append(item)                             # packets by arrival)
            handed = True
        if handed and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def recv(self) -> EncodedPacket:
        self.reading.start()
        while not self._ready:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._ready.popleft()
        if isinstance(item, _End) or self.readyState != "live":
            self.stop()
            raise MediaStreamError
        return item

    def stop(self) -> None:
        super().stop()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
