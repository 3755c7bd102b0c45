"""A live stream as the origin sees it: one segmenter per rendition, cached playlists, wake-ups.

The transcoder pushes init segments and fragments in; HTTP handlers read. Playlists are
rendered at most once per change of the stream (rendition reports make every playlist
depend on every rendition), then the same bytes go to every request, which is what lets a
single origin answer thousands of blocking reloads that all wake at the same instant.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from livecast import metrics
from livecast.media.ladder import PlannedRendition
from livecast.packager.playlist import (
    Variant,
    render_media,
    render_multivariant,
    report_of,
)
from livecast.packager.segmenter import Segment, Segmenter
from livecast.waits import until_set

NOMINAL_SOURCE_KBPS = 6000  # BANDWIDTH for passthrough before anything is measured


_Predicate = Callable[[], bool]
_PartListener = Callable[[str, Segmenter], None]
_SegmentListener = Callable[[str, Segment, bytes], None]


MASTER_GRACE_SEGMENTS = 2.0  # how long the multivariant playlist waits for late renditions


@dataclass
class LiveStream:
    login: str
    renditions: dict[str, PlannedRendition]
    segment_duration: float
    part_duration: float
    window: int
    source_size: tuple[int, int] = (0, 0)
    source_fps: float = 0.0
    segmenters: dict[str, Segmenter] = field(default_factory=dict)
    ended: bool = False
    ended_at: float = 0.0
    thumbnails: dict[str, tuple[float, bytes]] = field(default_factory=dict)
    part_targets: dict[str, float] = field(default_factory=dict)  # per rendition, when not part_duration

    def __post_init__(self) -> None:
        for name in self.renditions:
            self.segmenters[name] = Segmenter(
                name, segment_duration=self.segment_duration,
                part_duration=self.part_targets.get(name, self.part_duration), window=self.window,
                aligned_keyframes=self.renditions[name].transcoded,
            )
        self._changed = asyncio.Event()
        self._cache: dict[tuple[str, bool], tuple[tuple[int, ...], bytes]] = {}
        self._master: tuple[tuple[int, ...], bytes] | None = None
        self._first_variant_at: float | None = None
        self.first_part_at: dict[str, float] = {}
        self.part_listeners: list[_PartListener] = []
        # called once per finished segment (archive/VOD hooks in here): name, segment, its init
        self.segment_listeners: list[_SegmentListener] = []
        # called once when the stream ends, after the last segments were announced (archive)
        self.end_listeners: list[Callable[[], None]] = []
        self._announced: dict[str, int] = {}
        self.thumbnail_lock = asyncio.Lock()

    # Input from the transcoder ---------------------------------------------------------------
    def on_init(self, name: str, data: bytes) -> None:
        seg = self.segmenters.get(name)
        if seg is not None:
            seg.on_init(data)
            self._announce(name, seg)
            self._notify()

    def on_fragment(self, name: str, data: bytes) -> None:
        seg = self.segmenters.get(name)
        if seg is None:
            return
        part = seg.on_fragment(data, time.time(), time.monotonic())
        if part is not None:
            metrics.media_parts.labels(name).inc()
            self.first_part_at.setdefault(name, time.monotonic())
            for listener in self.part_listeners:
                listener(name, seg)
            self._announce(name, seg)
            self._notify()

    def _announce(self, name: str, seg: Segmenter) -> None:
        last = self._announced.get(name, -1)
        for segment in seg.segments:
            if segment.complete and segment.msn > last:
                init = seg.init_segment(segment.init_id) or b""
                for listener in self.segment_listeners:
                    listener(name, segment, init)
                last = segment.msn
        self._announced[name] = last

    def end(self) -> None:
        for name, seg in self.segmenters.items():
            seg.end()
            self._announce(name, seg)
        self.ended = True
        self.ended_at = time.monotonic()
        for listener in self.end_listeners:
            listener()
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # Reading --------------------------------------------------------------------------------
    async def wait_for(self, predicate: _Predicate, timeout: float) -> bool:
        """Wait until ``predicate()`` holds, the stream ends, or ``timeout`` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if self.ended:
                return predicate()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            changed = self._changed
            if not await until_set(changed, remaining):
                return predicate()
        return True

    def _versions(self) -> tuple[int, ...]:
        return tuple(s.version for s in self.segmenters.values())

    def media_playlist(self, name: str, *, skip: bool = False) -> bytes:
        versions = self._versions()
        cached = self._cache.get((name, skip))
        if cached is not None and cached[0] == versions:
            return cached[1]
        seg = self.segmenters[name]
        reports = [report_of(s) for s in self.segmenters.values()]
        body = render_media(seg, reports, skip=skip).encode()
        metrics.playlist_renders.inc()
        self._cache[(name, skip)] = (versions, body)
        return body

    def ready(self, name: str) -> bool:
        """Whether the rendition has a whole segment: before that, a player that ignores the
        LL-HLS tags would see an empty playlist, so nobody is shown one."""
        seg = self.segmenters.get(name)
        return seg is not None and any(s.complete for s in seg.segments)

    def multivariant(self) -> bytes | None:
        """The master playlist, listing the renditions that have produced media; None before any."""
        versions = self._versions()
        if self._master is not None and self._master[0] == versions:
            return self._master[1]
        variants = []
        for name, r in self.renditions.items():
            seg = self.segmenters[name]
            if seg.info is None or not self.ready(name):
                continue
            peak, avg = seg.bandwidth()
            nominal = (r.video_kbps or (0 if r.audio_only else NOMINAL_SOURCE_KBPS)) + r.audio_kbps
            video = seg.info.video
            variants.append(Variant(
                name=name,
                bandwidth=peak or nominal * 1000,
                average_bandwidth=avg,
                codecs=seg.info.codecs,
                width=video.width if video else 0,
                height=video.height if video else 0,
                fps=float(r.fps or self.source_fps) if not r.audio_only else 0.0,
                audio_only=r.audio_only,
            ))
        if not variants:
            return None
        if len(variants) < len(self.renditions):
            # Renditions become ready a few hundred ms apart (audio-only first). A player reads
            # the multivariant playlist once, so one served now would lock it out of the video
            # renditions for the whole session: hold it until all are ready, or a grace period
            # has passed (a rendition that never starts must not keep the stream unwatchable).
            now = time.monotonic()
            if self._first_variant_at is None:
                self._first_variant_at = now
            if now - self._first_variant_at < MASTER_GRACE_SEGMENTS * self.segment_duration:
                return None
        body = render_multivariant(variants).encode()
        self._master = (versions, body)
        return body

    def rendition_names(self) -> list[str]:
        return list(self.renditions)

    def best_video(self) -> Segmenter | None:
        for name, r in self.renditions.items():
            if not r.audio_only and self.segmenters[name].segments:
                return self.segmenters[name]
        return None
