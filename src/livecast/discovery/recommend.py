"""Recommendations: channels a user will likely enjoy, with the reason shown.

Similarity is item-to-item: ``co_follows`` counts, for each pair of channels, the users who
follow (or have watched for a while) both. It is updated incrementally, one user's pairs at a
time, when they follow, unfollow or cross the watch threshold, so it is never rebuilt online
(:func:`rebuild` exists for imports and benchmarks). A user's seeds are their follows and
their watched channels; candidates are the seeds' neighbours, scored by co-follows damped by
the candidate's own popularity (so huge channels do not win every list), blended with what is
popular and live in the seeds' categories and the user's language. Channels the user follows,
blocked, or is watching right now are never recommended.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, delete, func, insert, select, text, tuple_, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.discovery.models import CoFollow, Follow, UserBlock, WatchHistory
from livecast.identity.models import Channel, User
from livecast.ingest.models import Stream
from livecast.store.base import utcnow
from livecast.store.db import upsert_insert

LIVE = ("live", "reconnecting")
MAX_SEEDS = 200  # a user's most recent follows that pair with a new one
WATCH_THRESHOLD = 10  # minutes of watching that make a channel a seed, like a follow
WATCHING_NOW = dt.timedelta(minutes=2)
RANK_SEEDS = 50  # the most recent follows and most watched channels rank a request
PER_SEED = 50
SHORTLIST = 120  # best raw co-follow counts that get their popularity looked up


@dataclass(frozen=True)
class Recommendation:
    channel_id: str
    login: str
    display_name: str
    is_live: bool
    viewer_count: int
    category_name: str
    language: str
    reason: str
    score: float


def _upsert(db: AsyncSession) -> Any:
    stmt = upsert_insert(db)(CoFollow)
    return stmt.on_conflict_do_update(
        index_elements=[CoFollow.channel_id, CoFollow.other_id],
        set_={"weight": CoFollow.weight + stmt.excluded.weight},
    )


async def _pair(db: AsyncSession, channel_id: str, others: Sequence[str], delta: int) -> None:
    """Add ``delta`` to each (channel, other) pair both ways, and to the (channel, channel)
    diagonal, which is how many users have the channel as a seed: its popularity."""
    others = [o for o in others if o != channel_id]
    pairs = [(channel_id, channel_id)] + [(channel_id, o) for o in others] + [(o, channel_id) for o in others]
    if delta > 0:
        await db.execute(_upsert(db), [{"channel_id": a, "other_id": b, "weight": delta} for a, b in pairs])
        return
    t = cast(Table, CoFollow.__table__)
    stmt = update(t).where(t.c.channel_id == bindparam("a"), t.c.other_id == bindparam("b"))
    await db.execute(
        stmt.values(weight=t.c.weight + delta).execution_options(synchronize_session=False),
        [{"a": a, "b": b} for a, b in pairs],
    )
    await db.execute(delete(CoFollow).where(CoFollow.weight <= 0, CoFollow.channel_id.in_([channel_id, *others])))


async def _seeds(db: AsyncSession, user_id: str) -> list[str]:
    follows = select(Follow.channel_id).where(Follow.user_id == user_id).order_by(Follow.id.desc()).limit(MAX_SEEDS)
    watched = select(WatchHistory.channel_id).where(
        WatchHistory.user_id == user_id, WatchHistory.minutes >= WATCH_THRESHOLD
    ).order_by(WatchHistory.minutes.desc()).limit(MAX_SEEDS)
    seen: dict[str, None] = {}
    for stmt in (follows, watched):
        for cid in (await db.execute(stmt)).scalars():
            seen.setdefault(cid, None)
    return list(seen)


async def record_follow(db: AsyncSession, user_id: str, channel_id: str, delta: int) -> None:
    """Pair ``channel_id`` with the user's other seeds (+1 on follow, -1 on unfollow)."""
    seeds = await _seeds(db, user_id)
    watched = (
        await db.execute(
            select(WatchHistory.minutes).where(WatchHistory.user_id == user_id, WatchHistory.channel_id == channel_id)
        )
    ).scalar_one_or_none()
    if delta < 0 and (watched or 0) >= WATCH_THRESHOLD:
        return  # still a seed through watching
    if delta > 0 and (watched or 0) >= WATCH_THRESHOLD:
        return  # already paired when the watch threshold was crossed
    await _pair(db, channel_id, seeds, delta)


async def record_watch(db: AsyncSession, user_id: str, channel_id: str, minutes: int = 1) -> None:
    """Add watched minutes (the heartbeat path calls this once per user, channel and minute)."""
    if user_id == channel_id:
        return
    row = await db.get(WatchHistory, (user_id, channel_id))
    if row is None:
        row = WatchHistory(user_id=user_id, channel_id=channel_id, minutes=0)
        db.add(row)
    before = row.minutes
    row.minutes = before + minutes
    row.last_watched_at = utcnow()
    await db.flush()
    if before < WATCH_THRESHOLD <= row.minutes:
        following = (
            await db.execute(select(Follow.id).where(Follow.user_id == user_id, Follow.channel_id == channel_id))
        ).scalar_one_or_none()
        if following is None:  # a followed channel is paired already
            await _pair(db, channel_id, await _seeds(db, user_id), +1)


