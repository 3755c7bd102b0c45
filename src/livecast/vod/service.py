"""VOD domain services: timelines, playlists, deletion, retention and highlights.

HTTP handlers and the worker call these; none of them takes a path from a request without the
id checks in :mod:`livecast.vod.keys`, and storage keys are always built from ids that were
found in the database.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.platform import Platform
from livecast.store.base import new_id, utcnow
from livecast.vod import jobs, keys
from livecast.vod.models import ARCHIVE, GAP, HIGHLIGHT, PROCESSING, READY, RECORDING, Video, VodSegment
from livecast.vod.playlist import ArchivedSegment, ArchivedVariant, render_master, render_vod

log = logging.getLogger("livecast.vod")

LIVE_PLAYLIST_TTL_S = 1.0  # a recording's event playlist grows every segment; render at most once a second
CACHE_MAX = 512
ORPHAN_GRACE = dt.timedelta(minutes=15)  # longer than any archive queue takes to drain


class NotYet(Exception):
    """The media a job needs is not archived yet; try again after ``delay`` seconds."""

    def __init__(self, delay: float, why: str) -> None:
        super().__init__(why)
        self.delay = delay


async def visible_video(db: AsyncSession, video_id: str) -> Video | None:
    """A video that exists and was not deleted; None for malformed ids too."""
    if not keys.valid_video_id(video_id):
        return None
    video = await db.get(Video, video_id)
    if video is None or video.deleted_at is not None:
        return None
    return video


async def timeline(db: AsyncSession, video_id: str, rendition: str) -> list[VodSegment]:
    rows = await db.execute(
        select(VodSegment).where(VodSegment.video_id == video_id, VodSegment.rendition == rendition)
        .order_by(VodSegment.seq)
    )
    return list(rows.scalars().all())


def _cache(platform: Platform) -> dict[tuple[str, str], tuple[float, bytes]]:
    found: dict[tuple[str, str], tuple[float, bytes]] = platform.state.setdefault("vod.playlists", {})
    return found


def forget(platform: Platform, video_id: str) -> None:
    cache = _cache(platform)
    for key in [k for k in cache if k[0] == video_id]:
        del cache[key]


async def media_playlist(platform: Platform, video_id: str, rendition: str) -> bytes | None:
    """The rendition's playlist (EVENT while recording, VOD after); None if there is none.

    Rendered once per change: a finished video's bytes are cached until it is deleted, a
    recording's for :data:`LIVE_PLAYLIST_TTL_S`.
    """
    if not keys.valid_video_id(video_id) or not keys.valid_rendition(rendition):
        return None
    cache = _cache(platform)
    hit = cache.get((video_id, rendition))
    now = time.monotonic()
    if hit is not None and hit[0] > now:
        return hit[1]
    async with platform.db.session() as db:
        video = await visible_video(db, video_id)
        if video is None or rendition not in (video.renditions or {}):
            return None
        rows = await timeline(db, video_id, rendition)
    if not rows:
        return None
    ended = video.status not in (RECORDING, PROCESSING)  # processing: segments may still arrive
    body = render_vod([_archived(r) for r in rows], ended=ended).encode()
    if len(cache) >= CACHE_MAX:
        cache.clear()
    cache[(video_id, rendition)] = (float("inf") if ended else now + LIVE_PLAYLIST_TTL_S, body)
    return body


def _archived(row: VodSegment) -> ArchivedSegment:
    return ArchivedSegment(row.seq, row.init_id, row.duration, row.start_at, row.discontinuity, row.status == GAP)


async def master_playlist(platform: Platform, video_id: str) -> bytes | None:
    if not keys.valid_video_id(video_id):
        return None
    async with platform.db.session() as db:
        video = await visible_video(db, video_id)
        if video is None:
            return None
        stats = (await db.execute(
            select(VodSegment.rendition, func.sum(VodSegment.size), func.sum(VodSegment.duration),
                   func.max(VodSegment.size * 8 / func.nullif(VodSegment.duration, 0.0)))
            .where(VodSegment.video_id == video_id, VodSegment.status != GAP)
            .group_by(VodSegment.rendition)
        )).all()
        await db.execute(update(Video).where(Video.id == video_id).values(view_count=Video.view_count + 1))
    by_name = {r[0]: r for r in stats}
    variants = []
    for name, desc in (video.renditions or {}).items():
        row = by_name.get(name)
        if row is None:
            continue
        size, seconds, peak = int(row[1] or 0), float(row[2] or 0.0), float(row[3] or 0.0)
        avg = int(size * 8 / seconds) if seconds else 0
        variants.append(ArchivedVariant(
            name=name, bandwidth=int(peak) or avg, average_bandwidth=avg, codecs=str(desc.get("codecs", "")),
            width=int(desc.get("width", 0)), height=int(desc.get("height", 0)), fps=float(desc.get("fps", 0.0)),
            audio_only=bool(desc.get("audio_only", False)),
        ))
    if not variants:
        return None
    # audio-only last, like the live multivariant playlist, so players start on video
    variants.sort(key=lambda v: v.audio_only)
    return render_master(variants).encode()


async def media_object(platform: Platform, video_id: str, rendition: str, name: str) -> bytes | None:
    """An init or media segment by its playlist name (``init1.mp4``, ``12.m4s``); None if unknown."""
    if not keys.valid_video_id(video_id) or not keys.valid_rendition(rendition):
        return None
    # isascii: "²".isdigit() is true and int("²") raises (a 500, found by fuzzing).
    if name.startswith("init") and name.endswith(".mp4") and name[4:-4].isdigit() and name.isascii() \
            and len(name) < 16:
        key = keys.init_key(video_id, rendition, int(name[4:-4]))
    elif name.endswith(".m4s") and name[:-4].isdigit() and name.isascii() and len(name) < 16:
        key = keys.segment_key(video_id, rendition, int(name[:-4]))
    else:
        return None
    async with platform.db.session() as db:
        video = await visible_video(db, video_id)
        if video is None or rendition not in (video.renditions or {}):
            return None
    return await platform.storage.get(key)


# Deletion and retention ---------------------------------------------------------------------
async def delete_video(platform: Platform, video_id: str) -> None:
    """Remove a video's stored objects and timeline; the row stays as a tombstone."""
    async with platform.db.session() as db:
        await db.execute(update(Video).where(Video.id == video_id)
                         .values(deleted_at=utcnow(), thumbnail_key="", view_count=0))
    await platform.storage.delete_prefix(keys.video_prefix(video_id))
    async with platform.db.session() as db:
        await db.execute(delete(VodSegment).where(VodSegment.video_id == video_id))
    forget(platform, video_id)


