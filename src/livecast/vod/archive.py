"""The archive: every finished live segment goes to object storage, off the live path.

The packager calls :meth:`Recording.on_segment` synchronously for each segment it closes;
that call only appends to an in-memory queue, so a slow or dead object store can never delay
a live part. One uploader task per stream drains the queue in order: the init segment once per
encoder run, the segment, then its :class:`~livecast.vod.models.VodSegment` row (storage first,
so a listed segment always exists). A failed upload is retried with backoff and the queue
grows meanwhile; when the node's pending bytes pass ``archive_queue_bytes`` the oldest queued
segment is given up and recorded as a *gap* (``EXT-X-GAP`` in the playlist, ``gap_seconds``
on the video) instead of being silently missing. An outage shorter than the queue loses
nothing: the VOD is completed when storage comes back. At shutdown the queue gets
``STOP_DRAIN_S`` to drain; what storage has still not taken by then is recorded as gaps and
the VOD completed (:meth:`Recording.close_as_gaps`), never left ``recording``.

The recent segments of the reference rendition also stay in a :class:`LiveBuffer` bounded by
``clip_buffer_seconds``, which clips read before falling back to storage, so cutting the last
minute of a live stream needs neither the whole stream in memory nor a storage round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update

from livecast import metrics
from livecast.identity.models import Channel
from livecast.ingest.pipeline import StreamInfo
from livecast.logs import event
from livecast.packager.live import LiveStream
from livecast.packager.segmenter import Segment
from livecast.platform import Platform
from livecast.store.base import new_id, utcnow
from livecast.vod import ffmpeg, keys, stats
from livecast.vod.models import ARCHIVE, GAP, READY, RECORDING, STORED, Video, VodSegment

log = logging.getLogger("livecast.vod")

RETRY_MIN_S, RETRY_MAX_S = 0.25, 2.0
THUMBNAIL_SEQ = 1  # the second segment: past any black fade-in at the very start
STOP_DRAIN_S = 8.0
STOP_GAPS_S = 5.0  # then this long to record what is still queued as gaps


@dataclass
class Upload:
    rendition: str
    seq: int
    init_id: int
    init: bytes
    data: bytes
    offset: float
    duration: float
    start_at: dt.datetime
    discontinuity: bool
    gap: bool = False

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class Buffered:
    seq: int
    init_id: int
    init: bytes
    data: bytes
    offset: float
    duration: float


class LiveBuffer:
    """The last ``seconds`` of one rendition's segments, for clips; older ones are in storage."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.items: deque[Buffered] = deque()
        self.total = 0.0  # seconds held

    def add(self, item: Buffered) -> None:
        self.items.append(item)
        self.total += item.duration
        while self.items and self.total - self.items[0].duration >= self.seconds:
            self.total -= self.items.popleft().duration

    def get(self, seq: int) -> Buffered | None:
        if not self.items:
            return None
        index = seq - self.items[0].seq  # one rendition's sequence numbers are consecutive
        if 0 <= index < len(self.items) and self.items[index].seq == seq:
            return self.items[index]
        return next((item for item in self.items if item.seq == seq), None)

    @property
    def nbytes(self) -> int:
        return sum(len(i.data) for i in self.items)


def buffers(platform: Platform) -> dict[str, LiveBuffer]:
    """Live buffers of the streams this process archives, by video id."""
    found: dict[str, LiveBuffer] = platform.state.setdefault("vod.buffers", {})
    return found


