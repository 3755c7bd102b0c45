"""Follow and unfollow; chat's followers-only mode asks :func:`follow_age` here.

Each follow or unfollow also updates the co-follow counts recommendations rank by.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.bus import Bus, publish_event
from livecast.discovery.models import Follow
from livecast.discovery.recommend import record_follow
from livecast.identity.models import User
from livecast.store.base import utcnow


async def follow(
    db: AsyncSession, user_id: str, channel_id: str, *, bus: Bus | None = None
) -> tuple[Follow, bool]:
    """Follow a channel; returns the follow and whether it is new (following twice is a no-op).

    With ``bus``, a new follow is announced as ``event.channel.follow`` (EventSub v2's event),
    after the row is flushed; callers that commit later may pass it once they have committed.
    """
    if user_id == channel_id:
        raise ValueError("a user cannot follow their own channel")
    existing = (
        await db.execute(select(Follow).where(Follow.user_id == user_id, Follow.channel_id == channel_id))
    ).scalar_one_or_none()
    if existing is not None:
        return existing, False
    row = Follow(user_id=user_id, channel_id=channel_id)
    db.add(row)
    await db.flush()
    await record_follow(db, user_id, channel_id, +1)
    if bus is not None:
        await publish_event(bus, "channel.follow", await follow_event(db, row))
    return row, True


async def follow_event(db: AsyncSession, row: Follow) -> dict[str, str]:
    """EventSub ``channel.follow`` v2's event object for a follow."""
    users = {
        u.id: u for u in (await db.execute(select(User).where(User.id.in_([row.user_id, row.channel_id])))).scalars()
    }
    fan, caster = users.get(row.user_id), users.get(row.channel_id)
    return {
        "user_id": row.user_id,
        "user_login": fan.login if fan else "",
        "user_name": fan.display_name if fan else "",
        "broadcaster_user_id": row.channel_id,
        "broadcaster_user_login": caster.login if caster else "",
        "broadcaster_user_name": caster.display_name if caster else "",
        "followed_at": row.followed_at.isoformat().replace("+00:00", "Z"),
    }


async def unfollow(db: AsyncSession, user_id: str, channel_id: str) -> bool:
    result = await db.execute(delete(Follow).where(Follow.user_id == user_id, Follow.channel_id == channel_id))
    removed = bool(getattr(result, "rowcount", 0))
    if removed:
        await record_follow(db, user_id, channel_id, -1)
    return removed


async def follow_age(db: AsyncSession, user_id: str, channel_id: str) -> dt.timedelta | None:
    """How long ``user_id`` has followed ``channel_id``, or None if not following."""
    followed_at = (
        await db.execute(
            select(Follow.followed_at).where(Follow.user_id == user_id, Follow.channel_id == channel_id)
        )
    ).scalar_one_or_none()
    return None if followed_at is None else utcnow() - followed_at


async def follower_count(db: AsyncSession, channel_id: str) -> int:
    return int(
        (await db.execute(select(func.count()).select_from(Follow).where(Follow.channel_id == channel_id))).scalar()
        or 0
    )
