"""Creating clips: the checks Twitch makes, a row, and a durable job; the cut happens later.

``POST /helix/clips`` must answer at once (202 with the id and ``edit_url``), so creation
only validates and records *what* to cut: for a live clip the wall-clock moment of the
request (its last ``duration`` seconds end there, resolved to a VOD offset by the worker
once those seconds are archived), or a VOD offset for a clip of a past broadcast.
"""

from __future__ import annotations

import math
import secrets
import string

from sqlalchemy import select

from livecast.identity.models import User
from livecast.ingest.models import Stream
from livecast.platform import Platform
from livecast.store.base import utcnow
from livecast.vod import jobs, keys
from livecast.vod.models import ARCHIVE, PROCESSING, RECORDING, Clip, Video

MIN_DURATION, MAX_DURATION, DEFAULT_DURATION = 5.0, 60.0, 30.0
LIVE = ("live", "reconnecting")
NOT_LIVE = "The broadcaster in the broadcaster_id query parameter must be broadcasting live."
_ALPHABET = string.ascii_letters + string.digits


class ClipRefused(Exception):
    """The request cannot make a clip; ``status`` and message are what Helix answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def new_clip_id() -> str:
    """Twitch clip ids are opaque slugs; 20 random letters and digits (~119 bits) are unguessable."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(20))


async def create_clip(
    platform: Platform,
    *,
    broadcaster_id: str,
    creator_id: str,
    duration: float | None = None,
    title: str = "",
    vod_id: str | None = None,
    vod_offset: float | None = None,
) -> tuple[Clip, str]:
    """Validate, insert the clip (status processing) and its job; returns it and the broadcaster's login."""
    seconds = DEFAULT_DURATION if duration is None else duration
    if not MIN_DURATION <= seconds <= MAX_DURATION:  # NaN fails this too
        raise ClipRefused(400, f'The parameter "duration" must be between {MIN_DURATION:g} and {MAX_DURATION:g} seconds')
    if len(title) > 140:
        raise ClipRefused(400, 'The parameter "title" may be at most 140 characters')
    if vod_offset is not None and not (math.isfinite(vod_offset) and vod_offset >= 0):
        raise ClipRefused(400, 'The parameter "vod_offset" must be a number of seconds, not negative')
    now = utcnow()
    async with platform.db.session() as db:
        broadcaster = await db.get(User, broadcaster_id) if keys.valid_video_id(broadcaster_id) else None
        if broadcaster is None:
            raise ClipRefused(400, "The ID in broadcaster_id is not valid")
        video: Video | None
        stream: Stream | None = None
        if vod_id is not None:
            video = await db.get(Video, vod_id) if keys.valid_video_id(vod_id) else None
            # someone else's video, or a deleted one, is simply not found: no existence oracle
            if video is None or video.deleted_at is not None or video.user_id != broadcaster_id:
                raise ClipRefused(404, "The VOD in vod_id was not found")
            if vod_offset is None:
                raise ClipRefused(400, 'The parameter "vod_offset" is required with "vod_id"')
        else:
            stream = (await db.execute(
                select(Stream).where(Stream.user_id == broadcaster_id, Stream.status.in_(LIVE))
                .order_by(Stream.started_at.desc()).limit(1)
            )).scalars().first()
            if stream is not None and vod_offset is None:
                video = (await db.execute(
                    select(Video).where(Video.stream_id == stream.id, Video.deleted_at.is_(None))
                )).scalars().first()
            else:  # offline: an offset into the latest archive, if there is one
                video = (await db.execute(
                    select(Video).where(Video.user_id == broadcaster_id, Video.type == ARCHIVE,
                                        Video.deleted_at.is_(None))
                    .order_by(Video.created_at.desc()).limit(1)
                )).scalars().first()
                if video is None or vod_offset is None:
                    raise ClipRefused(404, NOT_LIVE)
            if video is None:
                raise ClipRefused(404, NOT_LIVE + " (its broadcast is not being recorded yet)")
        if vod_offset is not None and video.status != RECORDING and vod_offset + MIN_DURATION > video.duration:
            raise ClipRefused(400, f'The parameter "vod_offset" must leave at least {MIN_DURATION:g} seconds '
                                   f"of the {video.duration:.0f}-second VOD")
        clip = Clip(
            id=new_clip_id(), broadcaster_id=broadcaster_id, creator_id=creator_id, video_id=video.id,
            game_id=(stream.category_id if stream is not None else video.category_id) or "",
            language=(stream.language if stream is not None else video.language) or "en",
            title=title or (stream.title if stream is not None else video.title) or "",
            status=PROCESSING, duration=seconds, created_at=now,
            end_at=now if vod_offset is None else None, vod_offset=vod_offset,
        )
        db.add(clip)
        await jobs.enqueue(db, "clip", clip.id)
        login = broadcaster.login
    await jobs.wake(platform)
    return clip, login
