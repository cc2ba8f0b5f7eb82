"""Server-side peer connections: answer a publisher's offer, answer a player's offer.

The WCS client always sends the offer, without candidates, and expects the answer to
carry the server's candidates (aiortc gathers before ``setLocalDescription`` returns).
The server chooses one codec per kind and forces it on the publisher's leg; every
player's leg is forced to the same codec, so the relayed packets always match.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.sdp import SessionDescription

from hookcast.rtc.aiortc import (
    force_codec,
    on_keyframe_request,
    on_nack_sent,
    on_retransmit,
    remember_parameters,
    request_keyframe,
    sender_path,
    tolerate_checks_without_priority,
)
from hookcast.rtc.aiortc.receiver import LeanIngress, LeanReceiver, take_over
from hookcast.rtc.relay import PublishedTrack, SubscriberTrack

logger = logging.getLogger(__name__)

#: Codecs the relay can carry, in the server's order of preference per kind.
RELAYABLE = {
    "video": ("video/VP8", "video/H264"),
    "audio": ("audio/opus", "audio/PCMU", "audio/PCMA"),
}


class Closable(Protocol):
    async def close(self) -> None: ...


class Reading(Closable, Protocol):
    """A media source a leg reads (hookcast.engine.sources.Counted)."""

    def start(self) -> None: ...

    @property
    def failure(self) -> str: ...


class NoCommonCodecs(Exception):
    """The offer has no codec the relay (or the publisher) uses for a kind."""


class BadOffer(ValueError):
    """The SDP offer cannot be parsed; the message says why."""


@dataclass(frozen=True)
class OfferedMedia:
    kind: str
    mimes: tuple[str, ...]
    direction: str


def parse_offer(sdp: str) -> list[OfferedMedia]:
    """The audio and video sections of an offer, with their codecs in offer order."""
    try:
        description = SessionDescription.parse(sdp)
    except Exception as error:  # aiortc raises assorted errors on bad input
        raise BadOffer(f"invalid SDP offer: {error or type(error).__name__}") from error
    offered = [
        OfferedMedia(
            kind=media.kind,
            mimes=tuple(codec.mimeType for codec in media.rtp.codecs),
            direction=media.direction or "sendrecv",
        )
        for media in description.media
        if media.kind in RELAYABLE
    ]
    if not offered:
        raise BadOffer("invalid SDP offer: no audio or video section")
    if any(media.dtls is None or not media.dtls.fingerprints for media in description.media
           if media.kind in RELAYABLE and media.port != 0):
        raise BadOffer("invalid SDP offer: no DTLS fingerprint (a=fingerprint)")
    mids = {media.rtp.muxId for media in description.media}
    for group in description.group:
        unknown = [str(mid) for mid in group.items if mid not in mids]
        if unknown:
            raise BadOffer(f"invalid SDP offer: group {group.semantic} names media "
                           f"{', '.join(unknown)} that the offer does not have")
    return offered


def choose_codec(media: OfferedMedia) -> str | None:
    """The first codec in the offer's order that the relay can carry."""
    relayable = {mime.lower(): mime for mime in RELAYABLE[media.kind]}
    return next((relayable[m.lower()] for m in media.mimes if m.lower() in relayable), None)


def rtc_configuration(stun_server: str) -> RTCConfiguration:
    """No ICE servers unless one is configured (aiortc would otherwise add a public STUN)."""
    servers = [RTCIceServer(urls=stun_server)] if stun_server else []
    return RTCConfiguration(iceServers=servers)


async def _answer(pc: RTCPeerConnection, offer_sdp: str) -> str:
    """The answer to an offer; BadOffer for one aiortc cannot take (it says why with a
    ValueError: no ICE credentials, sections that do not match, ...)."""
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
    except ValueError as error:
        raise BadOffer(f"invalid SDP offer: {error}") from error
    tolerate_checks_without_priority(pc)
    await pc.setLocalDescription(await pc.createAnswer())
    return str(pc.localDescription.sdp)


def payload_types(answer_sdp: str) -> dict[str, int]:
    """The negotiated RTP payload type per kind (WCS reports codecs by it)."""
    description = SessionDescription.parse(answer_sdp)
    return {
        m.kind: m.rtp.codecs[0].payloadType or 0 for m in description.media if m.rtp.codecs
    }


@dataclass
class PublisherLeg:
    """A broadcast's source: one PublishedTrack per kind, with its codecs.

    For a WebRTC publisher, ``pc`` is its peer connection; for a media source (a file, a
    stream pulled from another server) ``pc`` is None and ``source`` is closed with the
    leg. ``nacks`` counts, per kind, packets the server asked the publisher to resend.
    """

    pc: RTCPeerConnection | None
    tracks: dict[str, PublishedTrack] = field(default_factory=dict)
    codecs: dict[str, str] = field(default_factory=dict)
    payload_types: dict[str, int] = field(default_factory=dict)
    nacks: Counter[str] = field(default_factory=Counter)
    source: Reading | None = None
    #: a WebRTC publisher's receive path on the loop (hookcast.rtc.aiortc.receiver)
    ingresses: list[LeanIngress] = field(default_factory=list)

    def start(self) -> None:
        """Begin: a media source's reading starts, and its tracks take what it reads (a
        WebRTC publisher's tracks started with it). Idempotent."""
        if self.source is not None:
            self.source.start()
        for track in self.tracks.values():
            track.start()

    @property
    def failure(self) -> str:
        """Why a media source ended before its end ("" when it did not, or for a
        WebRTC publisher)."""
        return self.source.failure if self.source is not None else ""

    async def close(self) -> None:
        for ingress in self.ingresses:
            ingress.close()
        for track in self.tracks.values():
            await track.close()
        if self.pc is not None:
            await self.pc.close()
        if self.source is not None:
            await self.source.close()


