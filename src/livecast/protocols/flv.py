"""FLV, sans-IO: what ingest hands the media pipeline, and what its tags say about the codecs.

RTMP audio/video/data message bodies *are* FLV tag bodies, so writing FLV is framing: an
11-byte tag header before and a 4-byte previous-tag-size after each body. The parsers read
just enough of the codec configuration for the ladder and the health panel: the H.264
profile, level and coded size from avcC/SPS, and the AAC sample rate and channel count.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

AUDIO, VIDEO, SCRIPT = 8, 9, 18
HEADER_SIZE = 13  # 9-byte file header + PreviousTagSize0
MAX_TAG_SIZE = 0xFFFFFF

_U32 = struct.Struct(">I")


class FLVError(ValueError):
    pass


def header(has_audio: bool = True, has_video: bool = True) -> bytes:
    flags = (0x04 if has_audio else 0) | (0x01 if has_video else 0)
    return b"FLV\x01" + bytes((flags,)) + b"\x00\x00\x00\x09" + b"\x00\x00\x00\x00"


def tag(tag_type: int, timestamp: int, body: bytes) -> bytes:
    size = len(body)
    if size > MAX_TAG_SIZE:
        raise FLVError("tag body too large for FLV")
    ts = timestamp & 0xFFFFFFFF
    head = bytes((tag_type, size >> 16, (size >> 8) & 0xFF, size & 0xFF,
                  (ts >> 16) & 0xFF, (ts >> 8) & 0xFF, ts & 0xFF, ts >> 24, 0, 0, 0))
    return b"".join((head, body, _U32.pack(size + 11)))


@dataclass(slots=True)
class Tag:
    tag_type: int
    timestamp: int
    body: bytes


class FLVReader:
    """Incremental reader: feed bytes, get header flags once and whole tags."""

    def __init__(self, max_tag_size: int = MAX_TAG_SIZE) -> None:
        self._buf = bytearray()
        self.header: bytes | None = None
        self.max_tag_size = max_tag_size

    def feed(self, data: bytes) -> list[Tag]:
        self._buf += data
        buf = self._buf
        out: list[Tag] = []
        pos = 0
        if self.header is None:
            if len(buf) < HEADER_SIZE:
                return out
            if buf[:3] != b"FLV":
                raise FLVError("not an FLV stream")
            offset = _U32.unpack_from(buf, 5)[0]
            if offset < 9 or offset > 1024:
                raise FLVError("bad FLV header size")
            if len(buf) < offset + 4:
                return out
            self.header = bytes(buf[:offset])
            pos = offset + 4
        while len(buf) - pos >= 11:
            tag_type = buf[pos] & 0x1F
            size = (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]
            if size > self.max_tag_size:
                raise FLVError("FLV tag too large")
            if tag_type not in (AUDIO, VIDEO, SCRIPT):
                raise FLVError(f"unknown FLV tag type {tag_type}")
            if len(buf) - pos < 11 + size + 4:
                break
            ts = (buf[pos + 7] << 24) | (buf[pos + 4] << 16) | (buf[pos + 5] << 8) | buf[pos + 6]
            out.append(Tag(tag_type, ts, bytes(buf[pos + 11 : pos + 11 + size])))
            pos += 11 + size + 4
        del buf[:pos]
        return out


# Tag bodies ----------------------------------------------------------------------------------


def is_video_keyframe(body: bytes) -> bool:
    return len(body) > 0 and (body[0] >> 4) == 1


def is_avc_sequence_header(body: bytes) -> bool:
    return len(body) > 1 and (body[0] & 0x0F) == 7 and body[1] == 0


def is_aac_sequence_header(body: bytes) -> bool:
    return len(body) > 1 and (body[0] >> 4) == 10 and body[1] == 0


AUDIO_FORMATS = {2: "mp3", 10: "aac", 11: "speex", 14: "mp3"}


@dataclass
class VideoConfig:
    codec: str  # RFC 6381, e.g. avc1.64001f
    profile: int
    level: int
    width: int
    height: int
    fps: float = 0.0  # from the SPS's VUI timing info; 0 when the encoder left it out


@dataclass
class AudioConfig:
    codec: str  # mp4a.40.2
    object_type: int
    sample_rate: int
    channels: int


def parse_avc_config(body: bytes) -> VideoConfig:
    """From an AVC sequence header tag body (5-byte FLV video prefix + avcC)."""
    avcc = body[5:]
    if len(avcc) < 8 or avcc[0] != 1:
        raise FLVError("bad avcC")
    profile, compat, level = avcc[1], avcc[2], avcc[3]
    count = avcc[5] & 0x1F
    if count < 1:
        raise FLVError("avcC without SPS")
    sps_len = (avcc[6] << 8) | avcc[7]
    sps = avcc[8 : 8 + sps_len]
    if len(sps) != sps_len or sps_len < 4:
        raise FLVError("truncated SPS")
    width, height, fps = parse_sps(sps)
    return VideoConfig(f"avc1.{profile:02x}{compat:02x}{level:02x}", profile, level, width, height, fps)


class _Bits:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def bit(self) -> int:
        byte = self.pos >> 3
        if byte >= len(self.data):
            raise FLVError("SPS truncated")
        value = (self.data[byte] >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return value

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise FLVError("bad Exp-Golomb code in SPS")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


def _unescape(nal: bytes) -> bytes:
    """Remove emulation-prevention bytes (00 00 03 -> 00 00)."""
    if b"\x00\x00\x03" not in nal:
        return nal
    out = bytearray()
    zeros = 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def parse_sps_size(sps: bytes) -> tuple[int, int]:
    """Display width and height from an H.264 SPS NAL unit (ITU-T H.264 7.3.2.1.1)."""
    width, height, _ = parse_sps(sps)
    return width, height


def parse_sps(sps: bytes) -> tuple[int, int, float]:
    """Display width, height and frame rate (0 if not signalled) from an H.264 SPS NAL unit."""
    r = _Bits(_unescape(sps[1:]))  # skip the NAL header
    profile = r.bits(8)
    r.bits(16)  # constraint flags, level
    r.ue()  # seq_parameter_set_id
    chroma_format = 1
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma_format = r.ue()
        if chroma_format == 3:
            r.bit()
        r.ue()
        r.ue()
        r.bit()
        if r.bit():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format != 3 else 12):
                if r.bit():
                    size = 16 if i < 6 else 64
                    last = next_scale = 8
                    for _ in range(size):
                        if next_scale:
                            next_scale = (last + r.se() + 256) % 256
                        last = next_scale or last
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.bit()
        r.se()
        r.se()
        cycle = r.ue()
        if cycle > 255:
            raise FLVError("bad SPS")
        for _ in range(cycle):
            r.se()
    r.ue()  # max_num_ref_frames
    r.bit()
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.bit()
    if not frame_mbs_only:
        r.bit()
    r.bit()
    crop = (0, 0, 0, 0)
    if r.bit():
        crop = (r.ue(), r.ue(), r.ue(), r.ue())
    sub_w = 2 if chroma_format in (1, 2) else 1
    sub_h = 2 if chroma_format == 1 else 1
    if chroma_format == 0:
        sub_w = sub_h = 1
    height_mul = 2 - frame_mbs_only
    width = width_mbs * 16 - sub_w * (crop[0] + crop[1])
    height = height_units * 16 * height_mul - sub_h * height_mul * (crop[2] + crop[3])
    if width <= 0 or height <= 0:
        raise FLVError("bad SPS size")
    return width, height, _vui_fps(r)


def _vui_fps(r: _Bits) -> float:
    """Frame rate from the VUI's timing info (E.1.1); a truncated VUI just means unknown."""
    try:
        if not r.bit():  # vui_parameters_present_flag
            return 0.0
        if r.bit() and r.bits(8) == 255:  # aspect_ratio_info; Extended_SAR
            r.bits(32)
        if r.bit():  # overscan_info_present
            r.bit()
        if r.bit():  # video_signal_type_present
            r.bits(4)
            if r.bit():
                r.bits(24)
        if r.bit():  # chroma_loc_info_present
            r.ue()
            r.ue()
        if r.bit():  # timing_info_present
            units, scale = r.bits(32), r.bits(32)
            if units:
                return scale / (2 * units)
    except FLVError:
        pass
    return 0.0


_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def parse_aac_config(body: bytes) -> AudioConfig:
    """From an AAC sequence header tag body (2-byte FLV audio prefix + AudioSpecificConfig)."""
    r = _Bits(bytes(body[2:]))
    aot = r.bits(5)
    if aot == 31:
        aot = 32 + r.bits(6)
    index = r.bits(4)
    if index == 15:
        rate = r.bits(24)
    elif index < len(_AAC_RATES):
        rate = _AAC_RATES[index]
    else:
        raise FLVError("bad AAC sampling frequency index")
    channels = r.bits(4)
    if aot == 0 or rate == 0:
        raise FLVError("bad AudioSpecificConfig")
    return AudioConfig(f"mp4a.40.{aot}", aot, rate, channels)
