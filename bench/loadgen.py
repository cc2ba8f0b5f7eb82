"""Load generator for bench/fanout.py: one publisher, or a process full of players.

Started by bench/fanout.py, never by hand (but it works by hand too). It talks JSON
lines: commands on stdin, one reply line per command on stdout; EOF on stdin ends it.

    python bench/loadgen.py publisher --url ws://127.0.0.1:PORT/ --name bench --bitrate 1200000
        replies {"event": "ready"} once PUBLISHING, then answers
        "snap" -> {"t", "frames", "rtp_packets", "rtp_bytes"}     (frames = encoded frames sent)

    python bench/loadgen.py players --url ws://127.0.0.1:PORT/ --name bench [--mode lean]
        {"cmd": "add", "count": K} -> {"event": "added", "players", "failed", "errors"}
            once every new player is PLAYING and has received its first frame
        "snap" -> {"t", "players": [[frames, bytes], ...]}

    python bench/loadgen.py whep-players --url http://127.0.0.1:HTTP_PORT/ --name bench --mode count
        the same commands; each player is the peer connection WcsClient.play makes, its
        offer POSTed to /whep/<name> (WHEP) instead of playStream; close() DELETEs it

Both sides use hookcast's WcsClient (hookcast.signalling.client) and gather ICE candidates on
127.0.0.1 only. Players never decode. Two ways to receive (--mode):

  full  hookcast.rtc.aiortc.install(): aiortc's whole receive path (REMB estimator, NACK
        generator, hookcast's RelayJitterBuffer, a decoder thread per player handing
        over av.Packet). One av.Packet is one video frame; players count them. Measured
        here: 1.4-2 % of a core per player, so 100 of them do not fit on 2 cores.
  lean  the same WebRTC stack (ICE, DTLS, SRTP decryption, RTP parsing, RTCP receiver
        reports every ~1 s), but the per-packet receive work is replaced by a counter
        (LeanReceive): a frame counts when its packets arrived contiguously up to the
        marker bit, and a REMB (10 Mb/s) goes back every 500 ms, as aiortc's
        estimator does (feedback_interval). No NACK, PLI or frame assembly, which on
        loopback without loss never fire anyway. About 4x cheaper per player.
  count lean until the first frame, then the RTP is read off the ICE socket by one epoll
        thread per process (asyncio stops reading it: DatagramTransport.pause_reading)
        and counted from the RTP header, which SRTP leaves in clear: no decryption,
        no aiortc receive path. Everything else (STUN consent checks, DTLS, RTCP from the
        server) goes back to aiortc on the loop; aiortc's receiver keeps sending receiver
        reports, and a REMB goes back every 500 ms: the server gets the RTCP it gets
        from a lean player. Several times cheaper still, so that 200 players fit next to
        the server on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import select
import socket
import sys
import threading
import time
from typing import Any

import aiohttp
import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.codecs import vpx
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack

from hookcast.rtc import aiortc as compat
from hookcast.signalling.client import ClientStream, WcsClient

WIDTH, HEIGHT = 640, 480
SETUP_CONCURRENCY = 4  # players connecting at once, per process
FIRST_FRAME_TIMEOUT = 20.0


def reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def die_with_parent() -> None:
    """Linux: get SIGTERM when the parent dies (fanout.py also sets this before exec)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# --- publisher ------------------------------------------------------------------------


class TextureVideoTrack(VideoStreamTrack):
    """640x480 at 30 fps: a random-noise texture scrolling 3 px right and 2 px down per
    frame, with a bright block sliding across and slowly cycling chroma.

    Detailed enough that aiortc's VP8 encoder, in CBR, reaches its target bitrate
    (measured: target 1.2 Mb/s gives 1.3 Mb/s), yet motion-compensable, so the encoder
    does not overshoot the way it does on fresh noise. Frames are built by slicing a
    precomputed texture (about 1 ms per frame).
    """

    def __init__(self, seed: int = 1) -> None:
        super().__init__()
        self.count = 0
        rnd = random.Random(seed)
        self._tw, th = WIDTH + 256, HEIGHT + 256
        self._texture = rnd.randbytes(self._tw * th)

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = self.picture()
        frame.pts, frame.time_base = pts, time_base
        return frame

    def picture(self) -> av.VideoFrame:
        """The next picture (no timing): what recv() sends, for pre-encoded clips too."""
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        luma, cb, cr = frame.planes
        stride = luma.line_size
        dx, dy = (self.count * 3) % 256, (self.count * 2) % 256
        block = (self.count * 6) % (WIDTH - 64)
        tex, tw = self._texture, self._tw
        pad = b"\x00" * (stride - WIDTH)
        rows = []
        for row in range(HEIGHT):
            start = (row + dy) * tw + dx
            line = tex[start : start + WIDTH]
            if 200 <= row < 264:
                line = line[:block] + b"\xeb" * 64 + line[block + 64 :]
            rows.append(line + pad)
        luma.update(b"".join(rows))
        cb.update(bytes([96 + self.count % 64]) * (cb.line_size * cb.height))
        cr.update(bytes([160 - self.count % 64]) * (cr.line_size * cr.height))
        self.count += 1
        return frame


