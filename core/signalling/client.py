"""A WCS-protocol client in Python: connect, publish aiortc tracks, play into tracks.

Used by the tests, the benchmarks and server-to-server push/pull. It speaks the
protocol the way the WCS Web SDK does: ``connection`` first, then an SDP offer (with
every candidate, aiortc gathers before it returns) in ``publishStream`` /
``playStream``, the answer from ``setRemoteSDP``, statuses from
``notifyStreamStatusEvent``; it answers the server's pings.

The server may be anyone's: it never leads the client elsewhere (a redirect answering
the upgrade is refused, not followed), and what its frames make the client log (a
refusal, a frame it cannot use) is logged escaped and at a bounded rate (``LogBudget``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription

from hookcast.rtc.aiortc import (
    LeanIngress,
    LeanReceiver,
    force_codec,
    on_keyframe_request,
    take_over,
)
from hookcast.rtc.packets import EncodedPacket, FrameMeta
from hookcast.untrusted import LogBudget, printable

log = logging.getLogger(__name__)

FINAL = ("UNPUBLISHED", "STOPPED", "FAILED")
#: the longest message taken from a server (an SDP is a few kilobytes)
MAX_MESSAGE = 1 << 20
#: status events and fail messages kept per stream / client (the newest)
KEPT = 256
#: seconds the WebSocket gets to close cleanly before it is dropped
CLOSE_WAIT = 2.0


class FrameTrack(MediaStreamTrack):
    """The frames of one kind a lean player receives (``WcsClient.play(lean=True)``),
    pushed by its receive path: ``recv()`` returns them in order. At most ``limit`` wait:
    a reader that fell behind loses the oldest, and the next video frame says so
    (``complete=False``: a relay waits for a keyframe). Ended when its connection is."""

    def __init__(self, kind: str, limit: int = 120) -> None:
        super().__init__()
        self.kind = kind
        self._frames: deque[EncodedPacket] = deque()
        self._limit = limit
        self._lost = False
        self._ended = False
        self._ready = asyncio.Event()
        #: frames lost because the reader fell behind
        self.dropped = 0

    def push(self, packet: EncodedPacket) -> None:
        if self._ended:
            return
        if len(self._frames) >= self._limit:
            self._frames.popleft()
            self.dropped += 1
            self._lost = self.kind == "video"
        if self._lost and isinstance(packet.opaque, FrameMeta) and not packet.is_keyframe:
            packet.opaque = replace(packet.opaque, complete=False)
            self._lost = False
        self._frames.append(packet)
        self._ready.set()

    def end(self) -> None:
        self._ended = True
        self._ready.set()

    async def recv(self) -> EncodedPacket:
        while not self._frames:
            if self._ended or self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        return self._frames.popleft()


class WcsError(Exception):
    """The server refused or failed a request; the message is what it said."""


async def refuse_redirects(request: aiohttp.ClientRequest,
                           handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
    """A client middleware: a redirect answering a request raises WSServerHandshakeError
    (its ``status`` the 3xx) instead of being followed."""
    response = await handler(request)
    if 300 <= response.status < 400:
        response.close()
        raise aiohttp.WSServerHandshakeError(
            response.request_info, (response,), status=response.status,
            message="redirect not followed", headers=response.headers)
    return response


@dataclass
class ClientStream:
    """One stream of this client: its status events and, for a player, its tracks."""

    media_session_id: str
    name: str
    published: bool
    pc: RTCPeerConnection
    status: str = "PENDING"
    info: str = ""
    last: dict[str, Any] = field(default_factory=dict)
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=KEPT))
    tracks: list[MediaStreamTrack] = field(default_factory=list)
    #: a lean player's receive path (play(lean=True)), closed with its connection
    ingresses: list[LeanIngress] = field(default_factory=list)
    #: the negotiated codec (MIME type) of each kind, from the server's answer
    codecs: dict[str, str] = field(default_factory=dict)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _answer: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    async def _status(self, event: dict[str, Any]) -> None:
        async with self._changed:
            self.events.append(event)
            self.last = event
            self.status = str(event.get("status", self.status))
            self.info = str(event.get("info", ""))
            self._changed.notify_all()

    async def wait_status(self, *statuses: str, timeout: float = 20.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The event that brought one of ``statuses``; WcsError if it ends otherwise."""
        async def reached() -> dict[str, Any]:
            async with self._changed:
                await self._changed.wait_for(
                    lambda: self.status in statuses or self.status in FINAL
                )
                if self.status not in statuses:
                    raise WcsError(f"{self.name}: {self.status} {self.info!r}, not {statuses}")
                return self.last

        return await asyncio.wait_for(reached(), timeout)

    async def wait_end(self) -> dict[str, Any]:
        """Wait (without limit) until the stream has ended: UNPUBLISHED, STOPPED, FAILED."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.status in FINAL)
            return self.last

    def receivers(self) -> dict[str, RTCRtpReceiver]:
        """A player's receiver of each kind (keyframe requests go through them)."""
        return {t.kind: t.receiver for t in self.pc.getTransceivers()}


