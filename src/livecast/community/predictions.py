"""Predictions: viewers wager channel points on one of 2-10 outcomes; winners split the pool.

Lifecycle ACTIVE -> LOCKED -> RESOLVED, or CANCELED from ACTIVE or LOCKED (every stake
refunded). Each bet bumps ``predictions.version`` under ``status = ACTIVE AND locks_at > now``:
that write both checks the window and takes the prediction's row lock, so lock, resolve and
cancel (conditional updates of the same row) are ordered against every bet, and settlement
reads a set of bets that can no longer grow.

Settlement is exact (:func:`payouts`): each winner gets ``floor(pool * stake / winning_stakes)``
and the few points the floors leave over go one each to the winners with the largest
remainders, so the payouts sum to the pool, no more and no less. When nobody picked the
winning outcome everybody is refunded (Twitch would let those points vanish; here no point is
ever lost).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.api.eventsub.catalog import timestamp
from livecast.community import points
from livecast.community.events import people, users
from livecast.community.models import (
    P_ACTIVE,
    P_CANCELED,
    P_LOCKED,
    P_RESOLVED,
    Prediction,
    PredictionBet,
    PredictionOutcome,
)
from livecast.community.points import CommunityError, Outbox
from livecast.store.base import utcnow

MIN_WINDOW, MAX_WINDOW = 30, 1800
MAX_BET = 250_000
TOP_PREDICTORS = 10


def payouts(winners: Sequence[tuple[str, int, int]], pool: int) -> dict[str, int]:
    """Split ``pool`` among ``winners`` ``(user, stake, seq)`` in proportion to their stakes.

    Largest-remainder rounding; ties go to the earlier bet (``seq``), then the user id, so the
    result is deterministic. Every winner gets at least their stake back when ``pool`` is at
    least the winners' stakes (it always is: the pool includes them).
    """
    total = sum(stake for _, stake, _ in winners)
    if total <= 0 or pool <= 0:
        return {}
    shares = {user: pool * stake // total for user, stake, _ in winners}
    left = pool - sum(shares.values())
    order = sorted(winners, key=lambda w: (-(pool * w[1] % total), w[2], w[0]))
    for user, _, _ in order[:left]:
        shares[user] += 1
    return shares


def _color(position: int, count: int) -> str:
    """Twitch colours: BLUE and PINK for a two-outcome prediction, BLUE for all beyond that."""
    return "PINK" if count == 2 and position == 1 else "BLUE"


async def create(db: AsyncSession, out: Outbox, *, channel_id: str, title: str, outcomes: Sequence[str],
                 window: int) -> Prediction:
    title = points.text(title, "title", 1, 45)
    if not 2 <= len(outcomes) <= 10:
        raise CommunityError("bad_outcomes", "A prediction needs 2 to 10 outcomes")
    clean = [points.text(o, "Each outcome's title", 1, 25) for o in outcomes]
    if not MIN_WINDOW <= window <= MAX_WINDOW:
        raise CommunityError("bad_window", f"prediction_window must be {MIN_WINDOW} to {MAX_WINDOW} seconds")
    await expire(db, Outbox(), channel_id=channel_id)  # a lapsed window should not block a new one
    running = await db.scalar(select(Prediction.id).where(Prediction.channel_id == channel_id,
                                                          Prediction.status.in_((P_ACTIVE, P_LOCKED))))
    if running is not None:
        raise CommunityError("already_active", "The broadcaster already has a prediction that is running")
    now = utcnow()
    pred = Prediction(id=str(uuid.uuid4()), channel_id=channel_id, title=title, status=P_ACTIVE,
                      prediction_window=window, created_at=now, locks_at=now + dt.timedelta(seconds=window))
    db.add(pred)
    await db.flush()
    for i, text in enumerate(clean):
        db.add(PredictionOutcome(id=str(uuid.uuid4()), prediction_id=pred.id, position=i, title=text,
                                 color=_color(i, len(clean)), users=0, channel_points=0))
    await db.flush()
    doc = await event_doc(db, pred, stage="begin")
    out.add("channel.prediction.begin", channel_id, doc)
    return pred


async def get(db: AsyncSession, prediction_id: str, channel_id: str | None = None) -> Prediction:
    pred = await db.get(Prediction, prediction_id, populate_existing=True)
    if pred is None or (channel_id is not None and pred.channel_id != channel_id):
        raise CommunityError("not_found", "The prediction was not found", 404)
    return pred


async def bet(db: AsyncSession, out: Outbox, *, prediction_id: str, user_id: str, outcome_id: str,
              amount: int, channel_id: str | None = None) -> PredictionBet:
    """Wager ``amount`` points; a second bet by the same viewer must pick the same outcome."""
    if amount < 1:
        raise CommunityError("bad_amount", "Wager at least 1 channel point")
    now = utcnow()
    # One statement checks the window, takes the row lock and says whose channel it is.
    taken = (await db.execute(
        update(Prediction).where(Prediction.id == prediction_id, Prediction.status == P_ACTIVE,
                                 Prediction.locks_at > now)
        .values(version=Prediction.version + 1).returning(Prediction.channel_id, Prediction.version)
        .execution_options(synchronize_session=False))).first()
    if taken is None:
        await get(db, prediction_id)
        raise CommunityError("prediction_closed", "The prediction is no longer taking bets", 409)
    owner, seq = str(taken.channel_id), int(taken.version)
    if channel_id is not None and owner != channel_id:
        raise CommunityError("not_found", "The prediction was not found", 404)
    if owner == user_id:
        raise CommunityError("own_channel", "Broadcasters cannot bet on their own predictions", 403)
    stake = await db.get(PredictionBet, (prediction_id, user_id), populate_existing=True)
    if stake is not None and stake.outcome_id != outcome_id:
        raise CommunityError("other_outcome", "You already predicted another outcome", 409)
    if (stake.points if stake else 0) + amount > MAX_BET:
        raise CommunityError("bad_amount", f"At most {MAX_BET} channel points per prediction")
    counted = await db.execute(
        update(PredictionOutcome).where(PredictionOutcome.id == outcome_id,
                                        PredictionOutcome.prediction_id == prediction_id)
        .values(channel_points=PredictionOutcome.channel_points + amount,
                users=PredictionOutcome.users + (1 if stake is None else 0))
        .execution_options(synchronize_session=False))
    if counted.rowcount != 1:  # type: ignore[attr-defined]
        raise CommunityError("bad_outcome", "No such outcome in this prediction", 400)
    await points.debit(db, owner, user_id, amount, "bet", ref=prediction_id, flush=False)
    if stake is None:
        stake = PredictionBet(prediction_id=prediction_id, user_id=user_id, outcome_id=outcome_id, points=amount,
                              won=0, seq=seq)
        db.add(stake)
    else:
        stake.points += amount
    await db.flush()
    out.progress.append(("prediction", prediction_id))
    out.add("", owner, {"type": "balance", "user_id": user_id})
    return stake


async def _transition(db: AsyncSession, pred: Prediction, to: str, allowed: tuple[str, ...],
                      **values: Any) -> bool:
    done = await db.execute(update(Prediction).where(Prediction.id == pred.id, Prediction.status.in_(allowed))
                            .values(status=to, version=Prediction.version + 1, **values)
                            .execution_options(synchronize_session=False))
    await db.refresh(pred)
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


async def lock(db: AsyncSession, out: Outbox, *, channel_id: str, prediction_id: str) -> Prediction:
    pred = await get(db, prediction_id, channel_id)
    if not await _transition(db, pred, P_LOCKED, (P_ACTIVE,), locked_at=utcnow()):
        raise CommunityError("bad_status", f"A {pred.status} prediction cannot be locked")
    out.add("channel.prediction.lock", channel_id, await event_doc(db, pred, stage="lock"))
    return pred


async def resolve(db: AsyncSession, out: Outbox, *, channel_id: str, prediction_id: str,
                  winning_outcome_id: str) -> Prediction:
    pred = await get(db, prediction_id, channel_id)
    winner = await db.get(PredictionOutcome, winning_outcome_id)
    if winner is None or winner.prediction_id != pred.id:
        raise CommunityError("bad_outcome", "winning_outcome_id is not an outcome of this prediction")
    now = utcnow()
    if not await _transition(db, pred, P_RESOLVED, (P_ACTIVE, P_LOCKED), winning_outcome_id=winning_outcome_id,
                             ended_at=now, locked_at=pred.locked_at or now):
        raise CommunityError("bad_status", f"A {pred.status} prediction cannot be resolved")
    stakes = (await db.execute(select(PredictionBet.user_id, PredictionBet.outcome_id, PredictionBet.points,
                                      PredictionBet.seq).where(PredictionBet.prediction_id == pred.id))).all()
    pool = sum(int(s.points) for s in stakes)
    winners = [(s.user_id, int(s.points), int(s.seq)) for s in stakes if s.outcome_id == winning_outcome_id]
    if winners:
        shares = payouts(winners, pool)
        kind = "payout"
    else:  # nobody picked the winner: refund rather than destroy the points
        shares = {s.user_id: int(s.points) for s in stakes}
        kind = "refund"
    await _pay(db, pred, shares, kind)
    out.add("channel.prediction.end", channel_id, await event_doc(db, pred, stage="end"))
    return pred


async def cancel(db: AsyncSession, out: Outbox, *, channel_id: str, prediction_id: str) -> Prediction:
    pred = await get(db, prediction_id, channel_id)
    if not await _transition(db, pred, P_CANCELED, (P_ACTIVE, P_LOCKED), ended_at=utcnow()):
        raise CommunityError("bad_status", f"A {pred.status} prediction cannot be canceled")
    stakes = (await db.execute(select(PredictionBet.user_id, PredictionBet.points)
                               .where(PredictionBet.prediction_id == pred.id))).all()
    await _pay(db, pred, {s.user_id: int(s.points) for s in stakes}, "refund", record_won=False)
    out.add("channel.prediction.end", channel_id, await event_doc(db, pred, stage="end"))
    return pred


async def _pay(db: AsyncSession, pred: Prediction, shares: dict[str, int], kind: str, *,
               record_won: bool = True) -> None:
    rows = [(user, amount, f"{kind}:{pred.id}:{user}") for user, amount in sorted(shares.items())]
    await points.credit_many(db, pred.channel_id, rows, kind, ref=pred.id)
    if record_won and kind == "payout" and shares:
        await db.execute(update(PredictionBet), [
            {"prediction_id": pred.id, "user_id": user, "won": amount} for user, amount in shares.items()
        ])


async def expire(db: AsyncSession, out: Outbox, *, channel_id: str | None = None,
                 now: dt.datetime | None = None) -> list[Prediction]:
    """Lock the predictions whose window has passed (the worker's tick; reads call it too)."""
    now = now or utcnow()
    stmt = select(Prediction).where(Prediction.status == P_ACTIVE, Prediction.locks_at <= now)
    if channel_id is not None:
        stmt = stmt.where(Prediction.channel_id == channel_id)
    locked = []
    for pred in (await db.execute(stmt.limit(100))).scalars().all():
        if await _transition(db, pred, P_LOCKED, (P_ACTIVE,), locked_at=pred.locks_at):
            out.add("channel.prediction.lock", pred.channel_id, await event_doc(db, pred, stage="lock"))
            locked.append(pred)
    return locked


async def announce_progress(db: AsyncSession, out: Outbox, prediction_id: str) -> None:
    pred = await db.get(Prediction, prediction_id)
    if pred is not None and pred.status == P_ACTIVE:
        out.add("channel.prediction.progress", pred.channel_id, await event_doc(db, pred, stage="progress"))


# Rendering -----------------------------------------------------------------------------------

async def _outcomes(db: AsyncSession, pred: Prediction) -> list[PredictionOutcome]:
    stmt = select(PredictionOutcome).where(PredictionOutcome.prediction_id == pred.id).order_by(
        PredictionOutcome.position).execution_options(populate_existing=True)
    return list((await db.execute(stmt)).scalars().all())


async def _top(db: AsyncSession, outcome_id: str) -> list[PredictionBet]:
    stmt = (select(PredictionBet).where(PredictionBet.outcome_id == outcome_id)
            .order_by(PredictionBet.points.desc(), PredictionBet.seq).limit(TOP_PREDICTORS)
            .execution_options(populate_existing=True))
    return list((await db.execute(stmt)).scalars().all())


async def _rendered(db: AsyncSession, pred: Prediction) -> tuple[list[PredictionOutcome],
                                                                  dict[str, list[PredictionBet]], dict[str, Any]]:
    outcomes = await _outcomes(db, pred)
    tops = {o.id: await _top(db, o.id) for o in outcomes}
    who = await users(db, {pred.channel_id} | {b.user_id for bets in tops.values() for b in bets})
    return outcomes, tops, who


def _won(pred: Prediction, bet_row: PredictionBet) -> int | None:
    if pred.status == P_RESOLVED:
        return int(bet_row.won)
    if pred.status == P_CANCELED:
        return 0
    return None


async def helix_doc(db: AsyncSession, pred: Prediction) -> dict[str, Any]:
    """The Helix ``Prediction`` object."""
    outcomes, tops, who = await _rendered(db, pred)
    owner = who.get(pred.channel_id)
    return {
        "id": pred.id, **{k.replace("broadcaster_user", "broadcaster"): v
                          for k, v in people("broadcaster_user", owner, pred.channel_id).items()},
        "title": pred.title, "winning_outcome_id": pred.winning_outcome_id,
        "outcomes": [{
            "id": o.id, "title": o.title, "users": int(o.users), "channel_points": int(o.channel_points),
            "top_predictors": [{**{k: v for k, v in people("user", who.get(b.user_id), b.user_id).items()},
                                "channel_points_used": int(b.points), "channel_points_won": _won(pred, b) or 0}
                               for b in tops[o.id]] or None,
            "color": o.color,
        } for o in outcomes],
        "prediction_window": pred.prediction_window, "status": pred.status,
        "created_at": _rfc3339(pred.created_at), "ended_at": _rfc3339(pred.ended_at) if pred.ended_at else None,
        "locked_at": _rfc3339(pred.locked_at) if pred.locked_at else None,
    }


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def event_doc(db: AsyncSession, pred: Prediction, *, stage: str) -> dict[str, Any]:
    """EventSub ``channel.prediction.<stage>`` event (begin, progress, lock, end)."""
    outcomes, tops, who = await _rendered(db, pred)
    doc: dict[str, Any] = {"id": pred.id, **people("broadcaster_user", who.get(pred.channel_id), pred.channel_id),
                           "title": pred.title, "started_at": timestamp(pred.created_at)}
    if stage == "begin":
        doc["outcomes"] = [{"id": o.id, "title": o.title, "color": o.color.lower()} for o in outcomes]
    else:
        doc["outcomes"] = [{
            "id": o.id, "title": o.title, "color": o.color.lower(), "users": int(o.users),
            "channel_points": int(o.channel_points),
            "top_predictors": [{**people("user", who.get(b.user_id), b.user_id),
                                "channel_points_won": _won(pred, b), "channel_points_used": int(b.points)}
                               for b in tops[o.id]],
        } for o in outcomes]
    if stage in ("begin", "progress"):
        doc["locks_at"] = timestamp(pred.locks_at)
    elif stage == "lock":
        doc["locked_at"] = timestamp(pred.locked_at or utcnow())
    else:
        doc["winning_outcome_id"] = pred.winning_outcome_id
        doc["status"] = pred.status.lower()
        doc["ended_at"] = timestamp(pred.ended_at or utcnow())
    return doc


async def pool(db: AsyncSession, prediction_id: str) -> int:
    return int(await db.scalar(select(func.coalesce(func.sum(PredictionBet.points), 0))
                               .where(PredictionBet.prediction_id == prediction_id)) or 0)