async def sweep_retention(platform: Platform, now: dt.datetime | None = None) -> int:
    """Delete every finished archive past its ``expires_at``; highlights never expire."""
    now = now or utcnow()
    async with platform.db.session() as db:
        ids = list((await db.execute(
            select(Video.id).where(Video.expires_at.is_not(None), Video.expires_at < now,
                                   Video.deleted_at.is_(None), Video.status.not_in((RECORDING, PROCESSING)))
            .limit(500)
        )).scalars().all())
    for video_id in ids:
        await delete_video(platform, video_id)
    return len(ids)


async def finalize_orphans(platform: Platform, now: dt.datetime | None = None) -> int:
    """Recordings whose stream ended long ago but were never finished become ready VODs.

    A recording finishes itself seconds after its stream ends; one that did not (its ingest
    node died, or shut down before draining) would otherwise stay an EVENT playlist forever.
    """
    from livecast.ingest.models import Stream

    now = now or utcnow()
    async with platform.db.session() as db:
        rows = (await db.execute(
            select(Video.id, Stream.ended_at).join(Stream, Stream.id == Video.stream_id)
            .where(Video.status == RECORDING, Stream.status == "offline",
                   Stream.ended_at < now - ORPHAN_GRACE)
        )).all()
        for video_id, ended_at in rows:
            await db.execute(update(Video).where(Video.id == video_id, Video.status == RECORDING)
                             .values(status=READY, ended_at=ended_at))
    for video_id, _ in rows:
        forget(platform, video_id)
    return len(rows)


# Highlights -----------------------------------------------------------------------------------
@dataclass
class HighlightRequest:
    source: Video
    start: float
    end: float
    title: str
    description: str


async def create_highlight(platform: Platform, req: HighlightRequest) -> Video:
    """A new permanent ``highlight`` video (status processing) and the job that copies its media."""
    now = utcnow()
    async with platform.db.session() as db:
        video = Video(
            id=new_id(), user_id=req.source.user_id, stream_id=None, type=HIGHLIGHT, status=PROCESSING,
            title=req.title or req.source.title, description=req.description, language=req.source.language,
            category_id=req.source.category_id, reference=req.source.reference,
            renditions=dict(req.source.renditions or {}), source_video_id=req.source.id,
            source_start=req.start, source_end=req.end, duration=0.0, created_at=now, published_at=now,
            expires_at=None,
        )
        db.add(video)
        await jobs.enqueue(db, "highlight", video.id)
    await jobs.wake(platform)
    return video


