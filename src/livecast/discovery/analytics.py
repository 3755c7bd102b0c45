"""Creator analytics: per-stream and per-day viewers, minutes watched, follows, chat and subs.

The discovery worker samples each live stream's viewer count every tick (:func:`record_samples`)
and adds the chat messages it saw; averages and minutes watched are derived from the sums, so a
sample costs one small UPDATE per live stream. New followers and subscriptions are read from
their own tables over the stream's time span when a summary is asked for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.discovery.models import Follow, StreamStats
from livecast.ingest.models import Stream
from livecast.store.base import utcnow
from livecast.subscriptions.models import Subscription


@dataclass(frozen=True)
class StreamSummary:
    stream_id: str
    channel_id: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    average_viewers: float
    peak_viewers: int
    minutes_watched: float
    new_followers: int
    chat_messages: int
    subscriptions: int

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["started_at"] = self.started_at.isoformat()
        out["ended_at"] = self.ended_at.isoformat() if self.ended_at else None
        return out


async def record_samples(
    db: AsyncSession, counts: Mapping[str, tuple[str, int]], seconds: float, chat: Mapping[str, int] | None = None
) -> None:
    """Add one sample per stream: ``counts`` maps stream id to (channel id, viewers)."""
    if not counts:
        return
    chat = chat or {}
    known = set(
        (await db.execute(select(StreamStats.stream_id).where(StreamStats.stream_id.in_(list(counts))))).scalars()
    )
    missing = [{"stream_id": sid, "channel_id": cid, "samples": 0, "viewer_sum": 0, "peak_viewers": 0,
                "viewer_seconds": 0, "chat_messages": 0, "updated_at": utcnow()}
               for sid, (cid, _) in counts.items() if sid not in known]
    if missing:
        await db.execute(insert(StreamStats), missing)
    t = cast(Table, StreamStats.__table__)
    stmt = (
        update(t)
        .where(t.c.stream_id == bindparam("sid"))
        .values(
            samples=t.c.samples + 1,
            viewer_sum=t.c.viewer_sum + bindparam("n"),
            peak_viewers=func.max(t.c.peak_viewers, bindparam("n"))
            if db.get_bind().dialect.name == "sqlite" else func.greatest(t.c.peak_viewers, bindparam("n")),
            viewer_seconds=t.c.viewer_seconds + bindparam("secs"),
            chat_messages=t.c.chat_messages + bindparam("chat"),
            updated_at=bindparam("now"),
        )
    )
    now = utcnow()
    params = [
        {"sid": sid, "n": n, "secs": round(n * seconds), "chat": chat.get(sid, 0), "now": now}
        for sid, (_, n) in counts.items()
    ]
    await db.execute(stmt.execution_options(synchronize_session=False), params)


async def _subscriptions(db: AsyncSession, channel_id: str, start: dt.datetime, end: dt.datetime) -> int:
    """Subscriptions (new, renewed or gifted) whose paid period began during the window."""
    stmt = select(func.count()).select_from(Subscription).where(
        Subscription.channel_id == channel_id,
        Subscription.current_period_start >= start,
        Subscription.current_period_start < end,
    )
    return int((await db.execute(stmt)).scalar() or 0)


async def stream_summary(db: AsyncSession, stream_id: str) -> StreamSummary | None:
    stream = await db.get(Stream, stream_id)
    if stream is None:
        return None
    stats = await db.get(StreamStats, stream_id)
    end = stream.ended_at or utcnow()
    followers = (
        await db.execute(
            select(func.count()).select_from(Follow).where(
                Follow.channel_id == stream.user_id, Follow.followed_at >= stream.started_at, Follow.followed_at < end
            )
        )
    ).scalar() or 0
    samples = stats.samples if stats else 0
    return StreamSummary(
        stream_id=stream.id, channel_id=stream.user_id, started_at=stream.started_at, ended_at=stream.ended_at,
        average_viewers=round(stats.viewer_sum / samples, 2) if stats and samples else 0.0,
        peak_viewers=stats.peak_viewers if stats else 0,
        minutes_watched=round(stats.viewer_seconds / 60, 1) if stats else 0.0,
        new_followers=int(followers), chat_messages=stats.chat_messages if stats else 0,
        subscriptions=await _subscriptions(db, stream.user_id, stream.started_at, end),
    )


async def daily(db: AsyncSession, channel_id: str, days: int = 30) -> list[dict[str, Any]]:
    """Per UTC day (of the stream's start): streams, average and peak viewers, minutes watched..."""
    since = utcnow() - dt.timedelta(days=days)
    ids = (
        await db.execute(
            select(Stream.id).where(Stream.user_id == channel_id, Stream.started_at >= since).order_by(Stream.started_at)
        )
    ).scalars()
    out: dict[str, dict[str, Any]] = {}
    for sid in list(ids):
        s = await stream_summary(db, sid)
        if s is None:
            continue
        day = out.setdefault(s.started_at.date().isoformat(), {
            "date": s.started_at.date().isoformat(), "streams": 0, "peak_viewers": 0, "minutes_watched": 0.0,
            "new_followers": 0, "chat_messages": 0, "subscriptions": 0, "_avg": 0.0,
        })
        day["streams"] += 1
        day["peak_viewers"] = max(day["peak_viewers"], s.peak_viewers)
        day["minutes_watched"] += s.minutes_watched
        day["new_followers"] += s.new_followers
        day["chat_messages"] += s.chat_messages
        day["subscriptions"] += s.subscriptions
        day["_avg"] += s.average_viewers
    for day in out.values():
        day["average_viewers"] = round(day.pop("_avg") / day["streams"], 2)
    return list(out.values())


async def admin_stats(db: AsyncSession, args: Any, settings: Any) -> dict[str, Any]:
    """``livecast admin stats LOGIN [--days N]``, in :mod:`livecast.admin`'s command shape
    (``args.login``, optional ``args.days``): per-day figures and the last streams' summaries."""
    from livecast.identity.models import User

    login = str(getattr(args, "login", "") or "").lower()
    user = (await db.execute(select(User).where(User.login == login))).scalar_one_or_none()
    if user is None:
        raise LookupError(f"no user {login!r}")
    days = int(getattr(args, "days", 30) or 30)
    recent = (
        await db.execute(select(Stream.id).where(Stream.user_id == user.id).order_by(Stream.started_at.desc()).limit(10))
    ).scalars()
    streams = [s.as_dict() for sid in list(recent) if (s := await stream_summary(db, sid)) is not None]
    return {"login": user.login, "days": await daily(db, user.id, days), "streams": streams}
