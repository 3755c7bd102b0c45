"""Browse: top categories by current viewers, live channels by viewers, and followed live channels.

Every list is keyset paged on (viewers, id), so a page boundary does not move while counts and
streams change underneath a client that is paging.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.discovery import cursor
from livecast.discovery.models import Category, Follow
from livecast.identity.models import User
from livecast.ingest.models import Stream

LIVE = ("live", "reconnecting")


@dataclass(frozen=True)
class CategoryRow:
    id: str
    name: str
    box_art_url: str
    igdb_id: str
    viewers: int
    live_channels: int


@dataclass(frozen=True)
class LiveRow:
    stream: Stream
    login: str
    display_name: str


def _has_tag(db: AsyncSession, tag: str) -> Any:
    """``tag`` is in the stream's JSON tag list (case-insensitive, as Twitch treats tags)."""
    if db.get_bind().dialect.name == "postgresql":
        elem = func.json_array_elements_text(Stream.tags).table_valued("value").alias("t")
    else:
        elem = func.json_each(Stream.tags).table_valued("value").alias("t")
    return exists(select(literal_column("1")).select_from(elem).where(func.lower(elem.c.value) == tag.lower()))


async def top_categories(
    db: AsyncSession, *, first: int = 20, after: str | None = None
) -> tuple[list[CategoryRow], str | None]:
    """Categories with live streams, most watched first (ties by id)."""
    viewers = func.sum(Stream.viewer_count).label("viewers")
    ranked = (
        select(Stream.category_id.label("id"), viewers, func.count().label("live"))
        .where(Stream.status.in_(LIVE), Stream.category_id != "")
        .group_by(Stream.category_id)
        .subquery()
    )
    stmt = select(Category, ranked.c.viewers, ranked.c.live).join(ranked, ranked.c.id == Category.id)
    if after:
        last_viewers, last_id = cursor.decode(after, (int, str))
        stmt = stmt.where(
            or_(ranked.c.viewers < last_viewers, and_(ranked.c.viewers == last_viewers, Category.id > last_id))
        )
    rows = (await db.execute(stmt.order_by(ranked.c.viewers.desc(), Category.id).limit(first + 1))).all()
    out = [CategoryRow(c.id, c.name, c.box_art_url, c.igdb_id, int(v or 0), int(n)) for c, v, n in rows[:first]]
    more = len(rows) > first
    return out, cursor.encode(out[-1].viewers, out[-1].id) if more else None


async def live_streams(
    db: AsyncSession,
    *,
    category_id: str | None = None,
    languages: Sequence[str] = (),
    tags: Sequence[str] = (),
    user_ids: Sequence[str] | None = None,
    first: int = 20,
    after: str | None = None,
) -> tuple[list[LiveRow], str | None]:
    """Live streams by viewers; filters combine with AND, languages and ``user_ids`` with OR inside."""
    stmt = select(Stream, User.login, User.display_name).join(User, User.id == Stream.user_id)
    stmt = stmt.where(Stream.status.in_(LIVE))
    if category_id:
        stmt = stmt.where(Stream.category_id == category_id)
    if languages:
        stmt = stmt.where(Stream.language.in_(list(languages)))
    for tag in tags:
        stmt = stmt.where(_has_tag(db, tag))
    if user_ids is not None:
        stmt = stmt.where(Stream.user_id.in_(list(user_ids)))
    if after:
        last_viewers, last_id = cursor.decode(after, (int, str))
        stmt = stmt.where(
            or_(Stream.viewer_count < last_viewers, and_(Stream.viewer_count == last_viewers, Stream.id > last_id))
        )
    rows = (await db.execute(stmt.order_by(Stream.viewer_count.desc(), Stream.id).limit(first + 1))).all()
    out = [LiveRow(s, login, name) for s, login, name in rows[:first]]
    more = len(rows) > first
    return out, cursor.encode(out[-1].stream.viewer_count, out[-1].stream.id) if more else None


async def followed_live(
    db: AsyncSession, user_id: str, *, first: int = 20, after: str | None = None
) -> tuple[list[LiveRow], str | None]:
    """The "live now" list: channels ``user_id`` follows that are live, most watched first."""
    followed = select(Follow.channel_id).where(Follow.user_id == user_id)
    stmt = select(Stream, User.login, User.display_name).join(User, User.id == Stream.user_id)
    stmt = stmt.where(Stream.status.in_(LIVE), Stream.user_id.in_(followed))
    if after:
        last_viewers, last_id = cursor.decode(after, (int, str))
        stmt = stmt.where(
            or_(Stream.viewer_count < last_viewers, and_(Stream.viewer_count == last_viewers, Stream.id > last_id))
        )
    rows = (await db.execute(stmt.order_by(Stream.viewer_count.desc(), Stream.id).limit(first + 1))).all()
    out = [LiveRow(s, login, name) for s, login, name in rows[:first]]
    more = len(rows) > first
    return out, cursor.encode(out[-1].stream.viewer_count, out[-1].stream.id) if more else None