async def run_publisher(args: argparse.Namespace) -> None:
    # CBR at the requested bitrate: aiortc's encoder otherwise starts at 500 kb/s and
    # follows the server's REMB, clamped to [MIN_BITRATE, MAX_BITRATE].
    vpx.DEFAULT_BITRATE = vpx.MIN_BITRATE = vpx.MAX_BITRATE = args.bitrate
    commands = await stdin_lines()
    track = TextureVideoTrack()
    client = WcsClient(args.url)
    await client.connect()
    tracks: list[MediaStreamTrack] = [track]
    if args.audio:  # Opus, as real publishers send (aiortc's silence, encoded)
        tracks.append(AudioStreamTrack())
    stream = await client.publish(args.name, tracks, video_codec="VP8")
    await stream.wait_status("PUBLISHING")
    sender = next(s for s in stream.pc.getSenders() if s.kind == "video")
    reply({"event": "ready"})
    try:
        while line := await commands.readline():
            command = line.decode().strip()
            if command == "snap":
                t = time.monotonic()
                stats = await sender.getStats()
                outbound = next(s for s in stats.values() if s.type == "outbound-rtp")
                reply({"t": t, "frames": track.count, "rtp_packets": outbound.packetsSent,
                       "rtp_bytes": outbound.bytesSent, "status": stream.status})
            elif command == "quit":
                break
    finally:
        await client.close()


# --- players --------------------------------------------------------------------------


class LeanReceive:
    """Per-receiver counters for lean mode: complete frames and RTP payload bytes.

    A frame is complete when its packets arrived with consecutive sequence numbers from
    the packet after the previous frame's marker packet (or the first packet seen) up
    to its own marker packet.
    """

    __slots__ = ("bytes", "frames", "in_frame_ok", "last_remb", "next_seq", "packets")

    REMB_BITRATE = 10_000_000
    REMB_INTERVAL_MS = 500  # aiortc: AimdRateControl.feedback_interval()

    def __init__(self) -> None:
        self.frames = self.bytes = self.packets = 0
        self.next_seq: int | None = None
        self.in_frame_ok = True
        self.last_remb = 0


def install_lean_receive() -> None:
    """Replace RTCRtpReceiver._handle_rtp_packet in this (player) process only."""
    from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics
    from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

    async def handle_rtp(self: Any, packet: Any, arrival_time_ms: int) -> None:
        counters = self.__dict__.get("_lean")
        if counters is None:
            counters = self._lean = LeanReceive()
        codecs = self._RTCRtpReceiver__codecs
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        streams = self._RTCRtpReceiver__remote_streams  # what the receiver reports use
        stream = streams.get(packet.ssrc)
        if stream is None:
            stream = streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stream.add(packet)
        seq = packet.sequence_number
        if counters.next_seq is not None and seq != counters.next_seq:
            counters.in_frame_ok = False
        counters.next_seq = (seq + 1) & 0xFFFF
        counters.packets += 1
        counters.bytes += len(packet.payload)
        if packet.marker:
            counters.frames += counters.in_frame_ok
            counters.in_frame_ok = True
        rtcp_ssrc = self._RTCRtpReceiver__rtcp_ssrc
        due = arrival_time_ms - counters.last_remb >= LeanReceive.REMB_INTERVAL_MS
        if rtcp_ssrc is not None and due:
            counters.last_remb = arrival_time_ms
            fci = pack_remb_fci(LeanReceive.REMB_BITRATE, [packet.ssrc])
            await self._send_rtcp(
                RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=fci))

    RTCRtpReceiver._handle_rtp_packet = handle_rtp


