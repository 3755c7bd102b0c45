"""Helix ``POST /clips`` (202, processed by a job) and ``GET /clips``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import aliased

from livecast.api.helix import pagination
from livecast.api.helix.auth import Caller, check_ids, requires
from livecast.api.helix.errors import HelixError, bad_request
from livecast.api.helix.render import rfc3339
from livecast.api.helix.respond import json_response
from livecast.api.helix.schemas import ERRORS, Data, Page
from livecast.clips.service import ClipRefused, create_clip
from livecast.identity.models import User
from livecast.vod import keys
from livecast.vod.models import READY, Clip, Video

router = APIRouter()


class CreatedClip(BaseModel):
    id: str
    edit_url: str


class ClipDoc(BaseModel):
    id: str
    url: str
    embed_url: str
    broadcaster_id: str
    broadcaster_name: str
    creator_id: str
    creator_name: str
    video_id: str
    game_id: str
    language: str
    title: str
    view_count: int
    created_at: str
    thumbnail_url: str
    duration: float
    vod_offset: int | None
    is_featured: bool


def clip_urls(base: str, login: str, clip_id: str) -> dict[str, str]:
    return {
        "url": f"{base}/{login}/clip/{clip_id}",
        "embed_url": f"{base}/embed/clip/{clip_id}",
        "thumbnail_url": f"{base}/clips/{clip_id}/thumb-480x272.jpg",
        "edit_url": f"{base}/{login}/clip/{clip_id}?edit=1",
        "mp4_url": f"{base}/clips/{clip_id}/clip.mp4",
    }


@router.post("/clips", status_code=202, responses={202: {"model": Data[CreatedClip]}, **ERRORS})
async def post_clip(
    broadcaster_id: str = Query(description="The channel to clip"),
    has_delay: bool = Query(default=False, description="Accepted for compatibility; clips ignore stream delay"),
    duration: float | None = Query(default=None, description="Seconds, 5 to 60 (default 30)"),
    title: str = Query(default=""),
    vod_id: str | None = Query(default=None, description="Clip a past broadcast instead of the live stream"),
    vod_offset: float | None = Query(default=None, description="Seconds into the VOD where the clip starts"),
    caller: Caller = Depends(requires("clips:edit", user=True)),
) -> Response:
    try:
        clip, login = await create_clip(
            caller.platform, broadcaster_id=broadcaster_id, creator_id=caller.require_user(), duration=duration,
            title=title, vod_id=vod_id, vod_offset=vod_offset,
        )
    except ClipRefused as refused:
        raise HelixError(refused.status, refused.message) from None
    urls = clip_urls(caller.platform.base_url(), login, clip.id)
    return json_response({"data": [{"id": clip.id, "edit_url": urls["edit_url"]}]}, status=202)


def _time(name: str, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f'The parameter "{name}" must be an RFC 3339 timestamp') from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@router.get("/clips", responses={200: {"model": Page[ClipDoc]}, **ERRORS})
async def get_clips(
    broadcaster_id: str | None = Query(default=None),
    game_id: str | None = Query(default=None),
    id: list[str] = Query(default=[], description="Up to 100 clip ids"),
    started_at: str | None = Query(default=None, description="RFC 3339; clips created at or after"),
    ended_at: str | None = Query(default=None, description="RFC 3339; clips created before"),
    first: int = Query(default=20, ge=1, le=100),
    after: str | None = Query(default=None),
    before: str | None = Query(default=None, description="Accepted; Livecast pages forward only"),
    is_featured: bool | None = Query(default=None),
    caller: Caller = Depends(requires()),
) -> Response:
    check_ids("id", id)
    if sum(1 for x in (broadcaster_id, game_id, id) if x) != 1:
        raise bad_request("The request must specify exactly one of the broadcaster_id, game_id or id query parameters")
    start, end = _time("started_at", started_at), _time("ended_at", ended_at)
    creator = aliased(User)
    query = (
        select(Clip, User.login, User.display_name, creator.display_name, Video.deleted_at)
        .join(User, User.id == Clip.broadcaster_id)
        .outerjoin(creator, creator.id == Clip.creator_id)
        .outerjoin(Video, Video.id == Clip.video_id)
        .where(Clip.status == READY)
    )
    if id:
        query = query.where(Clip.id.in_([c for c in id if keys.valid_clip_id(c)]))
    elif broadcaster_id:
        query = query.where(Clip.broadcaster_id == broadcaster_id)
    else:
        query = query.where(Clip.game_id == game_id)
    if start is not None:
        query = query.where(Clip.created_at >= start)
    if end is not None:
        query = query.where(Clip.created_at < end)
    if is_featured:
        query = query.where(Clip.id.is_(None))  # no clip is featured on Livecast
    if after and not id:
        views, last = pagination.decode(after, (int, str))
        if not 0 <= views < 2**31:  # view counts are INTEGER columns: a forged cursor is a 400, not a 500
            raise bad_request('The parameter "after" was malformed: the value must be a valid cursor')
        query = query.where(or_(Clip.view_count < views, and_(Clip.view_count == views, Clip.id > last)))
    query = query.order_by(Clip.view_count.desc(), Clip.id).limit(100 if id else first + 1)
    async with caller.platform.db.session() as db:
        rows = (await db.execute(query)).all()
    more = not id and len(rows) > first
    rows = rows if id else rows[:first]
    base = caller.platform.base_url()
    data = [clip_doc(c, login, name, creator_name, deleted is not None, base)
            for c, login, name, creator_name, deleted in rows]
    cursor = pagination.encode(rows[-1][0].view_count, rows[-1][0].id) if more else None
    return json_response({"data": data, "pagination": pagination.pagination(cursor)})


def clip_doc(c: Clip, login: str, name: str, creator_name: str | None, video_deleted: bool, base: str) -> dict[str, Any]:
    urls = clip_urls(base, login, c.id)
    return {
        "id": c.id, "url": urls["url"], "embed_url": urls["embed_url"],
        "broadcaster_id": c.broadcaster_id, "broadcaster_name": name,
        "creator_id": c.creator_id or "", "creator_name": creator_name or "",
        "video_id": "" if video_deleted or not c.video_id else c.video_id,
        "game_id": c.game_id, "language": c.language, "title": c.title, "view_count": c.view_count,
        "created_at": rfc3339(c.created_at), "thumbnail_url": urls["thumbnail_url"],
        "duration": round(c.duration, 1),
        "vod_offset": None if video_deleted or c.vod_offset is None else int(c.vod_offset),
        "is_featured": False,
    }
