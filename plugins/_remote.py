"""Pulls and pushes: a stream carried over one WCS-protocol connection to another server,
as encoded frames, reconnected with backoff when it drops.

A **pull** plays ``remoteStreamName`` on the remote server and publishes what arrives
here as ``localStreamName``: a ``MediaSource`` whose tracks are ``PulledTrack``s. They
hand on the remote connection's encoded frames (``av.Packet``, as a publisher's leg
taps them) and pass keyframe requests back to it; a reconnection swaps the connection
under them, so the local stream and its players stay while the pull retries.

A **push** is a player of a local stream run by the server (``MediaCore.play``) whose
subscriber tracks are published on the remote server as ``remoteStreamName``, each
forced to the local codec; the remote's keyframe requests reach the local publisher.

Status of a link (``/pull/find_all``): ``NEW`` → ``CONNECTING`` → ``ACTIVE``; a drop or
a failed attempt → ``RETRYING`` (waits, then ``CONNECTING`` again); the end is
``FINISHED`` (the stream ended normally: the remote publisher stopped, the local stream
stopped, REST terminate) or ``FAILED`` (gave up; ``error`` says why).

The remote is whoever the URI names. ``error`` names a category, never the remote's
words (``_remote_errors``); what the remote causes is logged through one ``LogBudget``
per link, kept across its reconnections; a stop never waits on the remote for longer
than STOP_TIMEOUT (a connection still opening is abandoned at once, a flowing one gets
GOODBYE for each step of its goodbye).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiortc import RTCRtpReceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from hookcast import (
    ClientStream,
    Feed,
    Info,
    LogBudget,
    MediaCore,
    NameInUse,
    Settings,
    SourceTrack,
    WcsClient,
    WcsError,
    printable,
    request_keyframe,
)
from hookcast.plugins._remote_errors import LOOP, RemoteEnded, category, detail, with_reason

log = logging.getLogger(__name__)

NEW, CONNECTING, ACTIVE, RETRYING, FAILED, FINISHED = (
    "NEW", "CONNECTING", "ACTIVE", "RETRYING", "FAILED", "FINISHED")
ENDED = (FAILED, FINISHED)
#: the key of ``custom`` carrying the streams a request feeds, ``"<serverId>/<name>"``
HOPS = "hookcastHops"
MAX_HOPS = 32
#: seconds a local step of stopping (the local stream's end) may take
CLOSE_TIMEOUT = 5.0
#: seconds the remote gets for each step of a goodbye (a push's unpublish answered, the
#: WebSocket's closing handshake); then the connection is dropped
GOODBYE = 1.0
#: seconds a link takes to stop at most (terminate, shutdown), whatever the remote does
STOP_TIMEOUT = 2.5
#: seconds a connection must have stayed ACTIVE for its drop to begin the retries anew
STABLE = 10.0
T = TypeVar("T")


class GiveUp(Exception):
    """Retrying cannot help: the link fails with this message."""


class Finished(Exception):
    """The stream ended normally: the link finishes with this message."""


class Stopped(Exception):
    """The link was stopped while its connection was still opening."""


class PulledTrack(MediaStreamTrack):
    """One kind of a pulled stream; reads the current remote connection's track.

    ``attach`` swaps in a new connection's track (the timestamps go on from where they
    were, plus the time the link was down); ``end`` ends it for good. ``mime`` is the
    codec; ``request_keyframe`` sends a PLI to the remote.
    """

    keyframes_on_request = True

    def __init__(self, kind: str, mime: str) -> None:
        super().__init__()
        self.kind = kind
        self.mime = mime
        self._inner: MediaStreamTrack | None = None
        self._receiver: RTCRtpReceiver | None = None
        self._changed = asyncio.Event()
        self._ended = False
        self._rebase = False
        self._offset = 0
        self._last_pts: int | None = None
        self._last_at = 0.0

    def attach(self, track: MediaStreamTrack, receiver: RTCRtpReceiver) -> None:
        self._inner, self._receiver = track, receiver
        self._rebase = True
        self._changed.set()

    def end(self) -> None:
        self._ended = True
        self._changed.set()

    async def request_keyframe(self) -> None:
        if self._receiver is not None:
            await request_keyframe(self._receiver)

    async def recv(self) -> Any:
        while True:
            if self._ended:
                raise MediaStreamError
            inner = self._inner
            if inner is None:
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                packet = await inner.recv()
            except MediaStreamError:  # that connection ended: wait for the next one
                if self._inner is inner:
                    self._inner = None
                continue
            if self._inner is not inner:  # a late packet of a connection replaced meanwhile
                continue
            pts = packet.pts or 0
            if self._rebase:
                self._rebase = False
                self._offset = 0
                if self._last_pts is not None:
                    gap = int((time.monotonic() - self._last_at) / packet.time_base)
                    self._offset = self._last_pts + max(gap, 1) - pts
            if self._offset:
                pts += self._offset
                packet.pts = packet.dts = pts
            self._last_pts, self._last_at = pts, time.monotonic()
            return packet


class PulledSource:
    """The MediaSource of a pull (shared: every local player joins it)."""

    shared = True
    loop = False

    def __init__(self, uri: str, tracks: Sequence[PulledTrack]) -> None:
        self.uri = uri
        self.tracks = list(tracks)
        self.closed = asyncio.Event()
        self.failure = ""

    async def open(self) -> Sequence[SourceTrack]:
        return self.tracks

    def start(self) -> None:
        pass

    async def close(self) -> None:
        """The local stream stopped (the pull ends, or someone stopped the stream)."""
        for track in self.tracks:
            track.end()
        self.closed.set()


@dataclass
class Options:
    """What the REST request may add: the remote application, fields for its
    ``custom``; ``tls``: for wss://, True (the system's authorities), a context of
    trusted authorities, or False (no verification)."""

    app_key: str = "defaultApp"
    custom: dict[str, Any] = field(default_factory=dict)
    tls: ssl.SSLContext | bool = True


class Link(abc.ABC):
    """A pull or a push: its entry for find_all and the task that runs it."""

    direction = ""
    #: what the link does with the remote stream (for a loop's message)
    _loop = ""

    def __init__(self, media: MediaCore, settings: Settings, uri: str, local_name: str,
                 remote_name: str, options: Options,
                 count: Callable[[str, str], None] = lambda direction, outcome: None) -> None:
        self.media = media
        self.settings = settings
        self.uri = uri
        self.local_name = local_name
        self.remote_name = remote_name
        self.options = options
        self.count = count
        self.status = NEW
        self.error = ""
        self.retries = 0
        self.local_media_session_id: str | None = None
        self.remote_media_session_id: str | None = None
        self.remote_server_id = ""
        self.created = time.time()
        self.ended_at: float | None = None
        self._stop = asyncio.Event()
        self._stop_info = Info.REST_TERMINATE
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._active_since: float | None = None
        #: the request field a refusal is about (409 on the first attempt), if any
        self.refused_field = ""
        #: what the remote causes is logged through it, across reconnections
        self.log_budget = LogBudget(log, f"{self.direction} {printable(uri)}")

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    @property
    def upstream(self) -> str:
        """The stream this link reads, ``<serverId>/<name>`` (pulls only)."""
        return ""

    def entry(self) -> dict[str, Any]:
        return {
            "localMediaSessionId": self.local_media_session_id,
            "remoteMediaSessionId": self.remote_media_session_id,
            "localStreamName": self.local_name, "remoteStreamName": self.remote_name,
            "uri": self.uri, "status": self.status, "direction": self.direction,
            "error": self.error, "retries": self.retries,
            "createDate": int(self.created * 1000),
        }

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.direction} {self.uri}")

    async def first_outcome(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until the first attempt succeeded or failed (or ``timeout``)."""
        async def settled() -> None:
            while self.status in (NEW, CONNECTING):
                self._changed.clear()
                await self._changed.wait()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(settled(), timeout)

    async def terminate(self, info: str = Info.REST_TERMINATE) -> None:
        """Stop it (its local stream too, for a pull) and wait until it has stopped:
        STOP_TIMEOUT at most, whatever the remote does (past it, it is cancelled)."""
        self._stop_info = info
        self._stop.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=STOP_TIMEOUT)
            if not done:  # a step overran its bound: cut it
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
                if not self.ended:
                    self._set(FINISHED, info)

    def _set(self, status: str, error: str | None = None) -> None:
        if status == ACTIVE:
            self._active_since = time.monotonic()
        self.status = status
        if error is not None:
            self.error = error
        if status in ENDED:
            self.ended_at = time.time()
        self._changed.set()

    def hops(self) -> list[str]:
        """What a request of this link carries: the stream it feeds."""
        return [f"{self.media.server_id}/{self.local_name}"]

    def _client(self) -> WcsClient:
        return WcsClient(self.uri, rtc=self.media.rtc_configuration(),
                         ssl_context=self.options.tls,
                         timeout=self.settings.value("pull_connect_timeout"),
                         log_budget=self.log_budget)

    async def _connecting(self, opening: Awaitable[T]) -> T:
        """``opening`` (connect, be accepted, the media flowing) within
        pull_connect_timeout (TimeoutError); abandoned at once if the link is stopped
        meanwhile (Stopped)."""
        task = asyncio.ensure_future(opening)
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            async with asyncio.timeout(self.settings.value("pull_connect_timeout")):
                await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in (task, stop):
                waiting.cancel()
            await asyncio.gather(task, stop, return_exceptions=True)
        if task.cancelled():
            raise Stopped
        return task.result()

    async def _accepted(self, remote: ClientStream, status: str) -> None:
        """Wait until the remote stream is ``status``; a refusal raises GiveUp (a loop)
        or RemoteEnded."""
        try:
            await remote.wait_status(status, timeout=1e6)  # _connecting bounds it
        except WcsError:
            if remote.info.startswith(LOOP):
                self.refused_field = "remoteStreamName"
                raise GiveUp(f"{LOOP}: {printable(self.uri)} would {self._loop} "
                             f"{printable(self.remote_name)!r} from this very stream") \
                    from None
            raise RemoteEnded(remote.status, remote.info, active=False) from None

    async def _connect(self, client: WcsClient) -> None:
        custom = {**self.options.custom, HOPS: self.hops()}
        user = await client.connect(self.options.app_key, custom=custom)
        self.remote_server_id = str(user.get("hookcastServerId") or "")

    async def _run(self) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                self._set(CONNECTING)
                self._active_since = None
                try:
                    await self._attempt()
                except Stopped:
                    break
                except (Finished, GiveUp) as outcome:
                    return self._end(outcome)
                except Exception as error:  # a failed attempt, whatever failed
                    self._failed(error)
                    stable = self._active_since is not None \
                        and time.monotonic() - self._active_since >= STABLE
                    if stable:
                        failures = 0  # it worked for a while: the retries begin anew
                if self._stop.is_set() or self._local_ended():
                    break
                failures += 1
                if failures > self._attempts():
                    return self._end(GiveUp(f"gave up after {failures} failed attempt"
                                            f"{'s' if failures > 1 else ''}: {self.error}"))
                await self._retry(failures)
            if self._local_ended():
                return self._end(Finished("local stream stopped"))
            self._set(FINISHED, self._stop_info)
        finally:
            await self._release()
            self.log_budget.close()

    def _end(self, outcome: Finished | GiveUp) -> None:
        finished = isinstance(outcome, Finished)
        self.count(self.direction, "finished" if finished else "failed")
        self._set(FINISHED if finished else FAILED, str(outcome))
        self.log_budget.info("%s %s: %s %s", self.direction, printable(self.uri),
                             self.status, self.error)

    def _failed(self, error: Exception) -> None:
        """An attempt failed: its category for the entry, the detail for the log."""
        self.error = category(error)
        self.count(self.direction, "dropped" if self.status == ACTIVE else "refused")
        self.log_budget.info("%s %s: attempt failed: %s (%s)", self.direction,
                             printable(self.uri), self.error, detail(error))

    def _attempts(self) -> int:
        """Failed attempts in a row before the link gives up."""
        return int(self.settings.value("pull_retry_attempts"))

    def _delay(self, failures: int) -> float:
        """Seconds before the next attempt: the initial delay, doubling with each
        failure, at most the maximum."""
        return float(min(
            self.settings.value("pull_retry_initial_delay") * 2 ** min(failures - 1, 20),
            self.settings.value("pull_retry_max_delay")))

    async def _retry(self, failures: int) -> None:
        """Wait before the next attempt (``_delay``)."""
        self._set(RETRYING)
        self.retries += 1
        delay = self._delay(failures)
        self.log_budget.info("%s %s: again in %.1f s", self.direction, printable(self.uri),
                             delay)
        await self._pause(delay)

    def _local_end(self) -> asyncio.Event | None:
        """Set once the local end is gone (a pull's stream stopped here, a push's
        source); None before there is one."""
        return None

    def _local_ended(self) -> bool:
        end = self._local_end()
        return end is not None and end.is_set()

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` unless the link is stopped or its local end goes."""
        end = self._local_end()
        await first_of(delay, self._stop, *([end] if end is not None else []))

    @abc.abstractmethod
    async def _attempt(self) -> None:
        """One connection, from connecting to its end: returns when stopped, raises
        Finished or GiveUp to end the link, anything else to retry."""

    @abc.abstractmethod
    async def _release(self) -> None:
        """Give back what the link holds locally (its local stream)."""

    async def _until(self, stream: ClientStream, *local: asyncio.Event) -> None:
        """Return when the remote stream ended or one of ``local`` (or the stop) is set."""
        waits = [asyncio.ensure_future(stream.wait_end()),
                 *(asyncio.ensure_future(e.wait()) for e in (self._stop, *local))]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)


async def first_of(delay: float, *events: asyncio.Event) -> None:
    """Return after ``delay`` seconds or once one of ``events`` is set."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


async def closed(client: WcsClient) -> None:
    """Close a connection: the remote gets GOODBYE for its closing handshake."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.close(wait=GOODBYE), CLOSE_TIMEOUT)


async def bounded(step: Awaitable[Any], timeout: float = CLOSE_TIMEOUT) -> None:  # noqa: ASYNC109
    """Await ``step`` for ``timeout`` seconds at most, whatever it raises."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(step, timeout)


class Pull(Link):
    """Plays the remote stream and publishes it here (see the module docstring)."""

    direction = "pull"
    _loop = "play"
    #: the cluster node whose stream this pull copies (an edge copy: StreamInfo.node)
    node = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.source: PulledSource | None = None

    @property
    def upstream(self) -> str:
        return f"{self.remote_server_id}/{self.remote_name}" if self.remote_server_id else ""

    async def _attempt(self) -> None:
        client = self._client()
        try:
            remote = await self._connecting(self._open(client))
            self.remote_media_session_id = remote.media_session_id
            await self._feed(remote)
            self._set(ACTIVE, "")
            assert self.source is not None
            await self._until(remote, self.source.closed)
            if self.source.closed.is_set():
                raise Finished("local stream stopped")
            if self._stop.is_set():
                return
            if remote.status == "STOPPED" and remote.info != Info.SHUTDOWN:
                raise Finished(with_reason("remote stream ended", remote.info))
            raise RemoteEnded(remote.status, remote.info, active=True)
        finally:
            await closed(client)

    async def _open(self, client: WcsClient) -> ClientStream:
        """Connect, play the remote stream, wait until it is PLAYING."""
        await self._connect(client)
        remote = await client.play(self.remote_name, lean=True,  # received as a publisher is
                                   custom={**self.options.custom, HOPS: self.hops()})
        await self._accepted(remote, "PLAYING")
        return remote

    def _local_end(self) -> asyncio.Event | None:
        return self.source.closed if self.source is not None else None

    async def _feed(self, remote: ClientStream) -> None:
        """Hand the remote tracks to the local stream (published on the first success)."""
        kinds = {track.kind: track for track in remote.tracks}
        codecs = {kind: remote.codecs[kind] for kind in kinds if kind in remote.codecs}
        if not codecs:
            raise GiveUp("the remote stream has no audio or video")
        receivers = remote.receivers()
        if self.source is None:
            tracks = [PulledTrack(kind, mime) for kind, mime in codecs.items()]
            for track in tracks:
                track.attach(kinds[track.kind], receivers[track.kind])
            source = self.source = PulledSource(self.uri, tracks)
            try:
                info = await self.media.publish(self.local_name, source, self.uri,
                                                node=self.node)
            except NameInUse:
                self.source = None
                self.refused_field = "localStreamName"
                raise GiveUp(f"localStreamName {self.local_name!r} is in use here") from None
            except BaseException:
                self.source = None
                raise
            self.local_media_session_id = info.media_session_id
            return
        had = {track.kind: track.mime for track in self.source.tracks}
        if {k: v.lower() for k, v in had.items()} != {k: v.lower() for k, v in codecs.items()}:
            self.log_budget.warning("%s %s: the remote stream changed codecs (%s then %s)",
                                    self.direction, printable(self.uri), printable(str(had)),
                                    printable(str(codecs)))
            raise GiveUp("the remote stream changed codecs")
        for track in self.source.tracks:
            track.attach(kinds[track.kind], receivers[track.kind])

    async def _release(self) -> None:
        if self.local_media_session_id is not None and self.source is not None \
                and not self.source.closed.is_set():
            info = self._stop_info if self._stop.is_set() else self.error
            await bounded(self.media.stop(self.local_media_session_id, info))


class Push(Link):
    """Publishes a local stream on the remote server (see the module docstring)."""

    direction = "push"
    _loop = "feed"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.feed: Feed | None = None

    async def open(self) -> None:
        """Become a player of the local stream. Raises NotPublished."""
        self.feed = await self.media.play(self.local_name, self.uri)
        self.local_media_session_id = self.feed.info.media_session_id

    async def _attempt(self) -> None:
        assert self.feed is not None, "open() first"
        tracks = self.feed.subscribe()
        if not tracks:
            raise Finished("local stream stopped")
        client = self._client()
        try:
            remote = await self._connecting(self._open(client, tracks))
            self.remote_media_session_id = remote.media_session_id
            self._set(ACTIVE, "")
            await self._until(remote, self.feed.ended)
            if self.feed.ended.is_set() or self._stop.is_set():
                await bounded(client.stop(remote), GOODBYE)
                if self.feed.ended.is_set():
                    raise Finished("local stream stopped")
                return
            if remote.status == "UNPUBLISHED" and remote.info != Info.SHUTDOWN:
                raise Finished(with_reason("remote stream stopped", remote.info))
            raise RemoteEnded(remote.status, remote.info, active=True)
        finally:
            await closed(client)

    async def _open(self, client: WcsClient, tracks: dict[str, Any]) -> ClientStream:
        """Connect, publish the local tracks, wait until the remote stream is PUBLISHING."""
        assert self.feed is not None
        await self._connect(client)
        remote = await client.publish(
            self.remote_name, list(tracks.values()), codecs=self.feed.codecs,
            keyframe_requests={kind: t.request_keyframe for kind, t in tracks.items()},
            on_sender=self.feed.sent_by,
            custom={**self.options.custom, HOPS: self.hops()},
            hasAudio="audio" in tracks, hasVideo="video" in tracks,
        )
        await self._accepted(remote, "PUBLISHING")
        return remote

    def _local_end(self) -> asyncio.Event | None:
        return self.feed.ended if self.feed is not None else None

    async def _release(self) -> None:
        if self.feed is not None:
            self.feed.unsubscribe()
            if not self.feed.ended.is_set() and self.local_media_session_id is not None:
                info = self._stop_info if self._stop.is_set() else self.error
                await bounded(self.media.stop(self.local_media_session_id, info))
