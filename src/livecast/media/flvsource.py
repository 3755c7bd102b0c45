"""What the media side must know about the publisher's FLV: tag boundaries and the source format.

Sans-IO. The transcoder needs tag boundaries so that it can drop whole tags (never half of
one) when ffmpeg falls behind, replay the sequence headers to a restarted ffmpeg, and decide
the ladder from the real source resolution and frame rate, read from the H.264 SPS because
``onMetaData`` is optional and sometimes wrong.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from livecast.protocols import flv

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
                    config = flv.parse_avc_config(body)
                except flv.FLVError:
                    continue
                fmt.width, fmt.height, fmt.fps = config.width, config.height, config.fps
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


