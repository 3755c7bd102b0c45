"""What the media side must know about the publisher's FLV: tag boundaries and the source format.

Sans-IO. The transcoder needs tag boundaries so that it can drop whole tags (never half of
one) when ffmpeg falls behind, replay the sequence headers to a restarted ffmpeg, and decide
the ladder from the real source resolution and frame rate, read from the H.264 SPS because
``onMetaData`` is optional and sometimes wrong.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

FLV_HEADER_LEN = 9 + 4  # header + PreviousTagSize0
MAX_TAG = 16 * 1024 * 1024
AUDIO, VIDEO, SCRIPT = 8, 9, 18


class FlvError(ValueError):
    """The byte stream is not FLV."""


@dataclass(frozen=True)
class Tag:
    kind: int
    timestamp: int  # milliseconds
    raw: bytes  # the whole tag including its trailing PreviousTagSize

    @property
    def body(self) -> bytes:
        return self.raw[11:-4]

    @property
    def is_video_keyframe(self) -> bool:
        body = self.body
        return self.kind == VIDEO and bool(body) and body[0] >> 4 == 1

    @property
    def is_sequence_header(self) -> bool:
        body = self.body
        if self.kind == VIDEO:
            return len(body) >= 2 and body[0] & 0x0F == 7 and body[1] == 0
        if self.kind == AUDIO:
            return len(body) >= 2 and body[0] >> 4 == 10 and body[1] == 0
        return False


class FlvTagReader:
    """Feed FLV bytes; get the file header once and whole tags after it."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.header: bytes | None = None

    def reset(self) -> None:
        """A new FLV stream starts (publisher reconnected): expect a header again."""
        self._buf.clear()
        self.header = None

    def feed(self, data: bytes) -> list[Tag]:
        self._buf += data
        tags: list[Tag] = []
        pos = 0
        if self.header is None:
            if len(self._buf) < FLV_HEADER_LEN:
                return tags
            if self._buf[:3] != b"FLV":
                raise FlvError("missing FLV signature")
            (offset,) = struct.unpack_from(">I", self._buf, 5)
            if offset < 9 or offset > 1024:
                raise FlvError("bad FLV header length")
            if len(self._buf) < offset + 4:
                return tags
            self.header = bytes(self._buf[:offset + 4])
            pos = offset + 4
        while len(self._buf) - pos >= 11:
            kind = self._buf[pos] & 0x1F
            size = int.from_bytes(self._buf[pos + 1:pos + 4], "big")
            if size > MAX_TAG:
                raise FlvError("FLV tag too large")
            end = pos + 11 + size + 4
            if end > len(self._buf):
                break
            ts = int.from_bytes(self._buf[pos + 4:pos + 7], "big") | (self._buf[pos + 7] << 24)
            tags.append(Tag(kind, ts, bytes(self._buf[pos:end])))
            pos = end
        del self._buf[:pos]
        return tags


@dataclass
class SourceFormat:
    """The publisher's stream as the ladder sees it."""

    width: int = 0
    height: int = 0
    fps: float = 0.0
    has_video: bool = False
    has_audio: bool = False
    audio_is_aac: bool = False


def source_format(tags: list[Tag], metadata: dict[str, object] | None = None) -> SourceFormat:
    """Resolution and frame rate from the SPS when present, else from ``onMetaData``."""
    fmt = SourceFormat()
    for tag in tags:
        body = tag.body
        if tag.kind == AUDIO and body:
            fmt.has_audio = True
            fmt.audio_is_aac = body[0] >> 4 == 10
        elif tag.kind == VIDEO and body:
            fmt.has_video = True
            if tag.is_sequence_header and not fmt.height:
                try:
                    fmt.width, fmt.height, fmt.fps = parse_avc_config(body[5:])
                except (IndexError, ValueError):
                    pass
    meta = metadata or {}
    if not fmt.height:
        fmt.width = _num(meta.get("width"))
        fmt.height = _num(meta.get("height"))
    if not fmt.fps:
        fmt.fps = float(_num(meta.get("framerate")) or _num(meta.get("fps")))
    return fmt


def _num(value: object) -> int:
    try:
        return int(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def bit(self) -> int:
        byte = self.data[self.pos >> 3]  # IndexError on truncation: the caller catches it
        value = (byte >> (7 - (self.pos & 7))) & 1
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
                raise ValueError("bad exp-golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        v = self.ue()
        return (v + 1) // 2 if v & 1 else -(v // 2)


def parse_avc_config(avcc: bytes) -> tuple[int, int, float]:
    """(width, height, fps) from an AVCDecoderConfigurationRecord's first SPS; fps 0 if absent."""
    if len(avcc) < 8 or avcc[5] & 0x1F == 0:
        raise ValueError("no SPS")
    sps_len = int.from_bytes(avcc[6:8], "big")
    nal = avcc[8:8 + sps_len]
    rbsp = bytearray()
    zeros = 0
    for b in nal[1:]:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        rbsp.append(b)
        zeros = zeros + 1 if b == 0 else 0
    r = _Bits(bytes(rbsp))
    profile = r.bits(8)
    r.bits(16)  # constraint flags, level
    r.ue()  # sps id
    chroma = 1
    if profile in {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}:
        chroma = r.ue()
        if chroma == 3:
            r.bit()
        r.ue()
        r.ue()
        r.bit()
        if r.bit():  # seq_scaling_matrix_present
            for i in range(8 if chroma != 3 else 12):
                if r.bit():
                    size = 16 if i < 6 else 64
                    last = nxt = 8
                    for _ in range(size):
                        if nxt:
                            nxt = (last + r.se()) % 256
                        last = nxt or last
    r.ue()  # log2_max_frame_num
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.bit()
        r.se()
        r.se()
        for _ in range(min(r.ue(), 255)):
            r.se()
    r.ue()  # max_num_ref_frames
    r.bit()
    mbs_w = r.ue() + 1
    mbs_h = r.ue() + 1
    frame_mbs_only = r.bit()
    if not frame_mbs_only:
        r.bit()
    r.bit()
    crop = (0, 0, 0, 0)
    if r.bit():
        crop = (r.ue(), r.ue(), r.ue(), r.ue())
    sub_w = 2 if chroma in (1, 2) else 1
    sub_h = (2 if chroma == 1 else 1) * (2 - frame_mbs_only)
    width = mbs_w * 16 - sub_w * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * mbs_h * 16 - sub_h * (crop[2] + crop[3])
    fps = 0.0
    try:
        if r.bit():  # vui_parameters_present
            if r.bit() and r.bits(8) == 255:  # aspect ratio info, extended SAR
                r.bits(32)
            if r.bit():
                r.bit()
            if r.bit():
                r.bits(4)
                if r.bit():
                    r.bits(24)
            if r.bit():
                r.ue()
                r.ue()
            if r.bit():  # timing_info_present
                units, scale = r.bits(32), r.bits(32)
                if units:
                    fps = scale / (2 * units)
    except IndexError:
        fps = 0.0
    return width, height, fps
