"""What the channel page's widgets show: a public part, rendered once per change, and a
viewer's own part (balance, stake, ballot), three primary-key reads.

The public part (rewards, the latest prediction and poll) is the same for every viewer, so when
it changes (a prediction begins, locks or ends, a reward is redeemed or edited) it is rendered
once, after the commit, and pushed to every open page in the widget event itself; pages do not
all come back for it. Bets and votes only move totals, which their progress events carry.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.community import points, polls, predictions, rewards
from livecast.community.models import POLL_ARCHIVED, Poll, PollBallot, Prediction, PredictionBet

# Topics whose change alters the public part (progress and balance events do not).
STATE_TOPICS = frozenset({
    "channel.prediction.begin", "channel.prediction.lock", "channel.prediction.end",
    "channel.poll.begin", "channel.poll.end", "channel.channel_points_custom_reward_redemption.add",
    "channel.channel_points_custom_reward_redemption.update", "rewards",
})


async def _latest(db: AsyncSession, channel_id: str) -> tuple[Prediction | None, Poll | None]:
    pred = (await db.execute(select(Prediction).where(Prediction.channel_id == channel_id)
                             .order_by(Prediction.created_at.desc()).limit(1))).scalar_one_or_none()
    poll = (await db.execute(select(Poll).where(Poll.channel_id == channel_id, Poll.status != POLL_ARCHIVED)
                             .order_by(Poll.started_at.desc()).limit(1))).scalar_one_or_none()
    return pred, poll


async def public(db: AsyncSession, channel_id: str) -> dict[str, Any]:
    listed = [r for r in await rewards.list_rewards(db, channel_id) if r.is_enabled]
    pred, poll = await _latest(db, channel_id)
    doc: dict[str, Any] = {"channel_id": channel_id, "rewards": [await rewards.helix_doc(db, r) for r in listed],
                           "prediction": None, "poll": None}
    if pred is not None:
        doc["prediction"] = await predictions.helix_doc(db, pred)
        doc["prediction"]["locks_at"] = pred.locks_at.isoformat()
    if poll is not None:
        doc["poll"] = await polls.helix_doc(db, poll)
        doc["poll"]["ends_at"] = poll.ends_at.isoformat()
    return doc


async def personal(db: AsyncSession, channel_id: str, viewer_id: str | None, prediction_id: str | None,
                   poll_id: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"viewer_id": viewer_id, "balance": None, "my_bet": None, "my_ballot": None}
    if viewer_id is None:
        return doc
    doc["balance"] = await points.balance(db, channel_id, viewer_id)
    if prediction_id is not None:
        stake = await db.get(PredictionBet, (prediction_id, viewer_id))
        if stake is not None:
            doc["my_bet"] = {"prediction_id": prediction_id, "outcome_id": stake.outcome_id,
                             "points": int(stake.points), "won": int(stake.won)}
    if poll_id is not None:
        ballot = await db.get(PollBallot, (poll_id, viewer_id))
        if ballot is not None:
            doc["my_ballot"] = {"poll_id": poll_id, "choice_id": ballot.choice_id,
                                "paid_votes": int(ballot.paid_votes)}
    return doc


async def latest_ids(db: AsyncSession, channel_id: str) -> tuple[str | None, str | None]:
    pred, poll = await _latest(db, channel_id)
    return (pred.id if pred else None), (poll.id if poll else None)
