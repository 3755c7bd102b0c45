"""``GET /search/categories`` and ``GET /search/channels`` through discovery's ranked search.

Discovery's index is prefix and typo tolerant and ranks live channels first; the worker keeps
it fresh every 30 s. A name it has not indexed yet (a sign-up a moment ago) still shows on the
first page through a plain substring match appended after the ranked hits, so a bot that just
created something can find it.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.api.helix import pagination, render
from livecast.api.helix.auth import Caller, requires
from livecast.api.helix.errors import bad_request
from livecast.api.helix.respond import json_response
from livecast.api.helix.schemas import ERRORS, Page, SearchCategory, SearchChannel
from livecast.discovery import cursor as ranked_cursor
from livecast.discovery import search as ranked
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
    async with caller.platform.db.session() as db:
        try:
            hits, cursor = await ranked.search_categories(db, query, first=first, after=after)
        except ranked_cursor.InvalidCursor:
            raise bad_request('The parameter "after" was malformed: the value must be a valid cursor') from None
        data = [{"id": h.id, "name": h.name, "box_art_url": h.box_art_url} for h in hits]
        if not after and len(data) < first:
            seen = {h.id for h in hits}
            extra = (await db.execute(
                select(Category).where(Category.name.ilike(_like(query), escape="\\"), Category.id.not_in(seen or {""}))
                .order_by(Category.name, Category.id).limit(first - len(data))
            )).scalars()
            data += [{"id": c.id, "name": c.name, "box_art_url": c.box_art_url} for c in extra]
    return json_response({"data": data, "pagination": pagination.pagination(cursor)})


@router.get("/search/channels", responses={200: {"model": Page[SearchChannel]}, **ERRORS})
async def search_channels(
    query: str = Query(min_length=1, max_length=256),
    live_only: bool = Query(default=False),
    first: int = Query(default=20, ge=1, le=100),
    after: str | None = Query(default=None),
    caller: Caller = Depends(requires()),
) -> Response:
    base = caller.platform.base_url()
    async with caller.platform.db.session() as db:
        try:
            hits, cursor = await ranked.search_channels(db, query, live_only=live_only, first=first, after=after)
        except ranked_cursor.InvalidCursor:
            raise bad_request('The parameter "after" was malformed: the value must be a valid cursor') from None
        data = [
            _channel(base, h.user_id, h.login, h.display_name, h.profile_image_url, h.language, h.category_id,
                     h.category_name, h.tags, h.title, h.started_at if h.is_live else None)
            for h in hits
        ]
        if not after and len(data) < first:
            data += await _unindexed(db, base, query, live_only, first - len(data), {h.user_id for h in hits})
    return json_response({"data": data, "pagination": pagination.pagination(cursor)})


async def _unindexed(db: AsyncSession, base: str, query: str, live_only: bool, limit: int,
                     seen: set[str]) -> list[dict[str, object]]:
    pattern = _like(query.lower())
    stmt = (
        select(User, Channel, Stream)
        .join(Channel, Channel.id == User.id)
        .outerjoin(Stream, and_(Stream.user_id == User.id, Stream.status.in_(render.LIVE)))
        .where(or_(User.login.like(pattern, escape="\\"), Channel.title.ilike(pattern, escape="\\")),
               User.id.not_in(seen or {""}))
    )
    if live_only:
        stmt = stmt.where(Stream.id.is_not(None))
    rows = (await db.execute(stmt.order_by(Stream.id.is_(None), User.login).limit(limit))).all()
    return [
        _channel(base, u.id, u.login, u.display_name, u.profile_image_url, c.language, c.category_id,
                 c.category_name, list(c.tags or []), c.title, s.started_at if s is not None else None)
        for u, c, s in rows
    ]


def _channel(base: str, user_id: str, login: str, display_name: str, image: str, language: str, category_id: str,
             category_name: str, tags: list[str], title: str, started_at: object) -> dict[str, object]:
    return {
        "broadcaster_language": language,
        "broadcaster_login": login,
        "display_name": display_name,
        "game_id": category_id,
        "game_name": category_name,
        "id": user_id,
        "is_live": started_at is not None,
        "tag_ids": [],
        "tags": list(tags),
        "thumbnail_url": image or render.thumbnail(base, login),
        "title": title,
        "started_at": render.rfc3339(started_at) if started_at is not None else "",  # type: ignore[arg-type]
    }
