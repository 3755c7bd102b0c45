"""Go-live notifications: fan-out to followers in batches, a feed, and per-channel preferences.

The fan-out runs in the worker role, off the ``event.stream.online`` bus message, so going
live never waits for it. Each batch is one ``INSERT ... SELECT`` over a keyset range of the
channel's follows (skipping followers who turned this channel's notifications off) in its own
short transaction, so a channel with 100,000 followers neither holds one long transaction nor
starves other writers.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.discovery import cursor
from livecast.discovery.models import Follow, Notification, NotificationPref
from livecast.identity.models import User
from livecast.store.base import utcnow

BATCH = 5000
SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]


@dataclass(frozen=True)
class FeedItem:
    id: int
    kind: str
    channel_id: str
    channel_login: str
    channel_name: str
    stream_id: str
    created_at: Any
    read: bool


async def fan_out(session: SessionFactory, channel_id: str, stream_id: str, *, batch: int = BATCH) -> int:
    """Notify every follower of ``channel_id`` who wants it; returns how many were notified."""
    total = 0
    last = 0
    now = utcnow()
    while True:
        async with session() as db:
            upper = (
                await db.execute(
                    select(Follow.id).where(Follow.channel_id == channel_id, Follow.id > last)
                    .order_by(Follow.id).offset(batch - 1).limit(1)
                )
            ).scalar_one_or_none()
            in_range = [Follow.channel_id == channel_id, Follow.id > last]
            if upper is not None:
                in_range.append(Follow.id <= upper)
            muted = exists().where(
                NotificationPref.user_id == Follow.user_id,
                NotificationPref.channel_id == channel_id,
                NotificationPref.enabled.is_(False),
            )
            rows = select(
                Follow.user_id, literal("stream.online"), literal(channel_id), literal(stream_id), literal(now, Notification.__table__.c.created_at.type),
                literal(False),
            ).where(and_(*in_range), ~muted)
            result = await db.execute(
                insert(Notification).from_select(
                    ["user_id", "kind", "channel_id", "stream_id", "created_at", "read"], rows
                )
            )
            total += max(0, int(getattr(result, "rowcount", 0) or 0))
        if upper is None:
            return total
        last = upper


async def feed(
    db: AsyncSession, user_id: str, *, first: int = 20, after: str | None = None
) -> tuple[list[FeedItem], int, str | None]:
    """Newest first; returns (items, unread count for the badge, cursor)."""
    stmt = (
        select(Notification, User.login, User.display_name)
        .outerjoin(User, User.id == Notification.channel_id)
        .where(Notification.user_id == user_id)
    )
    if after:
        (last_id,) = cursor.decode(after, (int,))
        stmt = stmt.where(Notification.id < last_id)
    rows = (await db.execute(stmt.order_by(Notification.id.desc()).limit(first + 1))).all()
    unread = (
        await db.execute(
            select(func.count()).select_from(Notification)
            .where(Notification.user_id == user_id, Notification.read.is_(False))
        )
    ).scalar() or 0
    items = [
        FeedItem(n.id, n.kind, n.channel_id, login or "", name or "", n.stream_id, n.created_at, n.read)
        for n, login, name in rows[:first]
    ]
    return items, int(unread), cursor.encode(items[-1].id) if len(rows) > first else None


async def mark_read(db: AsyncSession, user_id: str, up_to: int | None = None) -> int:
    stmt = update(Notification).where(Notification.user_id == user_id, Notification.read.is_(False))
    if up_to is not None:
        stmt = stmt.where(Notification.id <= up_to)
    result = await db.execute(stmt.values(read=True))
    return int(getattr(result, "rowcount", 0) or 0)


async def set_preference(db: AsyncSession, user_id: str, channel_id: str, enabled: bool) -> None:
    row = await db.get(NotificationPref, (user_id, channel_id))
    if row is None:
        db.add(NotificationPref(user_id=user_id, channel_id=channel_id, enabled=enabled))
    else:
        row.enabled = enabled
    await db.flush()


async def preference(db: AsyncSession, user_id: str, channel_id: str) -> bool:
    row = await db.get(NotificationPref, (user_id, channel_id))
    return True if row is None else row.enabled
