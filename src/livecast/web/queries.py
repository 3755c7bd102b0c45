"""What the web pages list: live channels, categories, search hits, a channel's profile.

Pages read through these few functions so that the discovery domain can later replace the
ranking (recommendations, full-text search) without touching routes or templates. Every
function returns plain dataclasses, never ORM rows, so templates cannot lazy-load.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.discovery import search as ranked
from livecast.discovery.models import Category, Follow
from livecast.identity.models import Channel, User
from livecast.ingest.models import Stream

ON_AIR = ("live", "reconnecting")


@dataclass(frozen=True)
class LiveCard:
    """One live channel as a thumbnail card."""

    login: str
    display_name: str
    title: str
    category_name: str
    viewer_count: int
    status: str
    started_at: dt.datetime
    tags: list[str] = field(default_factory=list)
    language: str = "en"
    followed: bool = False

    @property
    def thumbnail_url(self) -> str:
        return f"/hls/{self.login}/thumbnail-440x248.jpg"


@dataclass(frozen=True)
class CategoryCard:
    name: str
    box_art_url: str
    viewer_count: int
    live_channels: int


@dataclass(frozen=True)
class ChannelProfile:
    """A channel page's header and player state."""

    user_id: str
    login: str
    display_name: str
    description: str
    broadcaster_type: str
    title: str
    category_name: str
    language: str
    tags: list[str]
    status: str  # live | reconnecting | offline
    stream_id: str | None
    viewer_count: int
    started_at: dt.datetime | None
    renditions: list[str]
    health: dict[str, Any]
    followers: int


def _card(stream: Stream, user: User, followed: bool = False) -> LiveCard:
    return LiveCard(
        login=user.login, display_name=user.display_name, title=stream.title,
        category_name=stream.category_name, viewer_count=stream.viewer_count, status=stream.status,
        started_at=stream.started_at, tags=list(stream.tags or []), language=stream.language,
        followed=followed,
    )


async def live_channels(
    db: AsyncSession, *, viewer_id: str | None = None, category: str | None = None, limit: int = 60
) -> list[LiveCard]:
    """Channels on air, most viewers first; the viewer's followed channels before all others."""
    query = (
        select(Stream, User).join(User, User.id == Stream.user_id).where(Stream.status.in_(ON_AIR))
        .order_by(Stream.viewer_count.desc(), Stream.started_at.asc()).limit(limit)
    )
    if category is not None:
        query = query.where(func.lower(Stream.category_name) == category.lower())
    rows = (await db.execute(query)).all()
    followed: set[str] = set()
    if viewer_id and rows:
        ids = [s.user_id for s, _ in rows]
        followed = set(
            (await db.execute(
                select(Follow.channel_id).where(Follow.user_id == viewer_id, Follow.channel_id.in_(ids))
            )).scalars()
        )
    cards = [_card(s, u, s.user_id in followed) for s, u in rows]
    # A stable sort keeps the viewer-count order inside each group.
    cards.sort(key=lambda c: not c.followed)
    return cards


async def top_categories(db: AsyncSession, limit: int = 30) -> list[CategoryCard]:
    """Categories by live viewers, then the known categories nobody streams right now."""
    live = (
        await db.execute(
            select(Stream.category_name, func.sum(Stream.viewer_count), func.count())
            .where(Stream.status.in_(ON_AIR), Stream.category_name != "")
            .group_by(Stream.category_name)
        )
    ).all()
    art = {name: url for name, url in (await db.execute(select(Category.name, Category.box_art_url))).all()}
    cards = [CategoryCard(name, art.get(name, ""), int(viewers or 0), int(count)) for name, viewers, count in live]
    cards.sort(key=lambda c: (-c.viewer_count, -c.live_channels, c.name.lower()))
    seen = {c.name for c in cards}
    for name in sorted(art, key=str.lower):
        if len(cards) >= limit:
            break
        if name not in seen:
            cards.append(CategoryCard(name, art[name], 0, 0))
    return cards[:limit]


async def category_exists(db: AsyncSession, name: str) -> str | None:
    """The category's canonical name, whether it is a known category or only streamed under."""
    known = (
        await db.execute(select(Category.name).where(func.lower(Category.name) == name.lower()))
    ).scalar_one_or_none()
    if known is not None:
        return str(known)
    streamed = (
        await db.execute(
            select(Stream.category_name).where(func.lower(Stream.category_name) == name.lower()).limit(1)
        )
    ).scalar_one_or_none()
    return None if streamed is None else str(streamed)


@dataclass(frozen=True)
class SearchResults:
    channels: list[tuple[str, str, bool]]  # login, display name, live
    live: list[LiveCard]
    categories: list[CategoryCard]


