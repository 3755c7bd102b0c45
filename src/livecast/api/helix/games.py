"""``GET /games`` and ``GET /games/top`` (categories ordered by current viewers)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from sqlalchemy import and_, func, or_, select

from livecast.api.helix import pagination, render
from livecast.api.helix.auth import Caller, check_ids, requires
from livecast.api.helix.errors import bad_request
from livecast.api.helix.respond import json_response
from livecast.api.helix.schemas import ERRORS, Data, Game, Page
from livecast.discovery.models import Category
from livecast.ingest.models import Stream

router = APIRouter()


def game(row: Category) -> dict[str, str]:
    return {"id": row.id, "name": row.name, "box_art_url": row.box_art_url, "igdb_id": row.igdb_id}


@router.get("/games", responses={200: {"model": Data[Game]}, **ERRORS})
async def get_games(
    id: list[str] = Query(default=[]),
    name: list[str] = Query(default=[]),
    igdb_id: list[str] = Query(default=[]),
    caller: Caller = Depends(requires()),
) -> Response:
    if not (id or name or igdb_id):
        raise bad_request("Missing required parameter: specify id, name or igdb_id")
    check_ids("id, name and igdb_id", id + name + igdb_id)
    conds = []
    if id:
        conds.append(Category.id.in_(id))
    if name:
        conds.append(Category.name.in_(name))
    if igdb_id:
        conds.append(Category.igdb_id.in_(igdb_id))
    async with caller.platform.db.session() as db:
        rows = (await db.execute(select(Category).where(or_(*conds)))).scalars().all()
    return json_response({"data": [game(r) for r in rows]})


@router.get("/games/top", responses={200: {"model": Page[Game]}, **ERRORS})
async def top_games(
    first: int = Query(default=20, ge=1, le=100),
    after: str | None = Query(default=None),
    caller: Caller = Depends(requires()),
) -> Response:
    viewers = func.coalesce(func.sum(Stream.viewer_count), 0).label("viewers")
    ranked = (
        select(Category.id.label("id"), viewers)
        .outerjoin(Stream, and_(Stream.category_id == Category.id, Stream.status.in_(render.LIVE)))
        .group_by(Category.id)
        .subquery()
    )
    query = select(Category, ranked.c.viewers).join(ranked, ranked.c.id == Category.id)
    if after:
        last_viewers, last_id = pagination.decode(after, (int, str))
        query = query.where(or_(ranked.c.viewers < last_viewers,
                                and_(ranked.c.viewers == last_viewers, Category.id > last_id)))
    query = query.order_by(ranked.c.viewers.desc(), Category.id).limit(first + 1)
    async with caller.platform.db.session() as db:
        rows = (await db.execute(query)).all()
    more = len(rows) > first
    rows = rows[:first]
    cursor = pagination.encode(int(rows[-1][1]), rows[-1][0].id) if more else None
    return json_response({"data": [game(c) for c, _ in rows], "pagination": pagination.pagination(cursor)})
