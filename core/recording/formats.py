"""Which container a recording goes into, and what becomes of its audio.

``record_formats`` (WCS's property) maps each video codec to a container:
``h264-mp4`` (default) or ``h264-mkv``; ``vp8-webm`` (default) or ``vp8-mkv``. Audio-only
streams go to MP4. Video is always muxed as it arrived. Audio is kept as it is where
the container takes it (Opus in WebM and Matroska, and in MP4 with
``record_mp4_audio=opus``) and transcoded where it must be: to AAC for MP4 by default (the
only decode the server does), to Opus for G.711 elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

#: record_formats values the recorder knows
FORMATS = ("h264-mp4", "h264-mkv", "vp8-webm", "vp8-mkv")
DEFAULT_FORMATS = ("h264-mp4", "vp8-webm")

#: FFmpeg muxer and file extension per container name used in record_formats
CONTAINERS = {"mp4": ("mp4", "mp4"), "webm": ("webm", "webm"), "mkv": ("matroska", "mkv")}
#: encoder names FFmpeg knows the negotiated codecs by
VIDEO_CODECS = {"H264": "h264", "VP8": "vp8"}
AUDIO_DECODERS = {"opus": "opus", "PCMU": "pcm_mulaw", "PCMA": "pcm_alaw"}


class NotRecordable(ValueError):
    """A stream whose codecs no configured format can hold; the message says why."""


@dataclass(frozen=True)
class Format:
    """How one recording is written."""

    muxer: str  # FFmpeg format name: mp4, webm, matroska
    extension: str
    video: str | None  # FFmpeg codec name muxed as it is: h264, vp8
    audio_in: str | None  # FFmpeg decoder name of the arriving audio: opus, pcm_mulaw...
    audio_out: str | None  # what the file holds: aac, or opus
    #: the arriving audio goes into the file as it is (no decode)
    audio_passthrough: bool


def choose(video_codec: str, audio_codec: str, record_formats: tuple[str, ...],
           mp4_audio: str = "aac") -> Format:
    """The format for a stream with these codecs (names as the stream object gives them:
    ``H264``, ``VP8``, ``opus``, ``PCMU``, ``PCMA``, or empty for none); ``mp4_audio``:
    what MP4 files hold, ``aac`` or ``opus`` (record_mp4_audio)."""
    video = VIDEO_CODECS.get(video_codec) if video_codec else None
    if video_codec and video is None:
        raise NotRecordable(f"video codec {video_codec} cannot be recorded")
    audio_in = AUDIO_DECODERS.get(audio_codec) if audio_codec else None
    if audio_codec and audio_in is None:
        raise NotRecordable(f"audio codec {audio_codec} cannot be recorded")
    if video is None and audio_in is None:
        raise NotRecordable("the stream has neither audio nor video")
    container = "mp4"
    if video is not None:
        chosen = next((f for f in record_formats if f.startswith(video + "-")), None)
        container = chosen.split("-", 1)[1] if chosen else ("mp4" if video == "h264" else "webm")
    muxer, extension = CONTAINERS[container]
    if audio_in is None:
        audio_out = None
    elif muxer == "mp4":
        audio_out = "opus" if mp4_audio == "opus" else "aac"
    else:
        audio_out = "opus"
    return Format(muxer, extension, video, audio_in, audio_out,
                  audio_passthrough=audio_in == "opus" and audio_out == "opus")