def _like(term: str) -> str:
    escaped = term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search(db: AsyncSession, term: str, limit: int = 20) -> SearchResults:
    """Channels, live streams and categories matching ``term``.

    Channel and category names go through discovery's ranked, typo-tolerant search; stream
    titles (which discovery does not index) are a plain substring match.
    """
    pattern = _like(term.strip()[:100])
    users = (
        await db.execute(
            select(User).where(
                or_(func.lower(User.login).like(pattern, escape="\\"),
                    func.lower(User.display_name).like(pattern, escape="\\"))
            ).order_by(func.length(User.login), User.login).limit(limit)
        )
    ).scalars().all()
    on_air = set(
        (await db.execute(
            select(Stream.user_id).where(Stream.status.in_(ON_AIR), Stream.user_id.in_([u.id for u in users]))
        )).scalars()
    ) if users else set()
    live_rows = (
        await db.execute(
            select(Stream, User).join(User, User.id == Stream.user_id).where(
                Stream.status.in_(ON_AIR),
                or_(func.lower(Stream.title).like(pattern, escape="\\"),
                    func.lower(Stream.category_name).like(pattern, escape="\\"),
                    func.lower(User.login).like(pattern, escape="\\")),
            ).order_by(Stream.viewer_count.desc()).limit(limit)
        )
    ).all()
    known = await top_categories(db, limit=500)
    categories = [c for c in known if term.strip().lower() in c.name.lower()]
    # Discovery's index ranks by similarity and forgives typos; it is refreshed by the worker
    # every few seconds, so the substring matches above still catch what it has not seen yet.
    hits, _ = await ranked.search_channels(db, term, first=limit)
    channels = [(h.login, h.display_name, h.is_live) for h in hits]
    seen = {login for login, _, _ in channels}
    channels += [(u.login, u.display_name, u.id in on_air) for u in users if u.login not in seen]
    by_name = {c.name: c for c in known}
    category_hits, _ = await ranked.search_categories(db, term, first=limit)
    ranked_categories = [by_name.get(h.name) or CategoryCard(h.name, h.box_art_url, 0, 0) for h in category_hits]
    named = {c.name for c in ranked_categories}
    return SearchResults(
        channels=channels[:limit],
        live=[_card(s, u) for s, u in live_rows],
        categories=(ranked_categories + [c for c in categories if c.name not in named])[:limit],
    )


async def channel_profile(db: AsyncSession, login: str) -> ChannelProfile | None:
    user = (await db.execute(select(User).where(User.login == login.lower()))).scalar_one_or_none()
    if user is None:
        return None
    channel = await db.get(Channel, user.id)
    stream = (
        await db.execute(
            select(Stream).where(Stream.user_id == user.id).order_by(Stream.started_at.desc()).limit(1)
        )
    ).scalar_one_or_none()
    followers = int(
        (await db.execute(select(func.count()).select_from(Follow).where(Follow.channel_id == user.id))).scalar()
        or 0
    )
    on_air = stream is not None and stream.status in ON_AIR
    return ChannelProfile(
        user_id=user.id, login=user.login, display_name=user.display_name, description=user.description,
        broadcaster_type=user.broadcaster_type,
        title=(stream.title if on_air and stream else channel.title if channel else ""),
        category_name=(stream.category_name if on_air and stream else channel.category_name if channel else ""),
        language=channel.language if channel else "en",
        tags=list((channel.tags if channel else []) or []),
        status=stream.status if (on_air and stream) else "offline",
        stream_id=stream.id if (on_air and stream) else None,
        viewer_count=stream.viewer_count if (on_air and stream) else 0,
        started_at=stream.started_at if (on_air and stream) else None,
        renditions=list(stream.renditions or []) if (on_air and stream) else [],
        health=dict(stream.health or {}) if (on_air and stream) else {},
        followers=followers,
    )


async def is_following(db: AsyncSession, user_id: str, channel_id: str) -> bool:
    row = (
        await db.execute(select(Follow.id).where(Follow.user_id == user_id, Follow.channel_id == channel_id))
    ).scalar_one_or_none()
    return row is not None


@dataclass(frozen=True)
class RecentItem:
    """A past broadcast or clip on an offline channel page."""

    url: str
    thumbnail: str
    title: str
    meta: str


async def recent_media(db: AsyncSession, user_id: str, login: str, limit: int = 6) -> tuple[list[RecentItem], list[RecentItem]]:
    """The channel's latest videos and its most viewed ready clips, for the offline state."""
    from livecast.vod.models import READY, RECORDING, Clip, Video

    videos = (await db.execute(
        select(Video).where(Video.user_id == user_id, Video.deleted_at.is_(None), Video.status.in_((READY, RECORDING)))
        .order_by(Video.created_at.desc()).limit(limit)
    )).scalars().all()
    clips = (await db.execute(
        select(Clip).where(Clip.broadcaster_id == user_id, Clip.status == READY)
        .order_by(Clip.view_count.desc(), Clip.created_at.desc()).limit(limit)
    )).scalars().all()
    return (
        [RecentItem(f"/videos/{v.id}", f"/vods/{v.id}/thumb-320x180.jpg" if v.thumbnail_key else "",
                    v.title or "Past broadcast", f"{_clock(v.duration)} · {v.view_count} views") for v in videos],
        [RecentItem(f"/{login}/clip/{c.id}", f"/clips/{c.id}/thumb-480x272.jpg", c.title or "Clip",
                    f"{_clock(c.duration)} · {c.view_count} views") for c in clips],
    )


def _clock(seconds: float) -> str:
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