async def rebuild(db: AsyncSession) -> int:
    """Recompute ``co_follows`` from all follows (for imports and benchmarks, not the online path)."""
    await db.execute(delete(CoFollow))
    await db.execute(
        text(
            "INSERT INTO co_follows (channel_id, other_id, weight) "
            "SELECT a.channel_id, b.channel_id, count(*) FROM follows a "
            "JOIN follows b ON a.user_id = b.user_id "
            "GROUP BY a.channel_id, b.channel_id"
        )
    )
    return int((await db.execute(select(func.count()).select_from(CoFollow))).scalar() or 0)


async def _live_info(db: AsyncSession, ids: Sequence[str]) -> dict[str, tuple[User, Channel, Stream | None]]:
    if not ids:
        return {}
    stmt = (
        select(User, Channel, Stream)
        .join(Channel, Channel.id == User.id)
        .outerjoin(Stream, and_(Stream.user_id == User.id, Stream.status.in_(LIVE)))
        .where(User.id.in_(list(ids)))
    )
    return {u.id: (u, c, s) for u, c, s in (await db.execute(stmt)).all()}


def _make(info: tuple[User, Channel, Stream | None], reason: str, score: float) -> Recommendation:
    u, c, s = info
    return Recommendation(
        channel_id=u.id, login=u.login, display_name=u.display_name, is_live=s is not None,
        viewer_count=s.viewer_count if s else 0, category_name=(s.category_name if s else c.category_name),
        language=c.language, reason=reason, score=round(score, 4),
    )


async def recommend(
    db: AsyncSession, user_id: str, *, language: str | None = None, limit: int = 20
) -> list[Recommendation]:
    seeds = await _seeds(db, user_id)
    if not seeds:
        return await popular_live(db, language=language, limit=limit, exclude_for=user_id)
    followed = set((await db.execute(select(Follow.channel_id).where(Follow.user_id == user_id))).scalars())
    excluded = followed | set(seeds) | {user_id} | await _blocked_and_watching(db, user_id)

    score, best = await _neighbours(db, seeds[:RANK_SEEDS], excluded)
    top_sim = max(score.values(), default=1.0) or 1.0

    seed_info = await _live_info(db, seeds[:RANK_SEEDS])
    categories = {c.category_id for _, c, _ in seed_info.values() if c.category_id}
    languages = {language} if language else {c.language for _, c, _ in seed_info.values()}
    popular = (
        await db.execute(
            select(Stream.user_id, Stream.viewer_count, Stream.category_name)
            .where(Stream.status.in_(LIVE), Stream.category_id.in_(categories), Stream.language.in_(languages))
            .order_by(Stream.viewer_count.desc())
            .limit(limit * 2)
        )
    ).all() if categories else []
    top_viewers = max((v for _, v, _ in popular), default=0)
    blended: dict[str, tuple[float, str]] = {}
    candidates = sorted(score, key=lambda c: -score[c])[: limit * 3]
    info = await _live_info(db, candidates + [p[0] for p in popular])
    seed_names = {cid: u.display_name for cid, (u, _, _) in seed_info.items()}
    for cid in candidates:
        if cid not in info:
            continue
        seed = best[cid][1]
        verb = "follow" if seed in followed else "watch"
        live_bonus = 0.25 if info[cid][2] is not None else 0.0
        blended[cid] = (score[cid] / top_sim + live_bonus, f"because you {verb} {seed_names.get(seed, seed)}")
    for cid, viewers, category_name in popular:
        if cid in excluded or cid in blended or cid not in info:
            continue
        pop = 0.3 * math.log1p(viewers) / math.log1p(max(1, top_viewers))
        blended[cid] = (pop, f"popular in {category_name}")
    ranked = sorted(blended.items(), key=lambda kv: (-kv[1][0], kv[0]))[:limit]
    out = [_make(info[cid], reason, s) for cid, (s, reason) in ranked]
    if len(out) < limit:  # a thin neighbourhood: fill up with what is popular in their language
        have = {r.channel_id for r in out}
        more = await popular_live(db, language=language, limit=limit, exclude_for=user_id)
        out += [r for r in more if r.channel_id not in have][: limit - len(out)]
    return out


