"""Channel-point balances: earning, spending, crediting, and the transaction helper.

Every function that changes a balance writes the matching :class:`PointsTransaction` in the
same database transaction (see models.py for the invariant). Earning rates follow Twitch's
defaults where Twitch has them: 10 points per 5 minutes watched (2 per counted minute here,
because the heartbeat is counted per minute), and the subscriber multipliers 1.2x / 1.4x / 2x
for tiers 1 / 2 / 3. Chatting earns :data:`CHAT_POINTS` at most once per :data:`CHAT_SLOT_S`.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy import insert as sa_insert
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.community.models import PointsBalance, PointsTransaction
from livecast.ingest.models import Stream
from livecast.platform import Platform
from livecast.store.base import utcnow
from livecast.store.db import upsert_insert

T = TypeVar("T")

WATCH_POINTS_PER_MINUTE = 2
CHAT_POINTS = 5
CHAT_SLOT_S = 300
MULTIPLIER_TENTHS = {"1000": 12, "2000": 14, "3000": 20}
LIVE = ("live", "reconnecting")


class CommunityError(Exception):
    """A refusal with a stable ``code`` (for the web app) and the HTTP status it maps to."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass
class Outbox:
    """Events collected inside a transaction, published only after it commits."""

    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (topic, channel_id, payload)
    progress: list[tuple[str, str]] = field(default_factory=list)  # (kind, id) whose progress to announce

    def add(self, topic: str, channel_id: str, payload: dict[str, Any]) -> None:
        self.events.append((topic, channel_id, payload))


async def run(platform: Platform, fn: Callable[[AsyncSession, Outbox], Awaitable[T]], attempts: int = 12) -> T:
    """One transaction around ``fn``, retried when it lost a race, then publish its events.

    SQLite answers "database is locked" when its writer lock stays busy past the timeout and
    a unique key can be taken by a concurrent unit; both roll back cleanly and are retried
    from the start, where the retry sees the winner's rows.
    """
    from livecast.community import events

    for attempt in range(attempts):
        out = Outbox()
        try:
            async with platform.db.session() as db:
                result = await fn(db, out)
        except (IntegrityError, OperationalError) as exc:
            retry = isinstance(exc, IntegrityError) or "locked" in str(exc.orig) or "deadlock" in str(exc.orig)
            if not retry or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.01 * (attempt + 1) * (1 + random.random()))
            continue
        await events.publish(platform, out)
        return result
    raise AssertionError("unreachable")


def text(value: str, field: str, low: int, high: int) -> str:
    """A stripped title or message of ``low``-``high`` characters; NUL is refused (PostgreSQL
    cannot store it in text, and no title needs it)."""
    value = value.strip()
    if not low <= len(value) <= high:
        raise CommunityError("bad_field", f"{field} must be {low} to {high} characters")
    if "\x00" in value:
        raise CommunityError("bad_field", f"{field} may not contain NUL characters")
    return value


async def balance(db: AsyncSession, channel_id: str, user_id: str) -> int:
    value = await db.scalar(select(PointsBalance.balance).where(PointsBalance.channel_id == channel_id,
                                                                PointsBalance.user_id == user_id))
    return int(value or 0)


async def credit(db: AsyncSession, channel_id: str, user_id: str, amount: int, kind: str, ref: str = "",
                 idem_key: str | None = None) -> None:
    """Add ``amount`` (>= 0) to a balance, creating it; a repeated ``idem_key`` raises IntegrityError."""
    await credit_many(db, channel_id, [(user_id, amount, idem_key or f"{kind}:{uuid.uuid4().hex}")], kind, ref)


