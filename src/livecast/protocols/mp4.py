"""Sans-IO ISO-BMFF (fragmented MP4 / CMAF) reading: bytes in, init segment and fragments out.

ffmpeg writes each rendition as a stream of top-level boxes: ``ftyp`` + ``moov`` once, then
``[styp] moof mdat`` per fragment. :class:`FragmentSplitter` cuts that stream at box
boundaries without copying the media payload more than once, and :func:`parse_init` /
:func:`parse_fragment` read just the few fields the packager needs (timescales, codec strings,
base decode times, sample counts, durations, sync flags). Everything is bounds-checked: a
malformed box raises :class:`Mp4Error`, never ``IndexError`` or an unbounded allocation.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

MAX_BOX = 64 * 1024 * 1024  # a fragment larger than this is not live media we want to buffer
CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"moof", b"traf", b"mvex", b"edts", b"dinf"}


class Mp4Error(ValueError):
    """The bytes are not the fragmented MP4 we expect."""


@dataclass(frozen=True)
class Box:
    type: bytes
    start: int  # offset of the header in the buffer it was read from
    header: int  # header length (8 or 16)
    size: int  # whole box length

    @property
    def body_start(self) -> int:
        return self.start + self.header

    @property
    def end(self) -> int:
        return self.start + self.size


def read_box_header(data: bytes | bytearray | memoryview, offset: int, limit: int) -> Box | None:
    """The box at ``offset`` if its header is complete; ``None`` when more bytes are needed."""
    if limit - offset < 8:
        return None
    size, kind = struct.unpack_from(">I4s", data, offset)
    header = 8
    if size == 1:
        if limit - offset < 16:
            return None
        (size,) = struct.unpack_from(">Q", data, offset + 8)
        header = 16
    elif size == 0:
        raise Mp4Error("box extending to end of file is not allowed in a live stream")
    if size < header:
        raise Mp4Error(f"box {kind!r} has impossible size {size}")
    if size > MAX_BOX:
        raise Mp4Error(f"box {kind!r} of {size} bytes is too large")
    return Box(bytes(kind), offset, header, size)


def iter_boxes(data: bytes | bytearray | memoryview, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """The complete child boxes between ``start`` and ``end``; truncation is an error."""
    limit = len(data) if end is None else end
    offset = start
    while offset < limit:
        box = read_box_header(data, offset, limit)
        if box is None or box.end > limit:
            raise Mp4Error("truncated box")
        yield box
        offset = box.end


def find_path(data: bytes | bytearray | memoryview, path: list[bytes], start: int = 0, end: int | None = None) -> list[Box]:
    """Every box reached by the type path (``[b"moov", b"trak", b"mdia"]``), in order."""
    found: list[Box] = []
    head, rest = path[0], path[1:]
    for box in iter_boxes(data, start, end):
        if box.type != head:
            continue
        if not rest:
            found.append(box)
        elif box.type in CONTAINERS:
            found.extend(find_path(data, rest, box.body_start, box.end))
    return found


# --------------------------------------------------------------------------------------------
# Splitting a live byte stream
# --------------------------------------------------------------------------------------------


@dataclass
class InitSegment:
    data: bytes


@dataclass
class Fragment:
    data: bytes  # [styp] moof mdat, ready to serve as-is


class FragmentSplitter:
    """Feed bytes; get the init segment (``ftyp``+``moov``) once and then whole fragments.

    A fragment is emitted when its ``mdat`` is complete, so a consumer never sees half a
    sample. Boxes between fragments (``sidx``, ``prft``, ``styp``) ride with the next one.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._init: bytearray | None = bytearray()
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[InitSegment | Fragment]:
        self._buf += data
        out: list[InitSegment | Fragment] = []
        offset = 0
        while True:
            box = read_box_header(self._buf, offset, len(self._buf))
            if box is None or box.end > len(self._buf):
                break
            raw = self._buf[box.start:box.end]
            offset = box.end
            if self._init is not None:
                if box.type in {b"moof", b"styp", b"mdat"}:
                    if not self._init:
                        raise Mp4Error("fragment before the init segment")
                    out.append(InitSegment(bytes(self._init)))
                    self._init = None
                else:
                    self._init += raw
                    continue
            if box.type == b"mdat":
                if b"moof" not in _types(self._pending):
                    raise Mp4Error("mdat without moof")
                self._pending += raw
                out.append(Fragment(bytes(self._pending)))
                self._pending = bytearray()
            elif box.type in {b"mfra", b"free", b"skip"}:
                continue
            else:
                self._pending += raw
                if len(self._pending) > MAX_BOX:
                    raise Mp4Error("too much data before an mdat")
        del self._buf[:offset]
        return out


def _types(data: bytes | bytearray) -> set[bytes]:
    try:
        return {b.type for b in iter_boxes(data)}
    except Mp4Error:
        return set()


# --------------------------------------------------------------------------------------------
# Init segment: tracks, timescales, codecs
# --------------------------------------------------------------------------------------------