@dataclass(eq=False)
class Recording:
    """One live stream being archived as one video (reconnects included)."""

    archiver: Archiver
    info: StreamInfo
    live: LiveStream
    video_id: str = field(default_factory=new_id)
    reference: str = ""
    queue: deque[Upload] = field(default_factory=deque)
    offsets: dict[str, float] = field(default_factory=dict)
    ended: bool = False
    stored_inits: set[tuple[str, int]] = field(default_factory=set)
    renditions: dict[str, dict[str, Any]] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    created: bool = False
    gaps: int = 0
    uploading: bool = False

    def __post_init__(self) -> None:
        self.wakeup = asyncio.Event()
        wanted = self.archiver.platform.settings.vod_renditions
        self.names = [n for n, r in self.live.renditions.items() if not wanted or n in wanted]
        video = [n for n in self.names if not self.live.renditions[n].audio_only]
        self.reference = video[0] if video else (self.names[0] if self.names else "")
        self.buffer = LiveBuffer(self.archiver.platform.settings.clip_buffer_seconds)

    # Called by the packager (synchronously, on the live path: append only) --------------------
    def on_segment(self, name: str, segment: Segment, init: bytes) -> None:
        if name not in self.names or not segment.complete:
            return
        offset = self.offsets.get(name, 0.0)
        self.offsets[name] = offset + segment.duration
        if name not in self.renditions:
            self._describe(name)
        item = Upload(name, segment.msn, segment.init_id, init, segment.data, offset, segment.duration,
                      segment.start, segment.discontinuity)
        self.queue.append(item)
        self.archiver.pending_bytes += item.size
        if name == self.reference:
            self.buffer.add(Buffered(item.seq, item.init_id, init, item.data, offset, item.duration))
        self.archiver.make_room()
        stats.archive_pending_bytes.set(self.archiver.pending_bytes)
        self.wakeup.set()

    def on_end(self) -> None:
        self.ended = True
        self.wakeup.set()

    def _describe(self, name: str) -> None:
        seg = self.live.segmenters.get(name)
        planned = self.live.renditions[name]
        info = seg.info if seg is not None else None
        video = info.video if info is not None else None
        self.renditions[name] = {
            "codecs": info.codecs if info is not None else "",
            "width": video.width if video else 0,
            "height": video.height if video else 0,
            "fps": float(planned.fps or self.live.source_fps) if not planned.audio_only else 0.0,
            "audio_only": planned.audio_only,
        }

    def give_up_oldest(self) -> bool:
        """Turn the oldest queued (not in-flight) segment into a gap; False if none is left."""
        for i, item in enumerate(self.queue):
            if i == 0 and self.uploading:
                continue
            if not item.gap:
                item.gap = True
                self.archiver.pending_bytes -= item.size
                item.data = b""
                self.gaps += 1
                metrics.errors.labels("vod_archive_gap").inc()
                return True
        return False

    # The uploader task ------------------------------------------------------------------------
    async def run(self) -> None:
        platform = self.archiver.platform
        await self._retrying(self._create_video)
        buffers(platform)[self.video_id] = self.buffer
        try:
            while True:
                if not self.queue:
                    if self.ended:
                        break
                    self.wakeup.clear()
                    await self.wakeup.wait()
                    continue
                item = self.queue[0]
                self.uploading = True
                try:
                    await self._retrying(self._store, item)
                finally:
                    self.uploading = False
                self.queue.popleft()
                self.archiver.pending_bytes -= item.size
                stats.archive_pending_bytes.set(self.archiver.pending_bytes)
                stats.archive_segments.labels("gap" if item.gap else "stored").inc()
                if item.rendition == self.reference and item.seq == THUMBNAIL_SEQ and not item.gap:
                    asyncio.get_running_loop().create_task(self._thumbnail(item))
            await self._retrying(self._finish)
            event(log, "vod ready", video_id=self.video_id, login=self.info.login, gaps=self.gaps)
        finally:
            buffers(platform).pop(self.video_id, None)
            self.archiver.recordings.discard(self)

    async def _retrying(self, fn: Any, *args: Any) -> None:
        delay = RETRY_MIN_S
        while True:
            try:
                await fn(*args)
                if self.archiver.outage_since is not None:
                    event(log, "vod storage back", video_id=self.video_id)
                    self.archiver.outage_since = None
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.archiver.outage_since is None:
                    self.archiver.outage_since = utcnow()
                    log.warning("vod archive write failed for %s (will retry): %s", self.video_id, exc)
                metrics.errors.labels("vod_archive").inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _create_video(self) -> None:
        s = self.archiver.platform.settings
        days = s.vod_partner_retention_days if self.info.is_partner else s.vod_retention_days
        now = utcnow()
        async with self.archiver.platform.db.session() as db:
            if await db.get(Video, self.video_id) is not None:
                return
            channel = await db.get(Channel, self.info.user_id)
            db.add(Video(
                id=self.video_id, user_id=self.info.user_id, stream_id=self.info.stream_id, type=ARCHIVE,
                status=RECORDING, title=channel.title if channel else "",
                language=channel.language if channel else "en",
                category_id=channel.category_id if channel else "", reference=self.reference,
                created_at=now, published_at=now,
                expires_at=now + dt.timedelta(days=days) if days else None,
            ))
        self.created = True
        event(log, "vod recording", video_id=self.video_id, login=self.info.login,
              renditions=",".join(self.names))

    async def _store(self, item: Upload) -> None:
        storage = self.archiver.platform.storage
        if (item.rendition, item.init_id) not in self.stored_inits and item.init:
            await storage.put(keys.init_key(self.video_id, item.rendition, item.init_id), item.init, "video/mp4")
            self.stored_inits.add((item.rendition, item.init_id))
        if not item.gap:
            await storage.put(keys.segment_key(self.video_id, item.rendition, item.seq), item.data,
                              "video/iso.segment")
        await self._record(item)

    async def _record(self, item: Upload) -> None:
        """The segment's row and the video's running totals (the database half of ``_store``)."""
        async with self.archiver.platform.db.session() as db:
            if await db.get(VodSegment, (self.video_id, item.rendition, item.seq)) is None:
                db.add(VodSegment(
                    video_id=self.video_id, rendition=item.rendition, seq=item.seq, init_id=item.init_id,
                    offset=item.offset, duration=item.duration, start_at=item.start_at,
                    discontinuity=item.discontinuity, size=item.size, status=GAP if item.gap else STORED,
                ))
            values: dict[str, Any] = {"renditions": dict(self.renditions)}
            if item.rendition == self.reference:
                values["duration"] = item.offset + item.duration
                if item.gap:
                    values["gap_seconds"] = Video.gap_seconds + item.duration
            await db.execute(update(Video).where(Video.id == self.video_id).values(**values))

    async def close_as_gaps(self) -> None:
        """At shutdown, after the drain time, with storage still failing: record what is left
        in the queue as gaps and complete the video. The segments are lost with the process
        either way (they are only in memory); this makes the loss visible (``EXT-X-GAP``,
        ``gap_seconds``) instead of leaving a VOD ``recording`` for ever with its end missing.
        Only the database is written, so a storage outage does not stop it."""
        if not self.created:
            return
        while self.queue:
            item = self.queue[0]
            if not item.gap:
                item.gap = True
                self.archiver.pending_bytes -= item.size
                item.data = b""
                self.gaps += 1
                metrics.errors.labels("vod_archive_gap").inc()
            await self._record(item)
            self.queue.popleft()
        await self._finish()
        event(log, "vod closed at shutdown with gaps", level=logging.WARNING, video_id=self.video_id,
              login=self.info.login, gaps=self.gaps)

    async def _finish(self) -> None:
        async with self.archiver.platform.db.session() as db:
            await db.execute(update(Video).where(Video.id == self.video_id, Video.status == RECORDING)
                             .values(status=READY, ended_at=utcnow(), renditions=dict(self.renditions)))

    async def _thumbnail(self, item: Upload) -> None:
        platform = self.archiver.platform
        try:
            jpeg = await ffmpeg.thumbnail(platform.settings.ffmpeg, item.init + item.data)
            key = keys.video_thumbnail_key(self.video_id)
            await platform.storage.put(key, jpeg, "image/jpeg")
            async with platform.db.session() as db:
                await db.execute(update(Video).where(Video.id == self.video_id).values(thumbnail_key=key))
        except Exception as exc:  # a missing thumbnail is cosmetic; the VOD is what matters
            log.warning("vod thumbnail for %s failed: %s", self.video_id, exc)


