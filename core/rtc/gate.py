"""The keyframe gate: the one rule for when a sink may take a video frame.

A video frame is only worth anything if the frames it refers to were taken too. So every
sink of a broadcast's video (a player on the forwarding path, a player on aiortc's
sender, the recorder, a push) holds a gate, and takes a frame only through it:

- a new sink is out of sync: it takes nothing until a keyframe;
- when frames were lost upstream (the receive path gave up on a gap: the next frame is
  ``complete=False``), every sink of that track is put out of sync, and one keyframe is
  asked for;
- when a sink itself cannot keep up (a player's socket refuses, its queue overflows,
  a recorder's writer falls behind), that sink alone is put out of sync and a keyframe is
  asked for.

So a gap is a frozen picture followed by a clean one, never a smeared one, for every kind
of sink alike. Audio needs no gate: each packet stands alone.
"""

from __future__ import annotations

from collections.abc import Callable

from hookcast.rtc.packets import EncodedPacket


class KeyframeGate:
    """Whether one sink takes the next video frame (see the module docstring).

    ``request_keyframe`` asks the source for one (coalesced by the caller's keyframe
    controller); ``dropped`` counts frames the gate held back."""

    __slots__ = ("dropped", "request_keyframe", "synced")

    def __init__(self, request_keyframe: Callable[[], None] | None = None,
                 synced: bool = False) -> None:
        self.synced = synced
        self.request_keyframe = request_keyframe
        self.dropped = 0

    def admit(self, packet: EncodedPacket) -> bool:
        """True when the sink may take ``packet``: it is in sync, or this is a keyframe
        (which puts it in sync)."""
        return self.passes(bool(packet.is_keyframe))

    def passes(self, keyframe: bool) -> bool:
        """``admit`` for a frame known only by whether it is a keyframe."""
        if self.synced:
            return True
        if keyframe:
            self.synced = True
            return True
        self.dropped += 1
        return False

    def unsync(self, ask: bool = True) -> None:
        """Take nothing until the next keyframe, and (``ask``) ask the source for one."""
        self.synced = False
        if ask and self.request_keyframe is not None:
            self.request_keyframe()


class OpenGate(KeyframeGate):
    """The gate of a sink that needs no keyframe (audio): it always admits."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(synced=True)

    def passes(self, keyframe: bool) -> bool:
        return True

    def unsync(self, ask: bool = True) -> None:
        pass


def gate_for(kind: str, request_keyframe: Callable[[], None] | None) -> KeyframeGate:
    """A new sink's gate: out of sync for video, always open for audio."""
    return KeyframeGate(request_keyframe) if kind == "video" else OpenGate()
