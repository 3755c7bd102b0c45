"""``GET /channels/followers`` and ``GET /channels/followed``, newest first.

As on Twitch, anyone may read a channel's follower *count*; the list itself needs the
broadcaster's (or a moderator's) token with ``moderator:read:followers``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from sqlalchemy import and_, func, or_, select

from livecast.api.helix import pagination, render
from livecast.api.helix.auth import Caller, requires
from livecast.api.helix.errors import unauthorized
from livecast.api.helix.respond import json_response
from livecast.api.helix.schemas import ERRORS, CountedPage, Followed, Follower
from livecast.discovery.models import Follow
from livecast.identity.models import User

router = APIRouter()


def _after(stmt: Any, after: str | None) -> Any:
    if not after:
        return stmt
    when, last_id = pagination.decode(after, (str, int))
    try:
        at = dt.datetime.fromisoformat(when)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        from livecast.api.helix.errors import bad_request

        raise bad_request("The parameter \"after\" was malformed: the value must be a valid cursor")
    return stmt.where(or_(Follow.followed_at < at, and_(Follow.followed_at == at, Follow.id < last_id)))


async def _can_list(caller: Caller, broadcaster_id: str) -> bool:
    if caller.user_id is None or not caller.has("moderator:read:followers"):
        return False
    if caller.user_id == broadcaster_id:
        return True
    try:
        from livecast.chat import service as chat  # the chat domain knows who moderates
    except ImportError:
        return False
    is_mod = getattr(chat, "is_moderator", None)
    if is_mod is None:
        return False
    async with caller.platform.db.session() as db:
        return bool(await is_mod(db, broadcaster_id, caller.user_id))


@router.get("/channels/followers", responses={200: {"model": CountedPage[Follower]}, **ERRORS})
async def followers(
    broadcaster_id: str = Query(),
    user_id: str | None = Query(default=None),
    first: int = Query(default=20, ge=1, le=100),
    after: str | None = Query(default=None),
    caller: Caller = Depends(requires()),
) -> Response:
    base = select(Follow, User).join(User, User.id == Follow.user_id).where(Follow.channel_id == broadcaster_id)
    if user_id:
        base = base.where(Follow.user_id == user_id)
    count = select(func.count()).select_from(Follow).where(Follow.channel_id == broadcaster_id)
    if user_id:
        count = count.where(Follow.user_id == user_id)
    async with caller.platform.db.session() as db:
        total = int((await db.execute(count)).scalar() or 0)
    if not await _can_list(caller, broadcaster_id):
        return json_response({"data": [], "total": total, "pagination": {}})
    stmt = _after(base, after).order_by(Follow.followed_at.desc(), Follow.id.desc()).limit(first + 1)
    async with caller.platform.db.session() as db:
        rows = (await db.execute(stmt)).all()
    more = len(rows) > first
    rows = rows[:first]
    data = [{"user_id": u.id, "user_login": u.login, "user_name": u.display_name,
             "followed_at": render.rfc3339(f.followed_at)} for f, u in rows]
    cursor = pagination.encode(rows[-1][0].followed_at.isoformat(), rows[-1][0].id) if more else None
    return json_response({"data": data, "total": total, "pagination": pagination.pagination(cursor)})


@router.get("/channels/followed", responses={200: {"model": CountedPage[Followed]}, **ERRORS})
async def followed(
    user_id: str = Query(),
    broadcaster_id: str | None = Query(default=None),
    first: int = Query(default=20, ge=1, le=100),
    after: str | None = Query(default=None),
    caller: Caller = Depends(requires("user:read:follows", user=True)),
) -> Response:
    if caller.user_id != user_id:
        raise unauthorized("The user_id parameter must match the user ID in the access token")
    base = select(Follow, User).join(User, User.id == Follow.channel_id).where(Follow.user_id == user_id)
    count = select(func.count()).select_from(Follow).where(Follow.user_id == user_id)
    if broadcaster_id:
        base = base.where(Follow.channel_id == broadcaster_id)
        count = count.where(Follow.channel_id == broadcaster_id)
    stmt = _after(base, after).order_by(Follow.followed_at.desc(), Follow.id.desc()).limit(first + 1)
    async with caller.platform.db.session() as db:
        total = int((await db.execute(count)).scalar() or 0)
        rows = (await db.execute(stmt)).all()
    more = len(rows) > first
    rows = rows[:first]
    data = [{"broadcaster_id": u.id, "broadcaster_login": u.login, "broadcaster_name": u.display_name,
             "followed_at": render.rfc3339(f.followed_at)} for f, u in rows]
    cursor = pagination.encode(rows[-1][0].followed_at.isoformat(), rows[-1][0].id) if more else None
    return json_response({"data": data, "total": total, "pagination": pagination.pagination(cursor)})