class Archiver:
    """The ``ingest`` role's archive service: one :class:`Recording` per live stream on this node.

    It registers with the media service through ``platform.state["media.live_listeners"]`` and
    is listed before the media service, so at shutdown it stops *after* every stream has ended
    and can still flush their last segments.
    """

    name = "vod-archive"

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.recordings: set[Recording] = set()
        self.pending_bytes = 0
        self.outage_since: dt.datetime | None = None
        platform.state["vod.archiver"] = self

    async def start(self) -> dict[str, int]:
        self.platform.state.setdefault("media.live_listeners", []).append(self.on_live)
        return {}

    def on_live(self, info: StreamInfo, live: LiveStream) -> Recording | None:
        rec = Recording(self, info, live)
        if not rec.names:
            return None
        live.segment_listeners.append(rec.on_segment)
        live.end_listeners.append(rec.on_end)
        self.recordings.add(rec)
        rec.task = asyncio.get_running_loop().create_task(rec.run())
        return rec

    def make_room(self) -> None:
        """Keep queued bytes under the limit by turning the oldest queued segments into gaps."""
        limit = self.platform.settings.archive_queue_bytes
        while self.pending_bytes > limit:
            if not any(rec.give_up_oldest() for rec in sorted(self.recordings, key=lambda r: -len(r.queue))):
                return

    def recording(self, video_id: str) -> Recording | None:
        return next((r for r in self.recordings if r.video_id == video_id), None)

    async def stop(self) -> None:
        listeners = self.platform.state.get("media.live_listeners", [])
        if self.on_live in listeners:
            listeners.remove(self.on_live)
        owners = {r.task: r for r in self.recordings if r.task is not None}
        for rec in list(self.recordings):
            rec.on_end()  # the process is going away: finish with what was produced
        if owners:
            _done, pending = await asyncio.wait(owners, timeout=STOP_DRAIN_S)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for task in pending:  # storage is still failing: say what is missing, and end the VOD
                try:
                    await asyncio.wait_for(owners[task].close_as_gaps(), STOP_GAPS_S)
                except Exception as exc:  # the database is down too: nothing more can be recorded
                    log.warning("vod %s left recording at shutdown: %s", owners[task].video_id, exc)


def archiver_of(platform: Platform) -> Archiver | None:
    found = platform.state.get("vod.archiver")
    return found if isinstance(found, Archiver) else None


def create_service(platform: Platform) -> Archiver:
    return Archiver(platform)
