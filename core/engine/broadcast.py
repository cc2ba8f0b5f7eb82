"""A broadcast: what one published name carries, from its source to its sinks.

Today the source is a WebRTC publisher's leg and the sinks are players' legs; the
recorder, VOD sources and server-to-server pulls attach here too, through the same
two ends: a source offers encoded tracks by kind with their codecs, a sink subscribes
to them. The engine owns broadcasts; plugins never see them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hookcast.engine.streams import Stream
from hookcast.rtc.packets import FrameMeta
from hookcast.rtc.peer import PublisherLeg


@dataclass
class Broadcast:
    """One published name: its publishing stream, its source leg and its players."""

    publisher: Stream
    leg: PublisherLeg
    players: dict[str, Stream] = field(default_factory=dict)

    def streams(self) -> tuple[Stream, ...]:
        """The publisher and every player."""
        return (self.publisher, *self.players.values())

    def picture_size(self) -> tuple[int, int] | None:
        """Width and height of the last keyframe the source sent, if any."""
        video = self.leg.tracks.get("video")
        keyframe = video.last_keyframe if video is not None else None
        meta = keyframe.opaque if keyframe is not None else None
        if isinstance(meta, FrameMeta) and meta.width and meta.height:
            return meta.width, meta.height
        return None