async def _neighbours(
    db: AsyncSession, seeds: Sequence[str], excluded: set[str]
) -> tuple[dict[str, float], dict[str, tuple[int, str]]]:
    """Candidates from each seed's strongest neighbours, scored by co-follows over sqrt(popularity).

    Reading at most ``PER_SEED`` rows per seed (an index range scan each) keeps a seed that
    everyone follows from dragging its whole neighbourhood into every request.
    """
    if not seeds:
        return {}, {}
    parts = []
    for seed in seeds:
        inner = (
            select(CoFollow.channel_id, CoFollow.other_id, CoFollow.weight)
            .where(CoFollow.channel_id == seed, CoFollow.other_id != seed)
            .order_by(CoFollow.weight.desc())
            .limit(PER_SEED)
            .subquery()
        )
        parts.append(select(inner.c.channel_id, inner.c.other_id, inner.c.weight))
    rows = (await db.execute(union_all(*parts))).all()
    raw: dict[str, int] = defaultdict(int)
    best: dict[str, tuple[int, str]] = {}
    for seed, other, weight in rows:
        if other in excluded:
            continue
        raw[other] += weight
        if weight > best.get(other, (0, ""))[0]:
            best[other] = (weight, seed)
    shortlist = sorted(raw, key=lambda c: -raw[c])[:SHORTLIST]
    popularity = await _popularity(db, shortlist)
    score = {c: raw[c] / math.sqrt(max(1, popularity.get(c, 1))) for c in shortlist}
    return score, best


async def _popularity(db: AsyncSession, channel_ids: Sequence[str]) -> dict[str, int]:
    """The diagonal rows of ``co_follows`` for these channels (their follower and watcher counts)."""
    if not channel_ids:
        return {}
    if db.get_bind().dialect.name == "postgresql":
        # A join on unnest() is one index probe per id; a row-value IN list becomes a BitmapOr
        # of as many index scans, several times slower.
        stmt = text(
            "SELECT c.channel_id, c.weight FROM co_follows c"
            " JOIN unnest(CAST(:ids AS varchar[])) AS u(id) ON c.channel_id = u.id AND c.other_id = u.id"
        )
        rows = (await db.execute(stmt, {"ids": list(channel_ids)})).all()
    else:
        pairs = tuple_(CoFollow.channel_id, CoFollow.other_id).in_([(c, c) for c in channel_ids])
        rows = (await db.execute(select(CoFollow.channel_id, CoFollow.weight).where(pairs))).all()
    return {cid: int(weight) for cid, weight in rows}


async def _blocked_and_watching(db: AsyncSession, user_id: str) -> set[str]:
    blocked = select(UserBlock.target_id).where(UserBlock.user_id == user_id)
    watching = select(WatchHistory.channel_id).where(
        WatchHistory.user_id == user_id, WatchHistory.last_watched_at > utcnow() - WATCHING_NOW
    )
    out = set((await db.execute(blocked)).scalars())
    out.update((await db.execute(watching)).scalars())
    return out


async def popular_live(
    db: AsyncSession, *, language: str | None = None, limit: int = 20, exclude_for: str | None = None
) -> list[Recommendation]:
    """Anonymous (or seedless) viewers: the most watched live channels in their language."""
    excluded: set[str] = set()
    if exclude_for:
        followed = select(Follow.channel_id).where(Follow.user_id == exclude_for)
        excluded = await _blocked_and_watching(db, exclude_for) | {exclude_for}
        excluded |= set((await db.execute(followed)).scalars())
    stmt = select(Stream.user_id).where(Stream.status.in_(LIVE)).order_by(Stream.viewer_count.desc(), Stream.id)
    ids: list[str] = []
    if language:
        ids = list((await db.execute(stmt.where(Stream.language == language).limit(limit + len(excluded)))).scalars())
    if len(ids) < limit:
        more = (await db.execute(stmt.limit(limit + len(excluded) + len(ids)))).scalars()
        ids += [i for i in more if i not in ids]
    ids = [i for i in ids if i not in excluded][:limit]
    info = await _live_info(db, ids)
    out = []
    for cid in ids:
        if cid in info:
            lang = info[cid][1].language
            reason = f"popular in your language ({lang})" if language and lang == language else "popular now"
            stream = info[cid][2]
            out.append(_make(info[cid], reason, float(stream.viewer_count if stream is not None else 0)))
    return out


async def block(db: AsyncSession, user_id: str, target_id: str) -> bool:
    exists = (
        await db.execute(select(UserBlock.id).where(UserBlock.user_id == user_id, UserBlock.target_id == target_id))
    ).scalar_one_or_none()
    if exists is not None or user_id == target_id:
        return False
    await db.execute(insert(UserBlock).values(user_id=user_id, target_id=target_id, created_at=utcnow()))
    return True


async def unblock(db: AsyncSession, user_id: str, target_id: str) -> bool:
    result = await db.execute(delete(UserBlock).where(UserBlock.user_id == user_id, UserBlock.target_id == target_id))
    return bool(getattr(result, "rowcount", 0))