async def credit_many(db: AsyncSession, channel_id: str, rows: Sequence[tuple[str, int, str]], kind: str,
                      ref: str = "") -> None:
    """Credit many viewers in two statements (a prediction's payout to thousands of winners)."""
    rows = [r for r in rows if r[1] > 0]
    if not rows:
        return
    now = utcnow()
    await db.execute(sa_insert(PointsTransaction), [
        {"idem_key": key, "channel_id": channel_id, "user_id": user, "amount": amount, "kind": kind,
         "ref": ref, "created_at": now} for user, amount, key in rows
    ])
    insert = upsert_insert(db)
    # One row per user: a viewer appearing twice would make the upsert touch a row twice.
    merged: dict[str, int] = {}
    for user, amount, _ in rows:
        merged[user] = merged.get(user, 0) + amount
    for chunk in _chunks(sorted(merged.items()), 500):
        stmt = insert(PointsBalance).values([
            {"channel_id": channel_id, "user_id": user, "balance": amount, "updated_at": now} for user, amount in chunk
        ])
        stmt = stmt.on_conflict_do_update(
            index_elements=["channel_id", "user_id"],
            set_={"balance": PointsBalance.balance + stmt.excluded.balance, "updated_at": now},
        )
        await db.execute(stmt)


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


async def debit(db: AsyncSession, channel_id: str, user_id: str, amount: int, kind: str, ref: str = "", *,
                flush: bool = True) -> None:
    """Take ``amount`` points or refuse: the WHERE clause is the check, so it cannot be raced."""
    if amount <= 0:
        return
    result = await db.execute(
        update(PointsBalance)
        .where(PointsBalance.channel_id == channel_id, PointsBalance.user_id == user_id,
               PointsBalance.balance >= amount)
        .values(balance=PointsBalance.balance - amount, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise CommunityError("insufficient_points", "Not enough channel points", 409)
    db.add(PointsTransaction(idem_key=f"{kind}:{uuid.uuid4().hex}", channel_id=channel_id, user_id=user_id,
                             amount=-amount, kind=kind, ref=ref))
    if flush:
        await db.flush()


async def multiplier_tenths(db: AsyncSession, channel_id: str, user_id: str) -> int:
    """10 for a viewer, more for a subscriber (by tier); subscriptions are an optional domain."""
    try:
        from livecast.subscriptions.service import is_subscriber
    except ImportError:
        return 10
    sub = await is_subscriber(db, channel_id, user_id)
    return MULTIPLIER_TENTHS.get(sub[0], 10) if sub else 10


async def live_stream_id(db: AsyncSession, channel_id: str) -> str | None:
    return await db.scalar(select(Stream.id).where(Stream.user_id == channel_id, Stream.status.in_(LIVE))
                           .order_by(Stream.started_at.desc()).limit(1))


async def current_stream_key(db: AsyncSession, channel_id: str) -> str:
    """The stream that per-stream limits count against: the live one, else the last one."""
    sid = await db.scalar(select(Stream.id).where(Stream.user_id == channel_id)
                          .order_by(Stream.started_at.desc()).limit(1))
    return sid or ""


async def earn(platform: Platform, channel_id: str, user_id: str, kind: str, slot: int, base: int) -> int:
    """Credit ``base`` (times the subscriber multiplier) once per ``(kind, slot)``; 0 if not earned.

    Only while the channel is live, never in one's own channel. The idempotency key makes a
    replayed event (two workers, a retried delivery) a no-op rather than a second credit.
    """
    if channel_id == user_id:
        return 0

    async def apply(db: AsyncSession, out: Outbox) -> int:
        if await live_stream_id(db, channel_id) is None:
            return 0
        key = f"{kind}:{channel_id}:{user_id}:{slot}"
        if await db.scalar(select(PointsTransaction.id).where(PointsTransaction.idem_key == key)) is not None:
            return 0
        amount = base * await multiplier_tenths(db, channel_id, user_id) // 10
        await credit(db, channel_id, user_id, amount, kind, idem_key=key)
        out.add("", channel_id, {"type": "balance", "user_id": user_id})
        return amount

    try:
        return await run(platform, apply, attempts=3)
    except IntegrityError:  # a concurrent worker credited the same slot first
        return 0


async def totals(db: AsyncSession, channel_id: str | None = None) -> tuple[int, int]:
    """(sum of balances, sum of transactions): equal unless a bug created or lost points."""
    b = select(func.coalesce(func.sum(PointsBalance.balance), 0))
    t = select(func.coalesce(func.sum(PointsTransaction.amount), 0))
    if channel_id is not None:
        b = b.where(PointsBalance.channel_id == channel_id)
        t = t.where(PointsTransaction.channel_id == channel_id)
    return int(await db.scalar(b) or 0), int(await db.scalar(t) or 0)