#: SRTP authentication tag per negotiated profile: what a packet carries beyond its payload
SRTP_TAGS = {b"SRTP_AEAD_AES_256_GCM": 16, b"SRTP_AEAD_AES_128_GCM": 16,
             b"SRTP_AES128_CM_SHA1_80": 10}


class Counted:
    """Count mode: one player's RTP, counted in the reading thread from clear headers,
    per SSRC: video frames (complete from the packet after a marker to the next marker)
    and payload bytes, audio packets. With ``loss``, that share of media packets is
    dropped as it is read (as a lossy network would) and a video loss is NACKed at once,
    as a browser's NACK module does (``dropped`` counts those); RTX packets (the server's
    answers) are counted. Audio losses are lost: browsers do not NACK Opus."""

    __slots__ = ("audio", "bytes", "dropped", "frames", "loop", "loss", "nack", "next_seq",
                 "ok", "protocol", "random", "rtx", "sock", "tag", "video_types")

    def __init__(self, sock: socket.socket, protocol: Any, tag: int,
                 loop: asyncio.AbstractEventLoop, lean: LeanReceive, video_types: dict[int, str],
                 loss: float, nack: Any) -> None:
        self.sock, self.protocol, self.tag, self.loop = sock, protocol, tag, loop
        self.frames, self.bytes = lean.frames, lean.bytes
        self.video_types, self.loss, self.nack = video_types, loss, nack
        self.random = random.Random(sock.fileno())
        self.next_seq: dict[int, int] = {}
        self.ok: dict[int, bool] = {}
        self.audio = self.rtx = self.dropped = 0

    def drain(self) -> None:
        """Read everything waiting; RTP is counted, anything else goes to aioice."""
        while True:
            try:
                data, address = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # closed under us: the player is going away
                return
            if len(data) >= 12 and 128 <= data[0] < 192 and not 192 <= data[1] <= 223:
                self._rtp(data)
            else:
                self.loop.call_soon_threadsafe(self.protocol.datagram_received, data, address)

    def _rtp(self, data: bytes) -> None:
        payload_type = data[1] & 0x7F
        ssrc = int.from_bytes(data[8:12], "big")
        seq = int.from_bytes(data[2:4], "big")
        if payload_type not in self.video_types:  # audio: lost or not, never NACKed
            if not (self.loss and self.random.random() < self.loss):
                self.audio += 1
            return
        if self.video_types[payload_type] == "rtx":
            self.rtx += 1
            return
        expected = self.next_seq.get(ssrc)
        self.next_seq[ssrc] = (seq + 1) & 0xFFFF
        if self.loss and self.random.random() < self.loss:
            self.dropped += 1
            self.ok[ssrc] = False
            self.loop.call_soon_threadsafe(self.nack, ssrc, [seq])
            return
        if expected is not None and seq != expected:
            self.ok[ssrc] = False
        header = 12 + 4 * (data[0] & 0x0F)
        if data[0] & 0x10:  # header extension
            header += 4 + 4 * int.from_bytes(data[header + 2:header + 4], "big")
        self.bytes += len(data) - header - self.tag
        if data[1] & 0x80:
            self.frames += self.ok.get(ssrc, True)
            self.ok[ssrc] = True


class CountingThread:
    """One epoll thread per process reading every counted player's socket."""

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.players: dict[int, Counted] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._run, name="count-rtp", daemon=True).start()

    def add(self, counted: Counted) -> None:
        with self.lock:
            self.players[counted.sock.fileno()] = counted
        self.epoll.register(counted.sock.fileno(), select.EPOLLIN)

    def remove(self, counted: Counted) -> None:
        fd = counted.sock.fileno()
        with self.lock:
            self.players.pop(fd, None)
        with contextlib.suppress(OSError, ValueError):
            self.epoll.unregister(fd)

    def _run(self) -> None:
        while True:
            for fd, _ in self.epoll.poll(0.5):
                with self.lock:
                    counted = self.players.get(fd)
                if counted is not None:
                    counted.drain()


_COUNTING: CountingThread | None = None


