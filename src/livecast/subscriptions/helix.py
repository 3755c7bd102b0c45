"""Helix ``GET /subscriptions`` and ``GET /subscriptions/user`` with Twitch's shapes and scopes.

Mounted by :mod:`livecast.subscriptions.routes` under ``/helix`` (and ``/mock`` for twurple),
using the Helix package's auth dependency, errors and keyset cursors so these endpoints behave
like every other Helix endpoint.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import func, select

from livecast.api.helix import pagination
from livecast.api.helix.auth import Caller, check_ids, requires
from livecast.api.helix.errors import not_found, unauthorized
from livecast.api.helix.respond import json_response
from livecast.api.helix.schemas import ERRORS, Data, Pagination
from livecast.identity.models import User
from livecast.store.base import utcnow
from livecast.subscriptions.models import ENTITLED_STATES, Subscription

router = APIRouter()


class BroadcasterSubscription(BaseModel):
    broadcaster_id: str
    broadcaster_login: str
    broadcaster_name: str
    gifter_id: str
    gifter_login: str
    gifter_name: str
    is_gift: bool
    plan_name: str
    tier: str
    user_id: str
    user_name: str
    user_login: str


class SubscriptionsPage(BaseModel):
    data: list[BroadcasterSubscription]
    pagination: Pagination
    total: int
    points: int


class UserSubscription(BaseModel):
    broadcaster_id: str
    broadcaster_login: str
    broadcaster_name: str
    is_gift: bool
    tier: str
    gifter_id: str | None = None  # present only for gifts, as on Twitch
    gifter_login: str | None = None
    gifter_name: str | None = None

POINTS = {"1000": 1, "2000": 2, "3000": 6}


def _live(stmt: Any) -> Any:
    return stmt.where(Subscription.state.in_(ENTITLED_STATES), Subscription.current_period_end > utcnow())


def _gifter(sub: Subscription, users: dict[str, User]) -> dict[str, str]:
    gifter = users.get(sub.gifter_id or "") if sub.is_gift and not sub.gift_anonymous else None
    return {"gifter_id": gifter.id if gifter else "", "gifter_login": gifter.login if gifter else "",
            "gifter_name": gifter.display_name if gifter else ""}


async def _users(caller: Caller, ids: set[str]) -> dict[str, User]:
    if not ids:
        return {}
    async with caller.platform.db.session() as db:
        rows = await db.execute(select(User).where(User.id.in_(ids)))
        return {u.id: u for u in rows.scalars()}


@router.get("/subscriptions", responses={200: {"model": SubscriptionsPage}, **ERRORS})
async def broadcaster_subscriptions(
    broadcaster_id: str = Query(),
    user_id: list[str] = Query(default=[]),
    first: int = Query(default=20, ge=1, le=100),
    after: str | None = Query(default=None),
    caller: Caller = Depends(requires("channel:read:subscriptions", user=True)),
) -> Response:
    if caller.user_id != broadcaster_id:
        raise unauthorized("The ID in broadcaster_id must match the user ID found in the request's OAuth token.")
    check_ids("user_id", user_id)
    base = _live(select(Subscription).where(Subscription.channel_id == broadcaster_id))
    async with caller.platform.db.session() as db:
        totals = (await db.execute(_live(select(Subscription.tier, func.count()).where(
            Subscription.channel_id == broadcaster_id)).group_by(Subscription.tier))).all()
        if user_id:
            base = base.where(Subscription.user_id.in_(user_id))
        if after and not user_id:
            (last,) = pagination.decode(after, (str,))
            base = base.where(Subscription.id > last)
        rows = list((await db.execute(base.order_by(Subscription.id).limit(first + 1))).scalars())
    more = len(rows) > first and not user_id
    rows = rows[:first]
    users = await _users(caller, {broadcaster_id} | {s.user_id for s in rows} | {s.gifter_id or "" for s in rows})
    owner = users.get(broadcaster_id)
    data = []
    for sub in rows:
        user = users.get(sub.user_id)
        data.append({
            "broadcaster_id": broadcaster_id, "broadcaster_login": owner.login if owner else "",
            "broadcaster_name": owner.display_name if owner else "", **_gifter(sub, users),
            "is_gift": sub.is_gift, "plan_name": f"Channel Subscription ({owner.login if owner else ''})",
            "tier": sub.tier, "user_id": sub.user_id, "user_name": user.display_name if user else "",
            "user_login": user.login if user else "",
        })
    total = sum(int(n) for _, n in totals)
    points = sum(POINTS.get(tier, 0) * int(n) for tier, n in totals)
    cursor = pagination.encode(rows[-1].id) if more and rows else None
    return json_response({"data": data, "pagination": pagination.pagination(cursor), "total": total,
                          "points": points})


@router.get("/subscriptions/user", responses={200: {"model": Data[UserSubscription]}, **ERRORS})
async def user_subscription(
    broadcaster_id: str = Query(),
    user_id: str = Query(),
    caller: Caller = Depends(requires("user:read:subscriptions", user=True)),
) -> Response:
    if caller.user_id != user_id:
        raise unauthorized("The ID in user_id must match the user ID found in the request's OAuth token.")
    async with caller.platform.db.session() as db:
        stmt = _live(select(Subscription).where(Subscription.channel_id == broadcaster_id,
                                                Subscription.user_id == user_id))
        sub = (await db.execute(stmt)).scalar_one_or_none()
    users = await _users(caller, {broadcaster_id, user_id} | ({sub.gifter_id or ""} if sub else set()))
    if sub is None:
        who = users.get(user_id)
        chan = users.get(broadcaster_id)
        raise not_found(f"{who.login if who else user_id} has no subscription to "
                        f"{chan.login if chan else broadcaster_id}")
    owner = users[broadcaster_id]
    doc: dict[str, Any] = {"broadcaster_id": owner.id, "broadcaster_login": owner.login,
                           "broadcaster_name": owner.display_name, "is_gift": sub.is_gift, "tier": sub.tier}
    if sub.is_gift:
        doc.update(_gifter(sub, users))
    return json_response({"data": [doc]})