@dataclass
class Track:
    track_id: int
    handler: str  # "vide" | "soun"
    timescale: int
    codec: str  # RFC 6381 string for CODECS, e.g. avc1.64001f or mp4a.40.2
    width: int = 0
    height: int = 0
    default_duration: int = 0  # trex default sample duration
    default_flags: int = 0  # trex default sample flags


@dataclass
class InitInfo:
    tracks: dict[int, Track] = field(default_factory=dict)

    @property
    def video(self) -> Track | None:
        return next((t for t in self.tracks.values() if t.handler == "vide"), None)

    @property
    def audio(self) -> Track | None:
        return next((t for t in self.tracks.values() if t.handler == "soun"), None)

    @property
    def codecs(self) -> str:
        order = sorted(self.tracks.values(), key=lambda t: t.handler != "vide")
        return ",".join(t.codec for t in order if t.codec)


def _u32(data: bytes | bytearray | memoryview, off: int, end: int) -> int:
    if off + 4 > end:
        raise Mp4Error("truncated field")
    return int(struct.unpack_from(">I", data, off)[0])


def _u64(data: bytes | bytearray | memoryview, off: int, end: int) -> int:
    if off + 8 > end:
        raise Mp4Error("truncated field")
    return int(struct.unpack_from(">Q", data, off)[0])


def parse_init(data: bytes) -> InitInfo:
    info = InitInfo()
    trex: dict[int, tuple[int, int]] = {}
    for box in find_path(data, [b"moov", b"mvex", b"trex"]):
        b, e = box.body_start, box.end
        tid = _u32(data, b + 4, e)
        trex[tid] = (_u32(data, b + 12, e), _u32(data, b + 20, e))
    for trak in find_path(data, [b"moov", b"trak"]):
        tkhd = find_path(data, [b"tkhd"], trak.body_start, trak.end)
        mdhd = find_path(data, [b"mdia", b"mdhd"], trak.body_start, trak.end)
        hdlr = find_path(data, [b"mdia", b"hdlr"], trak.body_start, trak.end)
        stsd = find_path(data, [b"mdia", b"minf", b"stbl", b"stsd"], trak.body_start, trak.end)
        if not (tkhd and mdhd and hdlr):
            raise Mp4Error("trak without tkhd/mdhd/hdlr")
        t, m, h = tkhd[0], mdhd[0], hdlr[0]
        version = data[t.body_start] if t.body_start < t.end else 0
        track_id = _u32(data, t.body_start + (20 if version == 1 else 12), t.end)
        mver = data[m.body_start] if m.body_start < m.end else 0
        timescale = _u32(data, m.body_start + (20 if mver == 1 else 12), m.end)
        if timescale == 0:
            raise Mp4Error("zero timescale")
        handler = bytes(data[h.body_start + 8:h.body_start + 12]).decode("latin-1")
        track = Track(track_id, handler, timescale, "")
        if stsd:
            _read_sample_entry(data, stsd[0], track)
        if track_id in trex:
            track.default_duration, track.default_flags = trex[track_id]
        info.tracks[track_id] = track
    if not info.tracks:
        raise Mp4Error("init segment without tracks")
    return info


def _read_sample_entry(data: bytes, stsd: Box, track: Track) -> None:
    start = stsd.body_start + 8  # version/flags + entry count
    for entry in iter_boxes(data, start, stsd.end):
        kind = entry.type.decode("latin-1")
        if kind in {"avc1", "avc3"}:
            base = entry.body_start
            track.width = int.from_bytes(data[base + 24:base + 26], "big")
            track.height = int.from_bytes(data[base + 26:base + 28], "big")
            for child in iter_boxes(data, base + 78, entry.end):
                if child.type == b"avcC" and child.size >= child.header + 4:
                    p = child.body_start
                    track.codec = f"{kind}.{data[p + 1]:02x}{data[p + 2]:02x}{data[p + 3]:02x}"
            if not track.codec:
                track.codec = kind
        elif kind == "mp4a":
            track.codec = "mp4a.40.2"
            for child in iter_boxes(data, entry.body_start + 28, entry.end):
                if child.type == b"esds":
                    aot = _esds_object_type(data[child.body_start + 4:child.end])
                    if aot:
                        track.codec = f"mp4a.40.{aot}"
        else:
            track.codec = kind
        return


