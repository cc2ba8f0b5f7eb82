"""Chromium with the official WCS Web SDK plays from the dedicated forwarding path
(hookcast.rtc.fastpath): with 5 % of the server's datagrams to it dropped, the browser asks
for them again (NACK), the fast path answers, and the browser's own getStats stays healthy:
frames decoded keep rising, jitter is sane, sender reports arrive (SR), and the round trip
is measured at both ends (the browser's ICE checks; the server, from the browser's RR)."""

from __future__ import annotations

import asyncio
from typing import Any

from hookcast.keys import ENGINE
from hookcast.rtc.fastpath import FastPlayer
from hookcast.server import Server
from tests.e2e.conftest import Page, assert_kept_up, frames_over
from tests.e2e.test_websdk import OpenPage, frames_decoded, publish_on_a_play_on_b
from tests.fastpath_shims import Lossy, relay_paths

#: the share of the datagrams to the player the shim drops (retransmissions included)
LOSS = 0.05
#: the longest the player is watched under loss for every sign of repair to show
WATCH = 20.0


async def on_fast_path(server: Server, timeout: float = 10) -> dict[str, float]:
    """/metrics once the player's video and audio are both on the fast path (they move
    there once their senders have started), or as last read."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        paths = await relay_paths(server)
        if paths.get("video/fast") == 1 and paths.get("audio/fast") == 1:
            return paths
        if asyncio.get_running_loop().time() > deadline:
            return paths
        await asyncio.sleep(0.2)


async def player_stats(page: Page) -> dict[str, dict[str, Any]]:
    """The player's video reports from the browser's RTCPeerConnection getStats (through
    the SDK): ``inbound`` (inbound-rtp), ``remote`` (remote-outbound-rtp: what the
    server's sender reports said) and ``pair`` (the selected ICE candidate pair)."""
    stats = await page.call("hc.nativeStats('player')")
    inbound = next(r for r in stats.get("inbound-rtp", []) if r.get("kind") == "video")
    remote = next((r for r in stats.get("remote-outbound-rtp", [])
                   if r.get("localId") == inbound["id"]), {})
    selected = {t.get("selectedCandidatePairId") for t in stats.get("transport", [])}
    pair = next((r for r in stats.get("candidate-pair", []) if r["id"] in selected), {})
    return {"inbound": inbound, "remote": remote, "pair": pair}


async def server_rtt(sender: Any) -> float | None:
    """The round trip the server's aiortc sender measured from the browser's receiver
    reports against its own sender reports (remote-inbound-rtp), None before any."""
    report = await sender.getStats()
    remote = [s for s in report.values() if s.type == "remote-inbound-rtp"]
    return remote[0].roundTripTime if remote else None


async def watch(page: Page, first: dict[str, dict[str, Any]], player: FastPlayer,
                ) -> tuple[dict[str, dict[str, Any]], float | None]:
    """The player's stats (player_stats) and the server's RTT (server_rtt), once they show
    NACKs and retransmissions since ``first``, a new sender report and both round trips,
    or after WATCH seconds."""
    deadline = asyncio.get_running_loop().time() + WATCH
    while True:
        stats, rtt = await player_stats(page), await server_rtt(player.sender)
        inbound, before = stats["inbound"], first["inbound"]
        if (inbound["nackCount"] > before["nackCount"]
                and inbound.get("retransmittedPacketsReceived", 0)
                > before.get("retransmittedPacketsReceived", 0)
                and stats["remote"].get("reportsSent", 0) > first["remote"].get("reportsSent", 0)
                and stats["pair"].get("totalRoundTripTime", 0) > 0
                and rtt is not None) or asyncio.get_running_loop().time() > deadline:
            return stats, rtt
        await asyncio.sleep(0.5)


async def test_sdk_plays_from_the_fast_path_and_nacks_are_answered(
    server: Server, open_page: OpenPage
) -> None:
    a, b = await publish_on_a_play_on_b(server, open_page, {"stripCodecs": "H264,VP9,AV1,H265"})
    await frames_decoded(b, 1)

    paths = await on_fast_path(server)
    assert paths.get("video/fast") == 1 and paths.get("audio/fast") == 1, paths
    assert paths.get("video/aiortc") == 0 and paths.get("audio/aiortc") == 0, paths

    engine = server.http_app[ENGINE]
    (stream,) = engine.registry.players_of("cam")
    leg = engine.leg_of(stream)
    (player,) = engine.broadcasts["cam"].tracks["video"].fanout.players
    assert player.subscriber in leg.subscribers and player.sender in leg.pc.getSenders()

    first = await player_stats(b)
    answered = player.counters.retransmits
    real = player.sock
    lossy = player.sock = Lossy(real, LOSS)
    try:
        # B still decodes (nearly) every frame A encodes while 5 % is lost and repaired
        encoded, decoded = await frames_over(4.0, a, b)
        last, rtt = await watch(b, first, player)
    finally:
        player.sock = real
    inbound, remote, pair = last["inbound"], last["remote"], last["pair"]
    before = first["inbound"]
    observed = (
        f"dropped {lossy.dropped} of {lossy.dropped + lossy.sent} datagrams; "
        f"NACKed packets the fast path answered: {player.counters.retransmits - answered}; "
        f"server's RTT: {rtt}; browser's getStats before the loss: {first}; after: {last}"
    )

    assert lossy.dropped > 0, observed
    assert_kept_up(encoded, decoded, [a, b])
    assert inbound["framesDecoded"] > before["framesDecoded"] > 0, observed
    # the browser asked for what was lost, the fast path answered, and the answers arrived
    assert inbound["nackCount"] > before["nackCount"], observed
    assert player.counters.retransmits > answered, observed
    assert (inbound["retransmittedPacketsReceived"]
            > before.get("retransmittedPacketsReceived", 0)), observed
    assert 0 <= inbound["jitter"] < 0.1, observed  # seconds
    # the server's sender reports (SR) kept arriving, counting what the fast path sent
    assert remote.get("reportsSent", 0) > first["remote"].get("reportsSent", 0), observed
    assert remote["remoteTimestamp"] > 0, observed
    assert remote["packetsSent"] > first["remote"].get("packetsSent", 0), observed
    # round trips: the browser's ICE checks; the server's, from the browser's RR of its SR
    assert pair["totalRoundTripTime"] > 0, observed
    assert rtt is not None and rtt >= 0, observed