def start_counting(receiver: Any, lean: LeanReceive, loss: float = 0.0) -> Counted:
    """Take the player's ICE socket off asyncio and count its RTP in the epoll thread
    (``receiver``: its video receiver; ``loss``: the share of packets dropped)."""
    global _COUNTING
    if _COUNTING is None:
        _COUNTING = CountingThread()
    dtls = receiver.transport
    pair = dtls.transport._connection._nominated[1]
    transport = pair.protocol.transport
    sock = transport.get_extra_info("socket")._sock
    tag = SRTP_TAGS.get(dtls._ssl.get_selected_srtp_profile(), 16)
    codecs = receiver._RTCRtpReceiver__codecs
    video_types = {pt: ("rtx" if c.name.lower() == "rtx" else "media") for pt, c in codecs.items()}

    sending: set[asyncio.Future[None]] = set()

    def nack(ssrc: int, lost: list[int]) -> None:
        task = asyncio.ensure_future(receiver._send_rtcp_nack(ssrc, lost))
        sending.add(task)
        task.add_done_callback(sending.discard)

    counted = Counted(sock, pair.protocol, tag, asyncio.get_running_loop(), lean,
                      video_types, loss, nack)
    transport.pause_reading()
    _COUNTING.add(counted)
    return counted


async def send_remb(receiver: Any) -> None:
    """What a lean player's receive path sends every 500 ms."""
    from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

    while True:
        await asyncio.sleep(LeanReceive.REMB_INTERVAL_MS / 1000)
        rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc
        sources = list(receiver._RTCRtpReceiver__remote_streams)
        if rtcp_ssrc is not None and sources:
            fci = pack_remb_fci(LeanReceive.REMB_BITRATE, sources[:1])
            await receiver._send_rtcp(
                RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=fci))