def answered_codecs(answer_sdp: str) -> dict[str, str]:
    """The codec the server chose for each kind, as a MIME type (``video/H264``)."""
    description = SessionDescription.parse(answer_sdp)
    return {m.kind: m.rtp.codecs[0].mimeType for m in description.media
            if m.rtp.codecs and m.direction != "inactive"}


class WcsClient:
    """One WebSocket session with a WCS-compatible server."""

    #: the info of a stream (and the WcsError of connect) when the WebSocket closed,
    #: in the client's own words
    CLOSED = "connection closed"
    #: the info of a stream whose ICE failed, in the client's own words
    ICE_FAILED = "ICE failed"

    def __init__(self, url: str, *, rtc: RTCConfiguration | None = None,
                 ssl_context: ssl.SSLContext | bool = True, timeout: float = 20.0,
                 log_budget: LogBudget | None = None) -> None:
        """``ssl_context``: for wss://, True verifies the server's certificate against the
        system's authorities, False does not verify, or a context of your own.
        ``timeout``: seconds to connect and to hear the server accept.
        ``log_budget``: what the server's frames make the client log goes through it
        (default: a budget of its own; pass one to share it across reconnections)."""
        self.url = url
        self._own_budget = log_budget is None
        self.log_budget = log_budget or LogBudget(log, f"wcs client {printable(url)}")
        self.rtc = rtc or RTCConfiguration(iceServers=[])
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.user_data: dict[str, Any] = {}
        self.fails: deque[dict[str, Any]] = deque(maxlen=KEPT)
        self.streams: dict[str, ClientStream] = {}
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._established: asyncio.Future[dict[str, Any]] | None = None

    @property
    def session_id(self) -> str:
        return str(self.user_data.get("sessionId", ""))

    async def connect(self, app_key: str = "defaultApp", **fields: Any) -> dict[str, Any]:
        """Open the session; returns the server's getUserData, raises WcsError if refused,
        aiohttp.WSServerHandshakeError if the server answers the upgrade with anything but
        a switch to WebSocket (a redirect included)."""
        self._http = aiohttp.ClientSession(middlewares=(refuse_redirects,))
        self._ws = await asyncio.wait_for(
            self._http.ws_connect(self.url, max_msg_size=MAX_MESSAGE, ssl=self.ssl_context,
                                  timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_WAIT)),
            self.timeout)
        self._established = asyncio.get_running_loop().create_future()
        # retrieved even when nobody waits any more (connect() timed out)
        self._established.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._reader = asyncio.create_task(self._read(), name=f"wcs client {self.url}")
        await self.send("connection", {"appKey": app_key, "mediaProviders": ["WebRTC"],
                                       "clientVersion": "2.0", **fields})
        self.user_data = await asyncio.wait_for(asyncio.shield(self._established),
                                                self.timeout)
        return self.user_data

    @property
    def connected(self) -> bool:
        """False once the WebSocket has closed."""
        return self._reader is not None and not self._reader.done()

    async def send(self, message: str, payload: Any) -> None:
        assert self._ws is not None, "connect() first"
        await self._ws.send_str(json.dumps({"message": message, "data": [payload]}))

    async def send_raw(self, text: str) -> None:
        """Send any text frame as it is (tests use it to send garbage)."""
        assert self._ws is not None, "connect() first"
        await self._ws.send_str(text)

    async def publish(
        self, name: str, tracks: Iterable[MediaStreamTrack], *, video_codec: str = "VP8",
        codecs: Mapping[str, str] | None = None,
        keyframe_requests: Mapping[str, Callable[[], None]] | None = None,
        on_sender: Callable[[RTCRtpSender, MediaStreamTrack], None] | None = None,
        **fields: Any,
    ) -> ClientStream:
        """Publish ``tracks`` as ``name``; returns once the answer is applied.

        ``codecs`` forces a MIME type per kind (default: ``video/<video_codec>``,
        ``audio/opus``); ``keyframe_requests[kind]()`` is called when the server asks
        for a keyframe of that kind (a relay passes the request on to its source);
        ``on_sender(sender, track)`` is called for each track's sender before the offer
        (a relay puts it on its forwarding path: ``hookcast.Feed.sent_by``)."""
        pc = RTCPeerConnection(self.rtc)
        for track in tracks:
            transceiver = pc.addTransceiver(track, direction="sendonly")
            default = f"video/{video_codec}" if track.kind == "video" else "audio/opus"
            force_codec(transceiver, (codecs or {}).get(track.kind, default))
            callback = (keyframe_requests or {}).get(track.kind)
            if callback is not None:
                on_keyframe_request(transceiver.sender, callback)
            if on_sender is not None:
                on_sender(transceiver.sender, track)
        return await self._start("publishStream", name, pc, published=True, **fields)

    async def play(self, name: str, *, kinds: Sequence[str] = ("audio", "video"),
                   lean: bool = False, **fields: Any) -> ClientStream:
        """Play ``name``; the received tracks appear in ``stream.tracks``.

        ``lean``: receive on the event loop as a server receives a publisher
        (hookcast.rtc.aiortc.LeanReceiver): each track yields the encoded frames (av.Packet
        with FrameMeta) as they are assembled, no decoder thread in between; otherwise
        aiortc's own receiver (decoded frames, or encoded ones where
        hookcast.rtc.aiortc.install() is in effect)."""
        pc = RTCPeerConnection(self.rtc)
        frames: list[FrameTrack] = []
        receivers: list[LeanReceiver] = []
        for kind in kinds:
            transceiver = pc.addTransceiver(kind, direction="recvonly")
            if lean:
                track = FrameTrack(kind)
                frames.append(track)
                receivers.append(LeanReceiver(transceiver.receiver, kind, track.push))
        return await self._start("playStream", name, pc, published=False, frames=frames,
                                 receivers=receivers, **fields)

    async def _start(self, api: str, name: str, pc: RTCPeerConnection, published: bool,
                     frames: Sequence[FrameTrack] = (),
                     receivers: Sequence[LeanReceiver] = (), **fields: Any) -> ClientStream:
        stream = ClientStream(str(uuid.uuid1()), name, published, pc)
        self.streams[stream.media_session_id] = stream
        if frames:
            stream.tracks.extend(frames)
        else:
            pc.on("track", stream.tracks.append)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                for ingress in stream.ingresses:
                    ingress.close()
                for track in frames:
                    track.end()
            if pc.connectionState == "failed" and stream.status not in FINAL:
                await stream._status({"status": "FAILED", "info": self.ICE_FAILED})

        await pc.setLocalDescription(await pc.createOffer())
        await self.send(api, {
            "mediaSessionId": stream.media_session_id, "name": name, "published": published,
            "hasVideo": True, "hasAudio": True, "status": "PENDING", "record": False,
            "mediaProvider": "WebRTC", "sdp": pc.localDescription.sdp, "custom": {}, **fields,
        })
        ended: asyncio.Future[Any] = asyncio.ensure_future(stream.wait_status(*FINAL, timeout=30))
        waiting: set[asyncio.Future[Any]] = {stream._answer, ended}
        done, _ = await asyncio.wait(waiting, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        ended.cancel()
        if stream._answer in done:
            answer = stream._answer.result()
            stream.codecs = answered_codecs(answer)
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            if receivers:  # the transports are final now (bundled)
                stream.ingresses = take_over(list(receivers))
        return stream

    async def stop(self, stream: ClientStream) -> None:
        """unPublishStream or stopStream, then close the peer connection."""
        api = "unPublishStream" if stream.published else "stopStream"
        await self.send(api, {"mediaSessionId": stream.media_session_id, "name": stream.name,
                              "published": stream.published})
        await stream.wait_status("UNPUBLISHED", "STOPPED", "FAILED", timeout=10)
        await stream.pc.close()

    async def close(self, wait: float = CLOSE_WAIT) -> None:
        """Close the WebSocket (waiting at most ``wait`` seconds for the server's
        goodbye), then every peer connection and the HTTP session, whatever the server
        does."""
        try:
            if self._ws is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._ws.close(), wait)
            if self._reader is not None:
                self._reader.cancel()
                await asyncio.gather(self._reader, return_exceptions=True)
        finally:
            for stream in self.streams.values():
                await stream.pc.close()
            if self._http is not None:
                await self._http.close()
            if self._own_budget:
                self.log_budget.close()

    async def _read(self) -> None:
        assert self._ws is not None and self._established is not None
        try:
            async for frame in self._ws:
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    message = json.loads(frame.data)
                    await self._dispatch(message.get("message"), message.get("data") or [None])
                except (ValueError, AttributeError, TypeError, IndexError, KeyError,
                        RecursionError) as error:
                    self.log_budget.warning(
                        "%s: ignoring a frame the client cannot use (%s): %s",
                        printable(self.url), printable(repr(error)),
                        printable(frame.data[:200]))
        finally:
            if not self._established.done():
                reason = str(self.fails[-1].get("info")) if self.fails else self.CLOSED
                self._established.set_exception(WcsError(reason))
            for stream in self.streams.values():
                if stream.status not in FINAL:
                    await stream._status({"status": "FAILED", "info": self.CLOSED})

    async def _dispatch(self, message: str, data: list[Any]) -> None:
        first = data[0]
        if message == "ping":
            await self.send("pong", None)
        elif message == "getUserData" and self._established and not self._established.done():
            self._established.set_result(first)
        elif message == "setRemoteSDP":
            stream = self.streams.get(first)
            if stream is not None and not stream._answer.done():
                stream._answer.set_result(data[1])
        elif message == "notifyStreamStatusEvent":
            stream = self.streams.get(first.get("mediaSessionId"))
            if stream is not None:
                await stream._status(first)
        elif message == "fail" and isinstance(first, dict):
            self.fails.append(first)
            established = self._established
            if first.get("apiMethod") == "connection" and established and not established.done():
                established.set_exception(WcsError(str(first.get("info", "refused"))))
            stream = self.streams.get(str(first.get("id")))  # a refused request of one stream
            if stream is not None and stream.status not in FINAL:
                await stream._status({"status": "FAILED", "info": str(first.get("info", ""))})
            self.log_budget.info("%s: server said fail: %s", printable(self.url),
                                 printable(json.dumps(first), 500))
