"""Helix ``GET/DELETE /videos`` and ``POST /videos/highlights`` (Livecast's highlighter).

Twitch has no public endpoint to create highlights; ``POST /helix/videos/highlights`` takes
the same kind of parameters as its other Helix writes (query string, user token with
``channel:manage:videos``) and answers 202 with the new video, whose media is copied by a job.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import and_, or_, select

from livecast.api.helix import pagination
from livecast.api.helix.auth import Caller, check_ids, requires
from livecast.api.helix.errors import HelixError, bad_request, forbidden, not_found
from livecast.api.helix.respond import json_response
from livecast.api.helix.schemas import ERRORS, Data, Page
from livecast.identity.models import User
from livecast.vod import keys, service
from livecast.vod.models import ARCHIVE, READY, RECORDING, Video

router = APIRouter()

LISTED = (RECORDING, READY)
PERIODS = {"day": 1, "week": 7, "month": 30}


class VideoDoc(BaseModel):
    id: str
    stream_id: str | None
    user_id: str
    user_login: str
    user_name: str
    title: str
    description: str
    created_at: str
    published_at: str
    url: str
    thumbnail_url: str
    viewable: str
    view_count: int
    language: str
    type: str
    duration: str
    muted_segments: list[dict[str, int]] | None


class Deleted(BaseModel):
    data: list[str]


@router.get("/videos", responses={200: {"model": Page[VideoDoc]}, **ERRORS})
async def get_videos(
    id: list[str] = Query(default=[], description="Up to 100 video ids"),
    user_id: str | None = Query(default=None),
    game_id: str | None = Query(default=None),
    language: str | None = Query(default=None, max_length=8),
    period: Literal["all", "day", "week", "month"] = Query(default="all"),
    sort: Literal["time", "trending", "views"] = Query(default="time"),
    type: Literal["all", "archive", "highlight", "upload"] = Query(default="all"),
    first: int = Query(default=20, ge=1, le=100),
    after: str | None = Query(default=None, description="Cursor from a previous page"),
    caller: Caller = Depends(requires()),
) -> Response:
    check_ids("id", id)
    given = sum(1 for x in (id, user_id, game_id) if x)
    if given != 1:
        raise bad_request("The request must specify exactly one of the id, user_id or game_id query parameters")
    query = select(Video, User.login, User.display_name).join(User, User.id == Video.user_id).where(
        Video.deleted_at.is_(None), Video.status.in_(LISTED))
    by_views = sort != "time"
    if id:
        wanted = [v for v in id if keys.valid_video_id(v)]
        query = query.where(Video.id.in_(wanted))
    else:
        if user_id:
            query = query.where(Video.user_id == user_id)
        if game_id:
            query = query.where(Video.category_id == game_id)
        if language:
            query = query.where(Video.language == language)
        if type != "all":
            query = query.where(Video.type == type)
        if period != "all":
            since = dt.datetime.now(dt.UTC) - dt.timedelta(days=PERIODS[period])
            query = query.where(Video.created_at >= since)
        if after:
            if by_views:
                views, last = pagination.decode(after, (int, str))
                if not 0 <= views < 2**31:  # view counts are INTEGER columns: a forged cursor is a 400, not a 500
                    raise bad_request('The parameter "after" was malformed: the value must be a valid cursor')
                query = query.where(or_(Video.view_count < views, and_(Video.view_count == views, Video.id > last)))
            else:
                stamp, last = pagination.decode(after, (str, str))
                try:
                    when = dt.datetime.fromisoformat(stamp)
                except ValueError:
                    raise bad_request("The parameter \"after\" was malformed: the value must be a valid cursor") from None
                query = query.where(or_(Video.created_at < when, and_(Video.created_at == when, Video.id > last)))
    if by_views:
        query = query.order_by(Video.view_count.desc(), Video.id)
    else:
        query = query.order_by(Video.created_at.desc(), Video.id)
    query = query.limit(first + 1 if not id else 100)
    async with caller.platform.db.session() as db:
        rows = (await db.execute(query)).all()
    if id and not rows:
        raise not_found("The video IDs in the id query parameter were not found")
    more = not id and len(rows) > first
    rows = rows[: len(rows) if id else first]
    base = caller.platform.base_url()
    data = [service.video_doc(v, login, name, base) for v, login, name in rows]
    cursor = None
    if more:
        last_video = rows[-1][0]
        cursor = (pagination.encode(last_video.view_count, last_video.id) if by_views
                  else pagination.encode(last_video.created_at.isoformat(), last_video.id))
    return json_response({"data": data, "pagination": pagination.pagination(cursor)})


@router.delete("/videos", responses={200: {"model": Deleted}, **ERRORS})
async def delete_videos(
    id: list[str] = Query(default=[], description="Up to 5 video ids"),
    caller: Caller = Depends(requires("channel:manage:videos", user=True)),
) -> Response:
    if not id:
        raise bad_request('Missing required parameter "id"')
    if len(id) > 5:
        raise bad_request('The parameter "id" may be specified at most 5 times')
    owner = caller.require_user()
    async with caller.platform.db.session() as db:
        videos = [await service.visible_video(db, v) for v in id]
    if any(v is None for v in videos):
        raise not_found("The video IDs in the id query parameter were not found")
    # all or nothing, like Twitch: one video that is not yours and none is deleted
    if any(v is not None and v.user_id != owner for v in videos):
        raise forbidden("The user in the access token may only delete their own videos")
    if any(v is not None and v.status == RECORDING for v in videos):
        raise bad_request("A video that is still being recorded cannot be deleted; end the stream first")
    deleted = []
    for v in videos:
        assert v is not None
        await service.delete_video(caller.platform, v.id)
        deleted.append(v.id)
    return json_response({"data": deleted})


@router.post("/videos/highlights", status_code=202, responses={202: {"model": Data[VideoDoc]}, **ERRORS})
async def create_highlight(
    video_id: str = Query(description="The archive to highlight"),
    start: float = Query(ge=0, le=1e7, description="Seconds into the archive"),
    end: float = Query(gt=0, le=1e7, description="Seconds into the archive"),
    title: str = Query(default="", max_length=140),
    description: str = Query(default="", max_length=2000),
    caller: Caller = Depends(requires("channel:manage:videos", user=True)),
) -> Response:
    owner = caller.require_user()
    async with caller.platform.db.session() as db:
        source = await service.visible_video(db, video_id)
        user = await db.get(User, owner)
    if source is None or user is None:
        raise not_found("The video in video_id was not found")
    if source.user_id != owner:
        raise forbidden("Only the broadcaster may highlight their videos")
    if source.type != ARCHIVE:
        raise bad_request("Only past broadcasts (type archive) can be highlighted")
    if not start < end:
        raise bad_request('The parameter "end" must be after "start"')
    if end > source.duration + 1e-3:
        raise HelixError(400, f"The range must lie within the video's {source.duration:.0f} seconds")
    video = await service.create_highlight(caller.platform, service.HighlightRequest(source, start, end, title, description))
    doc = service.video_doc(video, user.login, user.display_name, caller.platform.base_url())
    return json_response({"data": [doc]}, status=202)