class Player:
    """One WcsClient playing the stream; counts the encoded frames it receives."""

    def __init__(self, url: str, name: str, lean: bool, count: bool = False,
                 audio: bool = True, loss: float = 0.0) -> None:
        self.audio = audio
        self.loss = loss
        self.url = url
        self.client: WcsClient | None = None
        self.name = name
        self.lean = lean or count
        self.count = count
        self.counted: Counted | None = None
        self.stream: ClientStream | None = None
        self.receiver: Any = None
        self._frames = 0
        self._bytes = 0
        self.first_frame = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None

    @property
    def counts(self) -> list[int]:
        """[frames, bytes] received so far (count mode: then audio packets, video packets
        dropped by the simulated loss, RTX packets received)."""
        if self.counted is not None:
            c = self.counted
            return [c.frames, c.bytes, c.audio, c.dropped, c.rtx]
        if self.lean:
            lean = self.receiver.__dict__.get("_lean") if self.receiver is not None else None
            return [lean.frames, lean.bytes] if lean is not None else [0, 0]
        return [self._frames, self._bytes]

    @property
    def kinds(self) -> tuple[str, ...]:
        return ("audio", "video") if self.audio and self.count else ("video",)

    async def start(self) -> None:
        self.client = WcsClient(self.url)
        await self.client.connect()
        self.stream = await self.client.play(self.name, kinds=self.kinds)
        await self.stream.wait_status("PLAYING")
        await self.receive(self.stream.pc, self.stream.tracks)

    async def receive(self, pc: RTCPeerConnection, tracks: list[MediaStreamTrack]) -> None:
        """Count what the peer connection ``pc`` receives (its remote ``tracks``), as
        the mode says; returns once the first frame is in."""
        transceiver = next(t for t in pc.getTransceivers() if t.kind == "video")
        self.receiver = transceiver.receiver
        if self.lean:
            # RemoteStreamTrack stays empty: nothing to read
            deadline = time.monotonic() + FIRST_FRAME_TIMEOUT
            while self.counts[0] == 0:
                if time.monotonic() > deadline:
                    raise TimeoutError("no complete frame received")
                await asyncio.sleep(0.05)
            if self.count:
                self.counted = start_counting(self.receiver, self.receiver._lean, self.loss)
                self._task = asyncio.create_task(send_remb(self.receiver))
            return
        video = next(t for t in tracks if t.kind == "video")
        self._task = asyncio.create_task(self._count(video))
        await asyncio.wait_for(asyncio.shield(self.first_frame), FIRST_FRAME_TIMEOUT)

    async def _count(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                packet = await track.recv()
                self._frames += 1
                self._bytes += packet.size
                if not self.first_frame.done():
                    self.first_frame.set_result(None)
        except MediaStreamError:
            pass

    async def close(self) -> None:
        if self.counted is not None and _COUNTING is not None:
            _COUNTING.remove(self.counted)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.hang_up()

    async def hang_up(self) -> None:
        if self.client is not None:
            await self.client.close()


class WhepPlayer(Player):
    """A Player over WHEP (``url``: the server's HTTP root): the peer connection
    WcsClient.play makes (recvonly transceivers, in the same order), its offer POSTed
    to ``/whep/<name>``, the answer applied; then the same receive path and counters.
    close() DELETEs the session."""

    def __init__(self, url: str, name: str, lean: bool, count: bool = False,
                 audio: bool = True, loss: float = 0.0) -> None:
        super().__init__(url, name, lean, count, audio, loss)
        self.http = aiohttp.ClientSession()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.location = ""

    async def start(self) -> None:
        tracks: list[MediaStreamTrack] = []
        self.pc.on("track", tracks.append)
        for kind in self.kinds:
            self.pc.addTransceiver(kind, direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with self.http.post(f"{self.url.rstrip('/')}/whep/{self.name}",
                                  data=self.pc.localDescription.sdp.encode(),
                                  headers={"Content-Type": "application/sdp"}) as answer:
            body = await answer.text()
            if answer.status != 201:
                raise RuntimeError(f"WHEP answered {answer.status}: {body.strip()[:200]}")
            self.location = answer.headers["Location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
        await self.receive(self.pc, tracks)

    async def hang_up(self) -> None:
        try:
            if self.location:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with self.http.delete(self.location,
                                                timeout=aiohttp.ClientTimeout(total=5)):
                        pass
        finally:
            await self.pc.close()
            await self.http.close()


async def run_players(args: argparse.Namespace) -> None:
    compat.install()  # receive av.Packet, never decode: players must be cheap
    if args.mode in ("lean", "count"):
        install_lean_receive()
    commands = await stdin_lines()
    players: list[Player] = []
    limit = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def add_one() -> Player | str:
        async with limit:
            kind = WhepPlayer if args.role == "whep-players" else Player
            player = kind(args.url, args.name, args.mode == "lean", args.mode == "count",
                          args.audio, args.loss)
            try:
                await player.start()
            except Exception as error:  # reported, and the player is not counted
                await player.close()
                return f"{type(error).__name__}: {error}"
            return player

    try:
        while line := await commands.readline():
            text = line.decode().strip()
            command = json.loads(text) if text.startswith("{") else {"cmd": text}
            if command["cmd"] == "add":
                results = await asyncio.gather(*(add_one() for _ in range(command["count"])))
                errors = [r for r in results if isinstance(r, str)]
                players += [r for r in results if isinstance(r, Player)]
                reply({"event": "added", "players": len(players), "failed": len(errors),
                       "errors": errors[:3]})
            elif command["cmd"] == "snap":
                reply({"t": time.monotonic(), "players": [p.counts for p in players]})
            elif command["cmd"] == "quit":
                break
    finally:
        await asyncio.gather(*(p.close() for p in players), return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("role", choices=("publisher", "players", "whep-players"),
                        help="whep-players: players over WHEP, --url the HTTP root "
                        "(http://127.0.0.1:PORT/)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--name", default="bench")
    parser.add_argument("--bitrate", type=int, default=1_200_000)
    parser.add_argument("--mode", choices=("full", "lean", "count"), default="full")
    parser.add_argument("--audio", action=argparse.BooleanOptionalAction, default=True,
                        help="the publisher sends Opus too; count-mode players play it")
    parser.add_argument("--loss", type=float, default=0.0,
                        help="count mode: share of packets a player drops (and NACKs)")
    args = parser.parse_args()
    die_with_parent()
    compat.use_host_addresses("127.0.0.1")
    runner = run_publisher if args.role == "publisher" else run_players
    try:
        asyncio.run(runner(args))
    except KeyboardInterrupt:
        pass
    # aiortc's threads (decoder workers) may linger; the benchmark waits for no one
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