@dataclass
class PlayerLeg:
    """A player's peer connection and the subscriber tracks it sends: a sink of the
    broadcast it plays (hookcast.engine.broadcast.Sink), for ``stream``.

    ``nacks`` counts, per kind, packets the player asked the server to resend. A player
    the server runs itself (a push to another server) has no ``pc`` of its own here: its
    ``feed`` is closed with the leg.
    """

    pc: RTCPeerConnection | None
    subscribers: list[SubscriberTrack] = field(default_factory=list)
    codecs: dict[str, str] = field(default_factory=dict)
    payload_types: dict[str, int] = field(default_factory=dict)
    nacks: Counter[str] = field(default_factory=Counter)
    feed: Closable | None = None
    stream: Any = None

    async def close(self) -> None:
        for subscriber in self.subscribers:
            subscriber.stop()
        if self.pc is not None:
            await self.pc.close()
        if self.feed is not None:
            await self.feed.close()


def _counting(counter: Counter[str], kind: str) -> Callable[[int], None]:
    def count(amount: int) -> None:
        counter[kind] += amount

    return count


def _pli_sender(receiver: RTCRtpReceiver):  # type: ignore[no-untyped-def]
    async def send() -> None:
        await request_keyframe(receiver)

    return send


async def open_publisher(
    offer_sdp: str, config: RTCConfiguration, name: str, lean: bool = True
) -> tuple[PublisherLeg, str]:
    """Answer a publisher; its tracks start relaying at once. Raises BadOffer or NoCommonCodecs.

    ``lean``: its RTP is received on the event loop (hookcast.rtc.aiortc.receiver);
    otherwise by aiortc's own receiver and its decoder thread."""
    offered = parse_offer(offer_sdp)
    chosen = [(media, choose_codec(media)) for media in offered]
    if all(mime is None for _, mime in chosen):
        raise NoCommonCodecs(", ".join(m for media in offered for m in media.mimes))
    pc = RTCPeerConnection(config)
    leg = PublisherLeg(pc)
    try:
        transceivers = []
        for media, mime in chosen:
            transceiver = pc.addTransceiver(media.kind, direction="recvonly")
            if mime is not None:
                force_codec(transceiver, mime)
                transceivers.append((transceiver, mime))
        answer = await _answer(pc, offer_sdp)
        leg.payload_types = payload_types(answer)
        receivers = []
        for transceiver, mime in transceivers:
            kind = mime.split("/")[0]
            on_nack_sent(transceiver.receiver, _counting(leg.nacks, kind))
            track = PublishedTrack(
                None if lean else transceiver.receiver.track, kind=kind,
                send_pli=_pli_sender(transceiver.receiver),
                name=f"{name}/{kind}",
            )
            if lean:
                receivers.append(LeanReceiver(transceiver.receiver, kind, track.push))
            track.start()
            leg.tracks[kind] = track
            leg.codecs[kind] = mime
        leg.ingresses = take_over(receivers)
    except BaseException:
        await leg.close()
        raise
    return leg, answer


def serve_fast(published: PublishedTrack, subscriber: SubscriberTrack, sender: RTCRtpSender,
               gso: bool) -> None:
    """Move ``subscriber`` to the dedicated forwarding path once ``sender`` (which sends
    it) has started, as a player's own tracks are (call before the offer or answer)."""
    remember_parameters(sender, _fast_path_when_started(published, subscriber, gso))


def _fast_path_when_started(published: PublishedTrack, subscriber: SubscriberTrack,
                            gso: bool) -> Callable[[RTCRtpSender], None]:
    def started(sender: RTCRtpSender) -> None:
        path = sender_path(sender)
        if path is None:
            logger.info("%s: a player's pair cannot take the fast path (TURN or TCP): "
                        "aiortc's own sender serves it", published.name)
            return
        published.go_fast(subscriber, sender, path, gso)

    return started


async def open_player(
    offer_sdp: str,
    config: RTCConfiguration,
    tracks: dict[str, PublishedTrack],
    codecs: dict[str, str],
    fast_path: bool = False,
    gso: bool = True,
) -> tuple[PlayerLeg, str]:
    """Answer a player with the publisher's tracks, each forced to the publisher's codec.

    With ``fast_path``, each track moves to the dedicated forwarding path once its sender
    has started (hookcast.rtc.fastpath; ``gso``: UDP GSO where the kernel has it)."""
    offered = parse_offer(offer_sdp)
    pc = RTCPeerConnection(config)
    leg = PlayerLeg(pc)
    try:
        for media in offered:
            published = tracks.get(media.kind)
            if published is None:
                continue
            mime = codecs[media.kind]
            if mime.lower() not in (m.lower() for m in media.mimes):
                raise NoCommonCodecs(f"the stream's {media.kind} is {mime}; the player offers "
                                     f"{', '.join(media.mimes) or 'nothing'}")
            subscriber = published.subscribe()
            leg.subscribers.append(subscriber)
            transceiver = pc.addTransceiver(subscriber, direction="sendonly")
            force_codec(transceiver, mime)
            on_keyframe_request(transceiver.sender, subscriber.request_keyframe)
            on_retransmit(transceiver.sender, partial(_counting(leg.nacks, media.kind), 1))
            if fast_path:
                serve_fast(published, subscriber, transceiver.sender, gso)
            leg.codecs[media.kind] = mime
        answer = await _answer(pc, offer_sdp)
        leg.payload_types = payload_types(answer)
    except BaseException:
        with contextlib.suppress(Exception):
            await leg.close()
        raise
    return leg, answer