async def build_highlight(platform: Platform, video_id: str) -> str:
    """Copy the source segments overlapping the range into the highlight's own prefix.

    Whole segments (each starts on a keyframe): the highlight starts at most one segment
    before the chosen start, which is how Twitch's highlighter snaps too, and needs no
    re-encoding. Copies, not references, so the highlight outlives its archive's retention.
    """
    async with platform.db.session() as db:
        video = await db.get(Video, video_id)
        if video is None or video.deleted_at is not None or video.status != PROCESSING:
            return "gone"
        source = await db.get(Video, video.source_video_id or "")
        if source is None or source.deleted_at is not None:
            video.status = "failed"
            return "source deleted"
        rows = list((await db.execute(
            select(VodSegment).where(VodSegment.video_id == source.id).order_by(VodSegment.rendition, VodSegment.seq)
        )).scalars().all())
    ref_rows = [r for r in rows if r.rendition == video.reference]
    chosen = [r for r in ref_rows if r.offset + r.duration > video.source_start and r.offset < video.source_end]
    if not chosen:
        raise ValueError("the range holds no archived media")
    # renditions cut their segments independently: select each one's by time, not by number
    lo, hi = chosen[0].offset, chosen[-1].offset + chosen[-1].duration
    storage = platform.storage
    copied: list[VodSegment] = []
    inits_done: set[tuple[str, int]] = set()
    per_rendition: dict[str, float] = {}
    first_seq: dict[str, int] = {}
    for r in rows:
        mid = r.offset + r.duration / 2
        if not lo <= mid < hi:
            continue
        first = first_seq.setdefault(r.rendition, r.seq)
        if (r.rendition, r.init_id) not in inits_done:
            init = await storage.get(keys.init_key(source.id, r.rendition, r.init_id))
            if init is not None:
                await storage.put(keys.init_key(video_id, r.rendition, r.init_id), init, "video/mp4")
            inits_done.add((r.rendition, r.init_id))
        status = r.status
        if status != GAP:
            data = await storage.get(keys.segment_key(source.id, r.rendition, r.seq))
            if data is None:
                status = GAP
            else:
                await storage.put(keys.segment_key(video_id, r.rendition, r.seq - first), data, "video/iso.segment")
        offset = per_rendition.get(r.rendition, 0.0)
        per_rendition[r.rendition] = offset + r.duration
        copied.append(VodSegment(
            video_id=video_id, rendition=r.rendition, seq=r.seq - first, init_id=r.init_id, offset=offset,
            duration=r.duration, start_at=r.start_at, discontinuity=r.discontinuity and r.seq != first,
            size=r.size, status=status,
        ))
    thumb = await storage.get(keys.video_thumbnail_key(source.id)) if source.thumbnail_key else None
    if thumb is not None:
        await storage.put(keys.video_thumbnail_key(video_id), thumb, "image/jpeg")
    async with platform.db.session() as db:
        await db.execute(delete(VodSegment).where(VodSegment.video_id == video_id))
        db.add_all(copied)
        await db.execute(update(Video).where(Video.id == video_id).values(
            status=READY, duration=per_rendition.get(video.reference, 0.0), ended_at=utcnow(),
            thumbnail_key=keys.video_thumbnail_key(video_id) if thumb is not None else "",
        ))
    forget(platform, video_id)
    return "ready"


def video_doc(video: Video, login: str, display_name: str, base_url: str) -> dict[str, Any]:
    """Twitch's Video object."""
    from livecast.api.helix.render import rfc3339
    from livecast.vod.playlist import twitch_duration

    thumb = f"{base_url}/vods/{video.id}/thumb-%{{width}}x%{{height}}.jpg" if video.thumbnail_key else ""
    return {
        "id": video.id,
        "stream_id": video.stream_id if video.type == ARCHIVE else None,
        "user_id": video.user_id,
        "user_login": login,
        "user_name": display_name,
        "title": video.title,
        "description": video.description,
        "created_at": rfc3339(video.created_at),
        "published_at": rfc3339(video.published_at),
        "url": f"{base_url}/videos/{video.id}",
        "thumbnail_url": thumb,
        "viewable": video.viewable,
        "view_count": video.view_count,
        "language": video.language,
        "type": video.type,
        "duration": twitch_duration(video.duration),
        "muted_segments": None,
    }
