"""One rendition's live timeline: CMAF fragments become LL-HLS parts, parts become segments.

Sans-IO: the transcoder hands in the init segment and fragments as ffmpeg writes them, with
the wall-clock time; the origin reads the resulting state. Every fragment is one part (ffmpeg
cuts them at ``part_duration`` and at every keyframe), and a segment closes at the first
keyframe part once it has reached its target, so every segment starts independent. Media is
kept in memory for the playlist window plus a little, because a live edge is small and a
disk round-trip would only add latency; the archive copies it elsewhere.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from dataclasses import dataclass, field

from livecast.protocols.mp4 import InitInfo, parse_fragment, parse_init

PARTS_KEPT_SEGMENTS = 3  # EXT-X-PART lines for the last 3 segments (> 3 target durations)
EXTRA_KEPT = 2  # segments kept downloadable after they leave the playlist


@dataclass
class Part:
    index: int
    duration: float
    independent: bool
    data: bytes


@dataclass
class Segment:
    msn: int
    init_id: int
    start: dt.datetime  # wall clock of the first sample: EXT-X-PROGRAM-DATE-TIME
    discontinuity: bool = False
    parts: list[Part] = field(default_factory=list)
    duration: float = 0.0
    complete: bool = False
    data: bytes = b""
    size: int = 0
    created: float = 0.0  # monotonic time the first part arrived
    parts_expired: bool = False


class Segmenter:
    def __init__(self, name: str, *, segment_duration: float, part_duration: float, window: int,
                 aligned_keyframes: bool = False) -> None:
        self.name = name
        # The encoder forces a keyframe every segment_duration: a segment that has reached its
        # target is finished now, not when the next keyframe part arrives half a second later.
        self.aligned_keyframes = aligned_keyframes
        self.segment_duration = segment_duration
        self.part_duration = part_duration
        self.window = window
        self.inits: dict[int, bytes] = {}
        self.init_id = 0
        self.info: InitInfo | None = None
        self.segments: deque[Segment] = deque()  # oldest first; the last may be incomplete
        self.next_msn = 0
        self.discontinuity_sequence = 0  # discontinuities that scrolled out of the window
        self.ended = False
        self.version = 0  # bumped on every visible change; caches key on it
        self._pending_discontinuity = False
        self._clock_anchor: tuple[float, float] | None = None  # (media seconds, wall seconds)
        self.max_segment = 0.0
        self.bytes_total = 0
        self.seconds_total = 0.0
        self.peak_bps = 0.0
        self._scrolled = 0
        self._scrolled_upto = 0

    # Input ------------------------------------------------------------------------------
    def on_init(self, data: bytes) -> None:
        """A new ffmpeg run starts: new init segment; anything after it is a discontinuity."""
        info = parse_init(data)
        self._close_current()
        if self.segments:
            self._pending_discontinuity = True
        self.init_id += 1
        self.inits[self.init_id] = data
        self.info = info
        self._clock_anchor = None
        self.ended = False
        self.version += 1

    def on_fragment(self, data: bytes, wall: float, mono: float) -> Part | None:
        if self.info is None:
            return None
        frag = parse_fragment(data, self.info)
        main = self.info.video or self.info.audio
        if main is None or main.track_id not in frag.tracks:
            return None
        run = frag.tracks[main.track_id]
        duration = run.duration / main.timescale
        start_media = run.base_decode_time / main.timescale
        independent = run.first_is_sync if main.handler == "vide" else True
        if self._clock_anchor is None:
            self._clock_anchor = (start_media, wall)
        current = self.current
        if current is not None and independent and current.duration >= self.segment_duration - self.part_duration / 2:
            self._close_current()
            current = None
        if current is None:
            anchor_media, anchor_wall = self._clock_anchor
            start = dt.datetime.fromtimestamp(anchor_wall + start_media - anchor_media, dt.UTC)
            current = Segment(self.next_msn, self.init_id, start, self._pending_discontinuity, created=mono)
            self._pending_discontinuity = False
            self.next_msn += 1
            self.segments.append(current)
        part = Part(len(current.parts), duration, independent, data)
        current.parts.append(part)
        current.duration += duration
        current.size += len(data)
        self.version += 1
        if self.aligned_keyframes and current.duration >= self.segment_duration - 1e-3:
            self._close_current()
        return part

    def end(self) -> None:
        """The stream is over: the last segment closes and the playlist gets EXT-X-ENDLIST."""
        self._close_current()
        self.ended = True
        self.version += 1

    # State ------------------------------------------------------------------------------
    @property
    def current(self) -> Segment | None:
        if self.segments and not self.segments[-1].complete:
            return self.segments[-1]
        return None

    @property
    def visible(self) -> list[Segment]:
        """Segments in the playlist: the last ``window`` complete ones plus the open one."""
        complete = [s for s in self.segments if s.complete]
        shown = complete[-self.window:]
        if self.current is not None:
            shown.append(self.current)
        return shown

    @property
    def target_duration(self) -> int:
        return max(math.ceil(self.segment_duration), round(self.max_segment))

    def last_part(self) -> tuple[int, int]:
        """(msn, part index) of the newest part; (-1, -1) before any."""
        if not self.segments:
            return -1, -1
        seg = self.segments[-1]
        return seg.msn, len(seg.parts) - 1

    def next_part(self) -> tuple[int, int]:
        """Where the next part will most likely land: the preload hint."""
        cur = self.current
        if cur is None:
            return self.next_msn, 0
        if cur.duration >= self.segment_duration - self.part_duration / 2:
            return cur.msn + 1, 0
        return cur.msn, len(cur.parts)

    def has_part(self, msn: int, part: int | None) -> bool:
        """Whether the playlist already holds segment ``msn`` (or its part ``part``) or later."""
        if not self.segments:
            return False
        last = self.segments[-1]
        if msn < last.msn:
            return True
        if msn > last.msn:
            return False
        if part is None:
            return last.complete
        # a part past the end of a finished segment is part 0 of the next one (RFC 8216bis 6.2.5.2)
        return len(last.parts) > part

    def segment(self, msn: int) -> Segment | None:
        if not self.segments or msn < self.segments[0].msn or msn > self.segments[-1].msn:
            return None
        return self.segments[msn - self.segments[0].msn]

    def init_segment(self, init_id: int | None = None) -> bytes | None:
        return self.inits.get(self.init_id if init_id is None else init_id)

    def bandwidth(self) -> tuple[int, int]:
        """(peak, average) bits per second measured over the segments produced so far."""
        if not self.seconds_total:
            return 0, 0
        return int(self.peak_bps), int(self.bytes_total * 8 / self.seconds_total)

    # Internals --------------------------------------------------------------------------
    def _close_current(self) -> None:
        cur = self.current
        if cur is None:
            return
        cur.complete = True
        cur.data = b"".join(p.data for p in cur.parts)
        self.max_segment = max(self.max_segment, cur.duration)
        if cur.duration > 0:
            self.bytes_total += cur.size
            self.seconds_total += cur.duration
            self.peak_bps = max(self.peak_bps, cur.size * 8 / cur.duration)
        complete = [s for s in self.segments if s.complete]
        for old in complete[:-PARTS_KEPT_SEGMENTS]:
            if not old.parts_expired:
                old.parts = [Part(p.index, p.duration, p.independent, b"") for p in old.parts]
                old.parts_expired = True
        while len(self.segments) > self.window + EXTRA_KEPT:
            self.segments.popleft()
        # discontinuities that scrolled out of the playlist window count in the sequence
        first_visible = complete[-self.window:][0].msn if complete else 0
        self.discontinuity_sequence = self._discontinuities_before(first_visible)
        live_inits = {s.init_id for s in self.segments} | {self.init_id}
        for init_id in [i for i in self.inits if i not in live_inits]:
            del self.inits[init_id]
        self.version += 1

    def _discontinuities_before(self, msn: int) -> int:
        # Count every discontinuity ever seen before ``msn``; remember those already dropped.
        for seg in self.segments:
            if self._scrolled_upto <= seg.msn < msn:
                if seg.discontinuity:
                    self._scrolled += 1
                self._scrolled_upto = seg.msn + 1
        return self._scrolled
