"""Follow and unfollow; chat's followers-only mode asks :func:`follow_age` here."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.discovery.models import Follow
from livecast.store.base import utcnow


async def follow(db: AsyncSession, user_id: str, channel_id: str) -> tuple[Follow, bool]:
    """Follow a channel; returns the follow and whether it is new (following twice is a no-op)."""
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
    return row, True


async def unfollow(db: AsyncSession, user_id: str, channel_id: str) -> bool:
    result = await db.execute(delete(Follow).where(Follow.user_id == user_id, Follow.channel_id == channel_id))
    return bool(getattr(result, "rowcount", 0))


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
