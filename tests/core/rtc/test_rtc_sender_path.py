"""compat.sender_path / count_sent: what a dedicated forwarding path reads of a
connected aiortc sender is enough to send media it would send, by hand: a receiver
decodes pictures that never went through the sender's own RTP loop, and the sender's
counters (its RTCP sender reports, getStats) include them."""

from __future__ import annotations

import asyncio
from typing import Any

import av
import pytest
from aiortc.codecs import vpx
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RtpPacket

from hookcast.rtc import aiortc as compat
from tests.core.rtc.relay_harness import (
    PatternVideoTrack,
    add_forced,
    connect,
    new_peer,
    wait_connected,
)

pytestmark = pytest.mark.usefixtures("loopback", "relay_installed")


class Silent(MediaStreamTrack):
    """A video track that never yields: the sender's own loop sends nothing."""

    kind = "video"

    async def recv(self) -> Any:
        await asyncio.Event().wait()


async def test_media_sent_by_hand_on_a_senders_path_is_received_and_counted() -> None:
    sending, receiving = new_peer(), new_peer()
    transceiver = add_forced(sending, Silent(), "sendonly", "video/VP8")
    sender = transceiver.sender
    compat.remember_parameters(sender)
    assert compat.sender_path(sender) is None, "nothing before the connection"
    add_forced(receiving, "video", "recvonly", "video/VP8")
    tracks: list[MediaStreamTrack] = []
    receiving.on("track", tracks.append)
    try:
        await connect(sending, receiving)
        await wait_connected(sending)
        path = None
        for _ in range(100):  # DTLS completes just after ICE
            path = compat.sender_path(sender)
            if path is not None:
                break
            await asyncio.sleep(0.05)
        assert path is not None
        assert (path.ssrc, path.rtx_ssrc) == (sender._ssrc, sender._rtx_ssrc)
        assert 96 <= path.payload_type <= 127  # a dynamic type: VP8's here
        assert path.rtx_payload_type is not None and path.mid is not None
        assert "abs_send_time" in path.extension_ids and "mid" in path.extension_ids
        # the nominated pair's own socket and the receiver's address
        pair = sender.transport.transport._connection._nominated[1]
        assert path.sock.getsockname() == (pair.local_candidate.host, pair.local_candidate.port)
        remote = receiving.getTransceivers()[0].receiver.transport.transport
        assert path.remote[1] in {c.port for c in remote.iceGatherer.getLocalCandidates()}
        assert path.srtp is sender.transport._tx_srtp
        assert path.codec.mimeType == "video/VP8"

        encoder, camera = vpx.Vp8Encoder(), PatternVideoTrack()
        sequence, sent_bytes = 1000, 0
        for index in range(30):
            frame = await camera.recv()
            payloads, timestamp = encoder.encode(frame, force_keyframe=index == 0)
            for number, payload in enumerate(payloads):
                packet = RtpPacket(payload_type=path.payload_type, sequence_number=sequence,
                                   timestamp=timestamp, ssrc=path.ssrc,
                                   marker=int(number == len(payloads) - 1))
                packet.payload = payload
                path.socket.sendto(path.srtp.protect(packet.serialize()), path.remote)
                sequence, sent_bytes = sequence + 1, sent_bytes + len(payload)
            compat.count_sent(sender, len(payloads), sum(map(len, payloads)), timestamp)
        decoder, pictures = av.CodecContext.create("vp8", "r"), 0
        track = tracks[0]
        while pictures < 25:
            packet = await asyncio.wait_for(track.recv(), 5)
            pictures += len(decoder.decode(packet))
        stats = [s for s in (await sender.getStats()).values() if s.type == "outbound-rtp"]
        assert stats[0].packetsSent == sequence - 1000 and stats[0].bytesSent == sent_bytes
        # the sender's own RTCP: its next sender report carries those counts
        receiver = receiving.getTransceivers()[0].receiver

        async def reported() -> Any:
            for _ in range(60):
                found = [s for s in (await receiver.getStats()).values()
                         if s.type == "remote-outbound-rtp"]
                if found and found[0].packetsSent == sequence - 1000:
                    return found[0]
                await asyncio.sleep(0.1)
            return None

        report = await reported()
        assert report is not None, "no sender report with the counts sent by hand"
        assert report.bytesSent == sent_bytes
    finally:
        await sending.close()
        await receiving.close()


async def test_nacks_go_to_the_answer_given_and_back() -> None:
    sending, receiving = new_peer(), new_peer()
    transceiver = add_forced(sending, Silent(), "sendonly", "video/VP8")
    sender = transceiver.sender
    add_forced(receiving, "video", "recvonly", "video/VP8")
    counted: list[int] = []
    answered: list[int] = []
    compat.on_retransmit(sender, lambda: counted.append(1))
    compat.answer_retransmits(sender, answered.append)
    try:
        await connect(sending, receiving)
        await wait_connected(sending)
        await wait_connected(receiving)
        receiver = receiving.getTransceivers()[0].receiver
        for _ in range(100):  # the receiver's RTCP needs the DTLS session
            if receiver.transport.state == "connected":
                break
            await asyncio.sleep(0.05)
        await receiver._send_rtcp_nack(sender._ssrc, [7, 9])
        for _ in range(100):
            if len(answered) == 2:
                break
            await asyncio.sleep(0.02)
        assert answered == [7, 9] and len(counted) == 2
        compat.answer_retransmits(sender, None)  # back to the sender's own (empty) history
        await receiver._send_rtcp_nack(sender._ssrc, [11])
        for _ in range(100):
            if len(counted) == 3:
                break
            await asyncio.sleep(0.02)
        assert answered == [7, 9] and len(counted) == 3
    finally:
        await sending.close()
        await receiving.close()
