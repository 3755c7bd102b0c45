"""``GET /search/categories`` and ``GET /search/channels`` (substring match, keyset paged)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from sqlalchemy import and_, or_, select

from livecast.api.helix import pagination, render
from livecast.api.helix.auth import Caller, requires
from livecast.api.helix.respond import json_response
from livecast.api.helix.schemas import ERRORS, Page, SearchCategory, SearchChannel
from livecast.discovery.models import Category
from livecast.identity.models import Channel, User
from livecast.ingest.models import Stream

router = APIRouter()


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@router.get("/search/categories", responses={200: {"model": Page[SearchCategory]}, **ERRORS})
async def search_categories(
    query: str = Query(min_length=1, max_length=256),
    first: int = Query(default=20, ge=1, le=100),
    after: str | None = Query(default=None),
    caller: Caller = Depends(requires()),
) -> Response:
    stmt = select(Category).where(Category.name.ilike(_like(query), escape="\\"))
    if after:
        last_name, last_id = pagination.decode(after, (str, str))
        stmt = stmt.where(or_(Category.name > last_name, and_(Category.name == last_name, Category.id > last_id)))
    stmt = stmt.order_by(Category.name, Category.id).limit(first + 1)
    async with caller.platform.db.session() as db:
        rows = list((await db.execute(stmt)).scalars())
    more = len(rows) > first
    rows = rows[:first]
    cursor = pagination.encode(rows[-1].name, rows[-1].id) if more else None
    data = [{"id": r.id, "name": r.name, "box_art_url": r.box_art_url} for r in rows]
    return json_response({"data": data, "pagination": pagination.pagination(cursor)})


@router.get("/search/channels", responses={200: {"model": Page[SearchChannel]}, **ERRORS})
async def search_channels(
    query: str = Query(min_length=1, max_length=256),
    live_only: bool = Query(default=False),
    first: int = Query(default=20, ge=1, le=100),
    after: str | None = Query(default=None),
    caller: Caller = Depends(requires()),
) -> Response:
    pattern = _like(query.lower())
    stmt = (
        select(User, Channel, Stream)
        .join(Channel, Channel.id == User.id)
        .outerjoin(Stream, and_(Stream.user_id == User.id, Stream.status.in_(render.LIVE)))
        .where(or_(User.login.like(pattern, escape="\\"), Channel.title.ilike(pattern, escape="\\")))
    )
    if live_only:
        stmt = stmt.where(Stream.id.is_not(None))
    if after:
        (last_login,) = pagination.decode(after, (str,))
        stmt = stmt.where(User.login > last_login)
    stmt = stmt.order_by(User.login).limit(first + 1)
    async with caller.platform.db.session() as db:
        rows = (await db.execute(stmt)).all()
    more = len(rows) > first
    rows = rows[:first]
    base = caller.platform.base_url()
    data = [
        {
            "broadcaster_language": c.language,
            "broadcaster_login": u.login,
            "display_name": u.display_name,
            "game_id": c.category_id,
            "game_name": c.category_name,
            "id": u.id,
            "is_live": s is not None,
            "tag_ids": [],
            "tags": list(c.tags or []),
            "thumbnail_url": u.profile_image_url or render.thumbnail(base, u.login),
            "title": c.title,
            "started_at": render.rfc3339(s.started_at) if s is not None else "",
        }
        for u, c, s in rows
    ]
    cursor = pagination.encode(rows[-1][0].login) if more else None
    return json_response({"data": data, "pagination": pagination.pagination(cursor)})
