"""Cheap inspection of encoded video frames: keyframe flag and picture size.

Pure functions over bytes; nothing here imports aiortc or PyAV. The relay calls them
once per frame on the event loop, so each one is O(size of the headers it reads), not
O(size of the frame) except for the Annex B start-code scan of H.264.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

VP8_START_CODE = b"\x9d\x01\x2a"
H264_NAL_IDR = 5
H264_NAL_SPS = 7
H264_NAL_PPS = 8
# profile_idc values whose SPS carries chroma_format_idc and bit depths (H.264 7.3.2.1.1)
_H264_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


@dataclass(frozen=True, slots=True)
class PictureInfo:
    """What one encoded video frame says about itself.

    keyframe: the frame can be decoded without any earlier frame (VP8 key frame, or an
        H.264 access unit holding an IDR slice).
    has_parameter_sets: H.264 only: the frame carries an SPS (NAL 7) and a PPS (NAL 8),
        so a decoder that joins here needs nothing else. Always True for VP8 keyframes.
    width, height: picture size in pixels when the frame states it (VP8 key frames, H.264
        frames carrying an SPS), else None.
    """

    keyframe: bool
    has_parameter_sets: bool = False
    width: int | None = None
    height: int | None = None


NOT_A_KEYFRAME = PictureInfo(keyframe=False)


def inspect_vp8(data: bytes) -> PictureInfo:
    """Inspect a depayloaded VP8 frame (RFC 6386 section 9.1).

    A key frame has bit 0 of the frame tag clear AND the start code 9d 01 2a at bytes
    3-5; a frame with the bit clear but no start code is reported as not a keyframe
    (it is corrupt or truncated). Width and height are the 14-bit little-endian fields
    at bytes 6-9 (the 2 scaling bits are ignored).
    """
    if len(data) < 10 or data[0] & 1 or data[3:6] != VP8_START_CODE:
        return NOT_A_KEYFRAME
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return PictureInfo(keyframe=True, has_parameter_sets=True, width=width, height=height)


def annexb_spans(data: bytes) -> Iterator[tuple[int, int]]:
    """Yield (begin, end) of each NAL unit (header byte first, no start code) of an
    Annex B stream, without copying it. Accepts 3- and 4-byte start codes; bytes
    before the first start code are skipped."""
    start = data.find(b"\x00\x00\x01")
    while start != -1:
        begin = start + 3
        nxt = data.find(b"\x00\x00\x01", begin)
        end = len(data) if nxt == -1 else nxt
        if nxt != -1 and data[nxt - 1] == 0:
            end -= 1  # the zero belongs to the next 4-byte start code
        if end > begin:
            yield begin, end
        start = nxt


def iter_annexb_nals(data: bytes) -> Iterator[bytes]:
    """Each NAL unit of an Annex B stream, as bytes (see annexb_spans)."""
    for begin, end in annexb_spans(data):
        yield data[begin:end]


def inspect_h264(data: bytes) -> PictureInfo:
    """Inspect a depayloaded H.264 access unit in Annex B form (as aiortc produces).

    keyframe is True when any NAL unit is an IDR slice (type 5). Width and height come
    from the first SPS (type 7) if one is present and parses; otherwise None.
    """
    keyframe = has_sps = has_pps = False
    width = height = None
    for begin, end in annexb_spans(data):  # per frame: read header bytes, copy only an SPS
        nal_type = data[begin] & 0x1F
        if nal_type == H264_NAL_IDR:
            keyframe = True
        elif nal_type == H264_NAL_PPS:
            has_pps = True
        elif nal_type == H264_NAL_SPS and not has_sps:
            has_sps = True
            size = parse_h264_sps_size(data[begin:end])
            if size is not None:
                width, height = size
    return PictureInfo(keyframe, has_sps and has_pps, width, height)


#: NAL unit types a keyframe's access unit may begin with: AUD, SEI, SPS
_H264_KEYFRAME_OPENERS = (9, 6, 7)


def begins_keyframe(data: bytes) -> bool:
    """True when depayloaded bytes are the beginning of a keyframe, whatever its codec:
    VP8 (a frame tag with the start code) or H.264 in Annex B (a start code, then an
    AUD, SEI or SPS, or the first slice of an IDR picture). It lets a receiver take the
    first packet it ever sees as a frame start without a frame before it to prove it."""
    if data.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")):
        begin = 4 if data[2] == 0 else 3
        if len(data) <= begin + 1:
            return False
        nal_type = data[begin] & 0x1F
        first_slice = nal_type == H264_NAL_IDR and bool(data[begin + 1] & 0x80)
        return nal_type in _H264_KEYFRAME_OPENERS or first_slice
    return inspect_vp8(data).keyframe


class _BitReader:
    """MSB-first bit reader with Exp-Golomb decoding; raises IndexError past the end."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def bit(self) -> int:
        byte = self._data[self._pos >> 3]
        value = (byte >> (7 - (self._pos & 7))) & 1
        self._pos += 1
        return value

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("Exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)


def _unescape(nal: bytes) -> bytes:
    """Remove emulation-prevention bytes (00 00 03 -> 00 00) from a NAL payload."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _skip_scaling_lists(reader: _BitReader, count: int) -> None:
    for index in range(count):
        if not reader.bit():
            continue
        last = next_scale = 8
        for _ in range(16 if index < 6 else 64):
            if next_scale != 0:
                next_scale = (last + reader.se() + 256) % 256
            last = next_scale or last


def _read_chroma_format(reader: _BitReader, profile_idc: int) -> int:
    """Read the high-profile fields up to the scaling matrices; return chroma_format_idc."""
    if profile_idc not in _H264_HIGH_PROFILES:
        return 1
    chroma_format_idc = reader.ue()
    if chroma_format_idc == 3:
        reader.bit()  # separate_colour_plane_flag
    reader.ue()  # bit_depth_luma_minus8
    reader.ue()  # bit_depth_chroma_minus8
    reader.bit()  # qpprime_y_zero_transform_bypass_flag
    if reader.bit():  # seq_scaling_matrix_present_flag
        _skip_scaling_lists(reader, 8 if chroma_format_idc != 3 else 12)
    return chroma_format_idc


def _skip_pic_order_cnt(reader: _BitReader) -> None:
    reader.ue()  # log2_max_frame_num_minus4
    poc_type = reader.ue()
    if poc_type == 0:
        reader.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        reader.bit()  # delta_pic_order_always_zero_flag
        reader.se()  # offset_for_non_ref_pic
        reader.se()  # offset_for_top_to_bottom_field
        for _ in range(reader.ue()):
            reader.se()


def parse_h264_sps_size(nal: bytes) -> tuple[int, int] | None:
    """Return (width, height) in pixels from an SPS NAL unit (header byte included).

    Applies frame cropping. Returns None if the NAL is not an SPS or is truncated.
    """
    if not nal or nal[0] & 0x1F != H264_NAL_SPS:
        return None
    reader = _BitReader(_unescape(nal[1:]))
    try:
        profile_idc = reader.bits(8)
        reader.bits(16)  # constraint flags, level_idc
        reader.ue()  # seq_parameter_set_id
        chroma_format_idc = _read_chroma_format(reader, profile_idc)
        _skip_pic_order_cnt(reader)
        reader.ue()  # max_num_ref_frames
        reader.bit()  # gaps_in_frame_num_value_allowed_flag
        width_mbs = reader.ue() + 1
        height_units = reader.ue() + 1
        frame_mbs_only = reader.bit()
        if not frame_mbs_only:
            reader.bit()  # mb_adaptive_frame_field_flag
        reader.bit()  # direct_8x8_inference_flag
        crop = [reader.ue() for _ in range(4)] if reader.bit() else [0, 0, 0, 0]
    except (IndexError, ValueError):
        return None
    sub_width = 2 if chroma_format_idc in (1, 2) else 1
    sub_height = 2 if chroma_format_idc == 1 else 1
    crop_y = sub_height * (2 - frame_mbs_only)
    width = width_mbs * 16 - (crop[0] + crop[1]) * sub_width
    height = (2 - frame_mbs_only) * height_units * 16 - (crop[2] + crop[3]) * crop_y
    return width, height