def _esds_object_type(body: bytes) -> int:
    """The AAC audio object type from the DecoderSpecificInfo inside an ES descriptor."""
    pos = 0

    def descriptor(pos: int) -> tuple[int, int, int]:
        if pos >= len(body):
            raise Mp4Error("truncated esds")
        tag = body[pos]
        pos += 1
        length = 0
        for _ in range(4):
            if pos >= len(body):
                raise Mp4Error("truncated esds")
            b = body[pos]
            pos += 1
            length = (length << 7) | (b & 0x7F)
            if not b & 0x80:
                break
        return tag, pos, length

    tag, pos, _ = descriptor(pos)
    if tag != 3:
        return 0
    flags = body[pos + 2] if pos + 2 < len(body) else 0
    pos += 3
    if flags & 0x80:
        pos += 2
    if flags & 0x40:
        pos += 1 + (body[pos] if pos < len(body) else 0)
    if flags & 0x20:
        pos += 2
    tag, pos, _ = descriptor(pos)
    if tag != 4:
        return 0
    pos += 13
    tag, pos, length = descriptor(pos)
    if tag != 5 or length < 1 or pos >= len(body):
        return 0
    aot = body[pos] >> 3
    if aot == 31 and pos + 1 < len(body):
        aot = 32 + (((body[pos] & 0x07) << 3) | (body[pos + 1] >> 5))
    return aot


# --------------------------------------------------------------------------------------------
# Fragments: decode times, durations, sync samples
# --------------------------------------------------------------------------------------------


@dataclass
class TrackRun:
    track_id: int
    base_decode_time: int
    sample_count: int
    duration: int  # sum of sample durations, in the track's timescale
    first_is_sync: bool
    size: int  # sum of sample sizes when known


@dataclass
class FragmentInfo:
    sequence: int
    tracks: dict[int, TrackRun]


def _is_sync(flags: int) -> bool:
    depends_on = (flags >> 24) & 0x3
    non_sync = (flags >> 16) & 0x1
    return depends_on == 2 or (depends_on != 1 and not non_sync)


def parse_fragment(data: bytes, init: InitInfo | None = None) -> FragmentInfo:
    moofs = [b for b in iter_boxes(data) if b.type == b"moof"]
    if not moofs:
        raise Mp4Error("fragment without moof")
    moof = moofs[0]
    mfhd = find_path(data, [b"mfhd"], moof.body_start, moof.end)
    sequence = _u32(data, mfhd[0].body_start + 4, mfhd[0].end) if mfhd else 0
    runs: dict[int, TrackRun] = {}
    for traf in find_path(data, [b"traf"], moof.body_start, moof.end):
        tfhd = find_path(data, [b"tfhd"], traf.body_start, traf.end)
        if not tfhd:
            raise Mp4Error("traf without tfhd")
        th = tfhd[0]
        tf_flags = _u32(data, th.body_start, th.end) & 0xFFFFFF
        track_id = _u32(data, th.body_start + 4, th.end)
        pos = th.body_start + 8
        if tf_flags & 0x01:
            pos += 8
        if tf_flags & 0x02:
            pos += 4
        track = init.tracks.get(track_id) if init else None
        default_duration = track.default_duration if track else 0
        default_size = 0
        default_flags = track.default_flags if track else 0
        if tf_flags & 0x08:
            default_duration = _u32(data, pos, th.end)
            pos += 4
        if tf_flags & 0x10:
            default_size = _u32(data, pos, th.end)
            pos += 4
        if tf_flags & 0x20:
            default_flags = _u32(data, pos, th.end)
        base_time = 0
        for tfdt in find_path(data, [b"tfdt"], traf.body_start, traf.end):
            ver = data[tfdt.body_start]
            base_time = (_u64 if ver == 1 else _u32)(data, tfdt.body_start + 4, tfdt.end)
        count = duration = size = 0
        first_sync: bool | None = None
        for trun in find_path(data, [b"trun"], traf.body_start, traf.end):
            c, d, s, sync = _read_trun(data, trun, default_duration, default_size, default_flags)
            if first_sync is None and c:
                first_sync = sync
            count += c
            duration += d
            size += s
        runs[track_id] = TrackRun(track_id, base_time, count, duration, bool(first_sync), size)
    return FragmentInfo(sequence, runs)


def _read_trun(data: bytes, trun: Box, dflt_dur: int, dflt_size: int, dflt_flags: int) -> tuple[int, int, int, bool]:
    b, e = trun.body_start, trun.end
    flags = _u32(data, b, e) & 0xFFFFFF
    count = _u32(data, b + 4, e)
    pos = b + 8
    if flags & 0x001:
        pos += 4
    first_flags: int | None = None
    if flags & 0x004:
        first_flags = _u32(data, pos, e)
        pos += 4
    per = sum(4 for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit)
    if per and count > (e - pos) // per:
        raise Mp4Error("trun sample table overruns its box")
    if not per and count > 10_000_000:
        raise Mp4Error("implausible trun sample count")
    total_dur = total_size = 0
    sync0 = False
    for i in range(count):
        dur, size, sflags = dflt_dur, dflt_size, dflt_flags
        if flags & 0x100:
            dur = _u32(data, pos, e)
            pos += 4
        if flags & 0x200:
            size = _u32(data, pos, e)
            pos += 4
        if flags & 0x400:
            sflags = _u32(data, pos, e)
            pos += 4
        if flags & 0x800:
            pos += 4
        if i == 0:
            sync0 = _is_sync(first_flags if first_flags is not None else sflags)
        total_dur += dur
        total_size += size
    return count, total_dur, total_size, sync0
