"""The archive: every finished live segment goes to object storage, off the live path.

The packager calls :meth:`Recording.on_segment` synchronously for each segment it closes;
that call only appends to in-memory queues, so a slow or dead object store (or disk) can never
delay a live part. Two tasks per stream take it from there:

- the *spooler* writes each segment (its init segment and a JSON sidecar with its timeline
  entry) to the node's durable spool, ``<data dir>/archive-spool/<video_id>/``
  (:mod:`livecast.vod.spool`), in a thread, and then drops the bytes from memory;
- the *uploader* stores the segments in order: the init segment once per encoder run, the
  segment (from memory, or read back from the spool), then its
  :class:`~livecast.vod.models.VodSegment` row (storage first, so a listed segment always
  exists), and then removes its spool files.

A failed upload is retried with backoff while the spool holds the outage on disk. Two bounds
keep a long outage from taking the node down: ``archive_queue_bytes`` for the bytes still only
in memory (which grow only while the spool cannot be written, say a full disk) and
``archive_spool_bytes`` for the spool. Past either, the oldest waiting segment is given up and
recorded as a *gap* (``EXT-X-GAP`` in the playlist, ``gap_seconds`` on the video) instead of
being silently missing. ``archive_spool_bytes = 0`` turns the spool off (memory only).

At shutdown the uploaders get ``STOP_DRAIN_S`` to finish (less when storage is down and
everything waiting is already on disk). What storage has still not taken is *not* lost: the
spooled segments stay on disk and the video is parked as ``processing`` (not listed, not
``ready``, not touched by the orphan sweep); only what never reached the spool (spool disabled
or unwritable) is recorded as gaps, and a video with nothing left in the spool is completed
(:meth:`Recording.close_at_shutdown`). The next start of the node's archive scans the spool and
finishes those uploads (:class:`Resumed`), retrying until storage is back, then completes the
video as the live path would: rows, duration, thumbnail, ``ready``.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecast import metrics
from livecast.identity.models import Channel, User
from livecast.ingest.pipeline import StreamInfo
from livecast.logs import event
from livecast.packager.live import LiveStream
from livecast.packager.segmenter import Segment
from livecast.platform import Platform
from livecast.store.base import new_id, utcnow
from livecast.vod import ffmpeg, keys, service, stats
from livecast.vod.models import ARCHIVE, GAP, PROCESSING, READY, RECORDING, STORED, Video, VodSegment
from livecast.vod.spool import SPOOL_DIR, Spool, SpooledSegment, SpooledVideo

log = logging.getLogger("livecast.vod")

T = TypeVar("T")

RETRY_MIN_S, RETRY_MAX_S = 0.25, 2.0
THUMBNAIL_SEQ = 1  # the second segment: past any black fade-in at the very start
STOP_DRAIN_S = 8.0
STOP_GAPS_S = 5.0  # then this long to record what is still queued as gaps
SPOOL_FLUSH_S = 2.0  # at shutdown, of STOP_GAPS_S: a spool write under way may finish


@dataclass(eq=False)
class Upload:
    """One segment waiting for storage. Its bytes are in ``data`` until the spool has them
    (then ``spooled`` and ``data`` is None: they are read back for the upload)."""

    rendition: str
    seq: int
    init_id: int
    init: bytes | None  # None: only in the spool (a resumed video)
    data: bytes | None
    offset: float
    duration: float
    start_at: dt.datetime
    discontinuity: bool
    size: int = -1
    gap: bool = False
    spooled: bool = False
    done: bool = False

    def __post_init__(self) -> None:
        if self.size < 0:
            self.size = len(self.data or b"")

    def meta(self) -> SpooledSegment:
        return SpooledSegment(self.rendition, self.seq, self.init_id, self.offset, self.duration, self.start_at,
                              self.discontinuity, self.size)


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


async def _add_video(db: AsyncSession, platform: Platform, video_id: str, user_id: str, stream_id: str | None,
                     is_partner: bool, reference: str, status: str) -> None:
    s = platform.settings
    days = s.vod_partner_retention_days if is_partner else s.vod_retention_days
    now = utcnow()
    channel = await db.get(Channel, user_id)
    db.add(Video(
        id=video_id, user_id=user_id, stream_id=stream_id, type=ARCHIVE, status=status,
        title=channel.title if channel else "", language=channel.language if channel else "en",
        category_id=channel.category_id if channel else "", reference=reference,
        created_at=now, published_at=now, expires_at=now + dt.timedelta(days=days) if days else None,
    ))


class VideoArchive:
    """One video's uploads, in timeline order: what a live :class:`Recording` and a
    :class:`Resumed` spool share (storing, rows, gaps, completion)."""

    def __init__(self, archiver: Archiver, video_id: str, reference: str) -> None:
        self.archiver = archiver
        self.video_id = video_id
        self.reference = reference
        self.login = ""
        self.queue: deque[Upload] = deque()
        self.renditions: dict[str, dict[str, Any]] = {}
        self.stored_inits: set[tuple[str, int]] = set()
        self.ended = False
        self.created = False
        self.gaps = 0
        self.uploading = False
        self.task: asyncio.Task[None] | None = None
        self.wakeup = asyncio.Event()

    # Gaps and the two bounds ------------------------------------------------------------------
    def _give_up(self, item: Upload) -> bool:
        """Make ``item`` a gap and release what it held; True if it has spool files to remove."""
        item.gap = True
        if item.data is not None:
            self.archiver.pending_bytes -= item.size
            item.data = None
        was_spooled = item.spooled
        if was_spooled:
            item.spooled = False
            self.archiver.spool_changed(-item.size, -1)
        self.gaps += 1
        metrics.errors.labels("vod_archive_gap").inc()
        return was_spooled

    def give_up_oldest(self, spooled: bool = False) -> Upload | None:
        """Turn the oldest waiting (not in-flight) segment that holds memory, or with
        ``spooled`` one that holds spool space, into a gap; None if there is none."""
        for i, item in enumerate(self.queue):
            if (i == 0 and self.uploading) or item.gap:
                continue
            if item.spooled if spooled else (item.data is not None and not item.spooled):
                self._give_up(item)
                return item
        return None

    # Uploading --------------------------------------------------------------------------------
    async def _work_or_end(self, queue: deque[Upload], wakeup: asyncio.Event) -> bool:
        """Wait until ``queue`` holds work (True), or the recording has ended with it empty."""
        while not queue:
            if self.ended:
                return False
            wakeup.clear()
            await wakeup.wait()
        return True

    async def _upload_all(self) -> None:
        while await self._work_or_end(self.queue, self.wakeup):
            item = self.queue[0]
            self.uploading = True
            try:
                data = await self._retrying(self._store, item)
            finally:
                self.uploading = False
            self.queue.popleft()
            item.done = True
            await self._release(item)
            stats.archive_segments.labels("gap" if item.gap else "stored").inc()
            if item.rendition == self.reference and item.seq == THUMBNAIL_SEQ and data is not None:
                asyncio.get_running_loop().create_task(self._thumbnail(item, data))

    async def _release(self, item: Upload) -> None:
        """A stored (or recorded-as-gap) segment: free its memory and its spool files."""
        if item.data is not None:
            self.archiver.pending_bytes -= item.size
            item.data = None
        stats.archive_pending_bytes.set(self.archiver.pending_bytes)
        if item.spooled:
            item.spooled = False
            self.archiver.spool_changed(-item.size, -1)
            await self._unspool(item)

    async def _unspool(self, item: Upload) -> None:
        spool = self.archiver.spool
        if spool is None:
            return
        try:
            await asyncio.to_thread(spool.remove_segment, self.video_id, item.rendition, item.seq)
        except OSError as exc:  # uploaded already; a leftover is re-checked (and skipped) at the next start
            log.warning("vod spool: could not remove %s/%s.%d: %s", self.video_id, item.rendition, item.seq, exc)

    async def _drop_spool(self) -> None:
        spool = self.archiver.spool
        if spool is not None:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(spool.remove_video, self.video_id)

    async def _retrying(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        delay = RETRY_MIN_S
        while True:
            try:
                result = await fn(*args)
                if self.archiver.outage_since is not None:
                    event(log, "vod storage back", video_id=self.video_id)
                    self.archiver.outage_since = None
                return result
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.archiver.outage_since is None:
                    self.archiver.outage_since = utcnow()
                    log.warning("vod archive write failed for %s (will retry): %s", self.video_id, exc)
                metrics.errors.labels("vod_archive").inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _store(self, item: Upload) -> bytes | None:
        """Put the init segment (once) and the segment, then write the row; the segment's bytes
        (for the thumbnail) or None for a gap."""
        storage = self.archiver.platform.storage
        spool = self.archiver.spool
        if (item.rendition, item.init_id) not in self.stored_inits:
            init = item.init
            if init is None and spool is not None:
                init = await asyncio.to_thread(spool.read_init, self.video_id, item.rendition, item.init_id)
            if init:
                await storage.put(keys.init_key(self.video_id, item.rendition, item.init_id), init, "video/mp4")
            self.stored_inits.add((item.rendition, item.init_id))
        data = item.data
        if not item.gap and data is None and spool is not None:
            try:
                data = await asyncio.to_thread(spool.read_segment, self.video_id, item.rendition, item.seq)
            except FileNotFoundError:
                log.warning("vod spool: %s/%s.%d is gone; recorded as a gap", self.video_id, item.rendition,
                            item.seq)
                if self._give_up(item):
                    await self._unspool(item)
        if not item.gap and data is not None:
            await storage.put(keys.segment_key(self.video_id, item.rendition, item.seq), data, "video/iso.segment")
        await self._record(item)
        return None if item.gap else data

    async def _record(self, item: Upload) -> None:
        """The segment's row and the video's running totals (the database half of ``_store``).
        Idempotent: a segment recorded before (a spool file whose removal failed) changes nothing."""
        async with self.archiver.platform.db.session() as db:
            values: dict[str, Any] = {"renditions": dict(self.renditions)} if self.renditions else {}
            if await db.get(VodSegment, (self.video_id, item.rendition, item.seq)) is None:
                db.add(VodSegment(
                    video_id=self.video_id, rendition=item.rendition, seq=item.seq, init_id=item.init_id,
                    offset=item.offset, duration=item.duration, start_at=item.start_at,
                    discontinuity=item.discontinuity, size=0 if item.gap else item.size,
                    status=GAP if item.gap else STORED,
                ))
                if item.gap and item.rendition == self.reference:
                    values["gap_seconds"] = Video.gap_seconds + item.duration
            if item.rendition == self.reference:  # segments may arrive out of order after a restart
                end = item.offset + item.duration
                values["duration"] = case((Video.duration < end, end), else_=Video.duration)
            if values:
                await db.execute(update(Video).where(Video.id == self.video_id).values(**values))

    async def _finish(self) -> None:
        async with self.archiver.platform.db.session() as db:
            await db.execute(update(Video).where(Video.id == self.video_id,
                                                 Video.status.in_((RECORDING, PROCESSING)))
                             .values(status=READY, ended_at=func.coalesce(Video.ended_at, utcnow()),
                                     renditions=dict(self.renditions)))
        service.forget(self.archiver.platform, self.video_id)

    async def _thumbnail(self, item: Upload, data: bytes) -> None:
        platform = self.archiver.platform
        try:
            init = item.init
            if init is None and self.archiver.spool is not None:
                init = await asyncio.to_thread(self.archiver.spool.read_init, self.video_id, item.rendition,
                                               item.init_id)
            if init is None:
                init = await platform.storage.get(keys.init_key(self.video_id, item.rendition, item.init_id))
            jpeg = await ffmpeg.thumbnail(platform.settings.ffmpeg, (init or b"") + data)
            key = keys.video_thumbnail_key(self.video_id)
            await platform.storage.put(key, jpeg, "image/jpeg")
            async with platform.db.session() as db:
                await db.execute(update(Video).where(Video.id == self.video_id).values(thumbnail_key=key))
        except Exception as exc:  # a missing thumbnail is cosmetic; the VOD is what matters
            log.warning("vod thumbnail for %s failed: %s", self.video_id, exc)


class Recording(VideoArchive):
    """One live stream being archived as one video (reconnects included)."""

    def __init__(self, archiver: Archiver, info: StreamInfo, live: LiveStream) -> None:
        super().__init__(archiver, new_id(), "")
        self.info = info
        self.live = live
        self.login = info.login
        self.offsets: dict[str, float] = {}
        self.to_spool: deque[Upload] = deque()
        self.spool_wakeup = asyncio.Event()
        self.spooler: asyncio.Task[None] | None = None
        self.spooled_inits: set[tuple[str, int]] = set()
        self.spooled_doc = -1  # how many renditions video.json describes
        self.spool_failing = False
        wanted = archiver.platform.settings.vod_renditions
        self.names = [n for n, r in live.renditions.items() if not wanted or n in wanted]
        video = [n for n in self.names if not live.renditions[n].audio_only]
        self.reference = video[0] if video else (self.names[0] if self.names else "")
        self.buffer = LiveBuffer(archiver.platform.settings.clip_buffer_seconds)

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
        if self.archiver.spool is not None:
            self.to_spool.append(item)
            self.spool_wakeup.set()
        if name == self.reference:
            self.buffer.add(Buffered(item.seq, item.init_id, init, segment.data, offset, item.duration))
        self.archiver.make_room()
        stats.archive_pending_bytes.set(self.archiver.pending_bytes)
        self.wakeup.set()

    def on_end(self) -> None:
        self.ended = True
        self.wakeup.set()
        self.spool_wakeup.set()

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

    def on_disk(self) -> bool:
        """Whether everything still waiting is safe in the spool (or already a recorded loss)."""
        return not self.to_spool and all(item.gap or item.spooled for item in self.queue)

    # The tasks --------------------------------------------------------------------------------
    async def run(self) -> None:
        platform = self.archiver.platform
        if self.archiver.spool is not None:
            self.spooler = asyncio.get_running_loop().create_task(self._spool_all())
        await self._retrying(self._create_video)
        buffers(platform)[self.video_id] = self.buffer
        try:
            await self._upload_all()
            if self.spooler is not None:
                await asyncio.shield(self.spooler)  # a cancelled run() leaves it to close_at_shutdown
            await self._retrying(self._finish)
            await self._drop_spool()
            event(log, "vod ready", video_id=self.video_id, login=self.info.login, gaps=self.gaps)
        finally:
            buffers(platform).pop(self.video_id, None)
            self.archiver.recordings.discard(self)

    async def _create_video(self) -> None:
        async with self.archiver.platform.db.session() as db:
            if await db.get(Video, self.video_id) is not None:
                return
            await _add_video(db, self.archiver.platform, self.video_id, self.info.user_id, self.info.stream_id,
                             self.info.is_partner, self.reference, RECORDING)
        self.created = True
        event(log, "vod recording", video_id=self.video_id, login=self.info.login,
              renditions=",".join(self.names))

    def _doc(self) -> dict[str, Any]:
        return {"video_id": self.video_id, "user_id": self.info.user_id, "stream_id": self.info.stream_id,
                "login": self.info.login, "is_partner": self.info.is_partner, "reference": self.reference,
                "renditions": dict(self.renditions)}

    async def _spool_all(self) -> None:
        """Write each queued segment to the spool, in a thread, then drop it from memory."""
        spool = self.archiver.spool
        assert spool is not None
        while await self._work_or_end(self.to_spool, self.spool_wakeup):
            item = self.to_spool.popleft()
            if item.done or item.gap or item.data is None:
                continue  # stored already (storage was quicker than the disk), or given up
            doc = self._doc() if len(self.renditions) != self.spooled_doc else None
            init_key = (item.rendition, item.init_id)
            init = item.init if init_key not in self.spooled_inits else None
            try:
                await asyncio.to_thread(_spool_write, spool, self.video_id, doc, item.meta(), init, item.data)
            except (OSError, ValueError) as exc:
                if not self.spool_failing:
                    self.spool_failing = True
                    event(log, "vod spool write failed (segments wait in memory)", level=logging.WARNING,
                          video_id=self.video_id, error=str(exc))
                metrics.errors.labels("vod_spool").inc()
                continue
            if self.spool_failing:
                self.spool_failing = False
                event(log, "vod spool writable again", video_id=self.video_id)
            if doc is not None:
                self.spooled_doc = len(doc["renditions"])
            self.spooled_inits.add(init_key)
            if item.done or item.gap:  # stored or given up while it was being written
                await self._unspool(item)
                continue
            item.spooled = True
            item.data = None  # on disk now: memory holds the next outage, not this one
            self.archiver.pending_bytes -= item.size
            stats.archive_pending_bytes.set(self.archiver.pending_bytes)
            self.archiver.spool_changed(item.size, 1)
            for owner, victim in self.archiver.make_spool_room():
                await owner._unspool(victim)

    async def close_at_shutdown(self) -> None:
        """At shutdown, after the drain time, with storage still failing.

        Spooled segments stay on disk for the next start (:class:`Resumed`), and the video is
        parked as ``processing``: not ``ready`` with its end missing, not ``recording`` for the
        orphan sweep to complete. What never reached the spool dies with the process; it is
        recorded as gaps (``EXT-X-GAP``, ``gap_seconds``) so the loss is visible. Only the
        database is written, so a storage outage does not stop it.
        """
        if self.spooler is not None and not self.spooler.done():
            await asyncio.wait({self.spooler}, timeout=SPOOL_FLUSH_S)  # a write under way may finish
            self.spooler.cancel()
        if not self.created:
            return  # no row was ever written; a spooled video.json lets the next start create it
        left = 0
        while self.queue:
            item = self.queue[0]
            if item.spooled and not item.gap:
                left += 1
            else:
                if not item.gap:
                    self._give_up(item)
                await self._record(item)
            self.queue.popleft()
        stats.archive_pending_bytes.set(self.archiver.pending_bytes)
        if left:
            async with self.archiver.platform.db.session() as db:
                await db.execute(update(Video).where(Video.id == self.video_id, Video.status == RECORDING)
                                 .values(status=PROCESSING, ended_at=utcnow(), renditions=dict(self.renditions)))
            event(log, "vod archive left in the spool for the next start", level=logging.WARNING,
                  video_id=self.video_id, login=self.info.login, segments=left, gaps=self.gaps)
            return
        await self._finish()
        await self._drop_spool()
        event(log, "vod closed at shutdown with gaps", level=logging.WARNING, video_id=self.video_id,
              login=self.info.login, gaps=self.gaps)


def _spool_write(spool: Spool, video_id: str, doc: dict[str, Any] | None, meta: SpooledSegment,
                 init: bytes | None, data: bytes) -> None:
    if doc is not None:
        spool.write_video(video_id, doc)
    if init:
        spool.write_init(video_id, meta.rendition, meta.init_id, init)
    spool.write_segment(video_id, meta, data)


class Resumed(VideoArchive):
    """A video whose segments an earlier process left in the spool: upload them (retrying while
    storage is still down), record what is missing as gaps, and complete the video."""

    def __init__(self, archiver: Archiver, found: SpooledVideo) -> None:
        super().__init__(archiver, found.video_id, str(found.doc.get("reference") or ""))
        self.doc = found.doc
        self.login = str(found.doc.get("login") or "")
        self.renditions = dict(found.doc.get("renditions") or {})
        for m in found.segments:
            self.queue.append(Upload(m.rendition, m.seq, m.init_id, None, None, m.offset, m.duration, m.start_at,
                                     m.discontinuity, size=m.size, spooled=True))
        self.ended = True
        self.count = len(found.segments)

    async def run(self) -> None:
        try:
            if not await self._retrying(self._adopt):
                event(log, "vod spool dropped: its video is gone", level=logging.WARNING,
                      video_id=self.video_id, segments=self.count)
                for item in self.queue:
                    if item.spooled:
                        item.spooled = False
                        self.archiver.spool_changed(-item.size, -1)
                self.queue.clear()
                await self._drop_spool()
                return
            await self._upload_all()
            await self._retrying(self._fill_holes)
            await self._retrying(self._finish)
            await self._drop_spool()
            event(log, "vod archive recovered from the spool", video_id=self.video_id, login=self.login,
                  segments=self.count, gaps=self.gaps)
        finally:
            self.archiver.resumed.discard(self)

    async def _adopt(self) -> bool:
        """Find (or, if the database never got it, create) the video; False if it is gone."""
        async with self.archiver.platform.db.session() as db:
            video = await db.get(Video, self.video_id)
            if video is None:
                user_id = str(self.doc.get("user_id") or "")
                if not self.queue or await db.get(User, user_id) is None:
                    return False
                await _add_video(db, self.archiver.platform, self.video_id, user_id,
                                 self.doc.get("stream_id"), bool(self.doc.get("is_partner")), self.reference,
                                 PROCESSING)
            elif video.deleted_at is not None:
                return False
            else:
                self.reference = video.reference or self.reference
                self.renditions = {**(video.renditions or {}), **self.renditions}
        self.created = True
        return True

    async def _fill_holes(self) -> None:
        """Segments that never reached the spool (the process was killed, or the database was
        down at shutdown) left holes in the numbering: record them as gaps, sized from the
        neighbours' offsets, so the playlist's timeline stays right and the loss is visible."""
        async with self.archiver.platform.db.session() as db:
            rows = list((await db.execute(
                select(VodSegment).where(VodSegment.video_id == self.video_id)
                .order_by(VodSegment.rendition, VodSegment.seq))).scalars().all())
            lost = 0.0
            for prev, row in zip([None, *rows[:-1]], rows, strict=True):
                if prev is not None and prev.rendition != row.rendition:
                    prev = None
                first = prev.seq + 1 if prev is not None else 0
                start = prev.offset + prev.duration if prev is not None else 0.0
                missing = row.seq - first
                span = row.offset - start
                if missing <= 0 or span <= 0.001:
                    continue
                each = span / missing
                for k in range(missing):
                    db.add(VodSegment(
                        video_id=self.video_id, rendition=row.rendition, seq=first + k, init_id=row.init_id,
                        offset=start + k * each, duration=each,
                        start_at=row.start_at - dt.timedelta(seconds=span - k * each), discontinuity=False,
                        size=0, status=GAP))
                if row.rendition == self.reference:
                    lost += span
                    self.gaps += missing
            if lost:
                await db.execute(update(Video).where(Video.id == self.video_id)
                                 .values(gap_seconds=Video.gap_seconds + lost))


class Archiver:
    """The ``ingest`` role's archive service: one :class:`Recording` per live stream on this
    node, and one :class:`Resumed` per video an earlier process left in the node's spool.

    It registers with the media service through ``platform.state["media.live_listeners"]`` and
    is listed before the media service, so at shutdown it stops *after* every stream has ended
    and can still flush their last segments.
    """

    name = "vod-archive"

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.recordings: set[Recording] = set()
        self.resumed: set[Resumed] = set()
        self.pending_bytes = 0  # segment bytes held in memory
        self.spool_bytes = 0  # segment bytes in the spool
        self.spool_segments = 0
        self.outage_since: dt.datetime | None = None
        self.recovery: asyncio.Task[None] | None = None
        s = platform.settings
        self.spool: Spool | None = Spool(s.data_dir / SPOOL_DIR) if s.archive_spool_bytes > 0 else None
        platform.state["vod.archiver"] = self

    async def start(self) -> dict[str, int]:
        self.platform.state.setdefault("media.live_listeners", []).append(self.on_live)
        if self.spool is not None:
            self.recovery = asyncio.get_running_loop().create_task(self._recover())
        return {}

    async def _recover(self) -> None:
        """Finish the uploads an earlier process left in the spool (in the background: storage
        may still be down, and live streams must not wait for it)."""
        assert self.spool is not None
        try:
            found = await asyncio.to_thread(self.spool.scan)
        except OSError as exc:
            log.warning("vod spool at %s could not be read: %s", self.spool.root, exc)
            return
        loop = asyncio.get_running_loop()
        for video in found:
            res = Resumed(self, video)
            self.spool_changed(video.nbytes, len(video.segments))
            self.resumed.add(res)
            event(log, "vod archive spool found", video_id=video.video_id, login=res.login,
                  segments=len(video.segments), bytes=video.nbytes)
            res.task = loop.create_task(res.run())

    def spool_changed(self, nbytes: int, segments: int) -> None:
        self.spool_bytes += nbytes
        self.spool_segments += segments
        stats.archive_spool_bytes.set(self.spool_bytes)
        stats.archive_spool_segments.set(self.spool_segments)

    def on_live(self, info: StreamInfo, live: LiveStream) -> Recording | None:
        rec = Recording(self, info, live)
        if not rec.names:
            return None
        live.segment_listeners.append(rec.on_segment)
        live.end_listeners.append(rec.on_end)
        self.recordings.add(rec)
        rec.task = asyncio.get_running_loop().create_task(rec.run())
        return rec

    def _archives(self) -> list[VideoArchive]:
        return sorted([*self.recordings, *self.resumed], key=lambda r: -len(r.queue))

    def make_room(self) -> None:
        """Keep bytes held in memory under the limit by turning the oldest into gaps."""
        limit = self.platform.settings.archive_queue_bytes
        while self.pending_bytes > limit:
            if not any(rec.give_up_oldest() for rec in self._archives()):
                return

    def make_spool_room(self) -> list[tuple[VideoArchive, Upload]]:
        """Keep the spool under ``archive_spool_bytes`` the same way; the caller removes the
        returned segments' files."""
        limit = self.platform.settings.archive_spool_bytes
        victims: list[tuple[VideoArchive, Upload]] = []
        while self.spool_bytes > limit:
            for owner in self._archives():
                victim = owner.give_up_oldest(spooled=True)
                if victim is not None:
                    victims.append((owner, victim))
                    break
            else:
                break
        if victims:
            event(log, "vod spool full: oldest segments given up as gaps", level=logging.WARNING,
                  segments=len(victims), spool_bytes=self.spool_bytes)
        return victims

    def recording(self, video_id: str) -> Recording | None:
        return next((r for r in self.recordings if r.video_id == video_id), None)

    async def _drain(self, owners: dict[asyncio.Task[None], Recording]) -> set[asyncio.Task[None]]:
        """Let the uploaders finish, up to STOP_DRAIN_S; with storage down, only until
        everything waiting is on disk (waiting longer would change nothing)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_DRAIN_S
        pending = set(owners)
        while pending and loop.time() < deadline:
            _done, pending = await asyncio.wait(pending, timeout=min(0.2, max(0.0, deadline - loop.time())))
            if self.outage_since is not None and all(owners[t].on_disk() for t in pending):
                break
        return pending

    async def stop(self) -> None:
        listeners = self.platform.state.get("media.live_listeners", [])
        if self.on_live in listeners:
            listeners.remove(self.on_live)
        resuming = [t for t in (self.recovery, *(r.task for r in self.resumed)) if t is not None]
        for task in resuming:  # their segments stay in the spool for the next start
            task.cancel()
        for task in resuming:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        owners = {r.task: r for r in self.recordings if r.task is not None}
        for rec in list(self.recordings):
            rec.on_end()  # the process is going away: finish with what was produced
        if owners:
            pending = await self._drain(owners)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for task in pending:  # storage is still failing: keep the spool, record what is lost
                try:
                    await asyncio.wait_for(owners[task].close_at_shutdown(), STOP_GAPS_S)
                except Exception as exc:  # the database is down too: the next start fills the holes
                    log.warning("vod %s left recording at shutdown: %s", owners[task].video_id, exc)


def archiver_of(platform: Platform) -> Archiver | None:
    found = platform.state.get("vod.archiver")
    return found if isinstance(found, Archiver) else None


def create_service(platform: Platform) -> Archiver:
    return Archiver(platform)
