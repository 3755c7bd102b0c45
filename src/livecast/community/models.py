"""Channel points, rewards, predictions and polls.

Points are integers that move, never appear: every change of a balance is one row of
``points_transactions`` whose signed ``amount`` the balance absorbs in the same transaction, so
``sum(balances) == sum(transactions)`` always holds and an audit can prove where each point went.
Each transaction has a unique ``idem_key``; earning by watching or chatting uses keys derived
from the minute, so a heartbeat or chat event seen by two workers credits once.

Spending is a conditional ``UPDATE ... SET balance = balance - cost WHERE balance >= cost``: the
database, not the application, decides whether the points are still there, so two concurrent
spends cannot both succeed on PostgreSQL (row lock, re-checked predicate) or SQLite (one writer).
Predictions and polls carry a ``version`` column that every bet or vote bumps under a condition
on ``status``: that write takes the row's lock, which orders bets against lock/resolve/cancel.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from livecast.store.base import Base, utcnow

# Redemption statuses, as Helix spells them.
UNFULFILLED = "UNFULFILLED"
FULFILLED = "FULFILLED"
CANCELED = "CANCELED"

# Prediction statuses.
P_ACTIVE = "ACTIVE"
P_LOCKED = "LOCKED"
P_RESOLVED = "RESOLVED"
P_CANCELED = "CANCELED"

# Poll statuses.
POLL_ACTIVE = "ACTIVE"
POLL_COMPLETED = "COMPLETED"
POLL_TERMINATED = "TERMINATED"
POLL_ARCHIVED = "ARCHIVED"


class PointsBalance(Base):
    __tablename__ = "points_balances"

    channel_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PointsTransaction(Base):
    """One signed movement of a viewer's balance: earn, spend, refund, wager, payout."""

    __tablename__ = "points_transactions"
    __table_args__ = (Index("ix_points_transactions_channel_user", "channel_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idem_key: Mapped[str] = mapped_column(String(160), unique=True)
    channel_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    amount: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))  # watch | chat | redeem | refund | bet | payout | vote | grant
    ref: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CustomReward(Base):
    __tablename__ = "custom_rewards"
    __table_args__ = (UniqueConstraint("channel_id", "title", name="uq_custom_rewards_channel_title"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # a UUID, as on Twitch
    channel_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(String(64), default="")  # who may manage it over Helix
    title: Mapped[str] = mapped_column(String(45))
    prompt: Mapped[str] = mapped_column(String(200), default="")
    cost: Mapped[int] = mapped_column(BigInteger)
    background_color: Mapped[str] = mapped_column(String(7), default="#9147FF")
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    is_paused: Mapped[bool] = mapped_column(Boolean, default=False)
    is_user_input_required: Mapped[bool] = mapped_column(Boolean, default=False)
    max_per_stream: Mapped[int] = mapped_column(Integer, default=0)  # 0: no limit
    max_per_user_per_stream: Mapped[int] = mapped_column(Integer, default=0)
    global_cooldown_seconds: Mapped[int] = mapped_column(Integer, default=0)
    skip_queue: Mapped[bool] = mapped_column(Boolean, default=False)
    cooldown_expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=0)  # bumped by each redemption (row lock)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Redemption(Base):
    __tablename__ = "reward_redemptions"
    __table_args__ = (
        Index("ix_reward_redemptions_reward_stream_user", "reward_id", "stream_key", "user_id"),
        Index("ix_reward_redemptions_reward_status", "reward_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    channel_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    reward_id: Mapped[str] = mapped_column(ForeignKey("custom_rewards.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    user_input: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[str] = mapped_column(String(16), default=UNFULFILLED)
    cost: Mapped[int] = mapped_column(BigInteger)  # what was paid (the reward's cost may change later)
    stream_key: Mapped[str] = mapped_column(String(32), default="")
    redeemed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)  # redemption order for OLDEST/NEWEST paging


class Prediction(Base):
    __tablename__ = "predictions"
    # At most one running prediction per channel, enforced by the database even when two tools
    # start one at the same moment (a partial unique index; both backends support them).
    __table_args__ = (Index("uq_predictions_running", "channel_id", unique=True,
                            sqlite_where=text("status IN ('ACTIVE', 'LOCKED')"),
                            postgresql_where=text("status IN ('ACTIVE', 'LOCKED')")),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    channel_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(45))
    status: Mapped[str] = mapped_column(String(16), default=P_ACTIVE, index=True)
    prediction_window: Mapped[int] = mapped_column(Integer)
    winning_outcome_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    locks_at: Mapped[dt.datetime] = mapped_column(index=True)
    locked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class PredictionOutcome(Base):
    __tablename__ = "prediction_outcomes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    prediction_id: Mapped[str] = mapped_column(ForeignKey("predictions.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(25))
    color: Mapped[str] = mapped_column(String(8))
    users: Mapped[int] = mapped_column(Integer, default=0)
    channel_points: Mapped[int] = mapped_column(BigInteger, default=0)


class PredictionBet(Base):
    """One viewer's stake in one prediction (on one outcome; topping up adds to it)."""

    __tablename__ = "prediction_bets"
    __table_args__ = (Index("ix_prediction_bets_outcome_points", "outcome_id", "points"),)

    prediction_id: Mapped[str] = mapped_column(ForeignKey("predictions.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    outcome_id: Mapped[str] = mapped_column(String(36))
    points: Mapped[int] = mapped_column(BigInteger)
    won: Mapped[int] = mapped_column(BigInteger, default=0)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)  # when the first stake landed (tie-break)


class Poll(Base):
    __tablename__ = "polls"
    __table_args__ = (Index("uq_polls_running", "channel_id", unique=True, sqlite_where=text("status = 'ACTIVE'"),
                            postgresql_where=text("status = 'ACTIVE'")),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    channel_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(60))
    status: Mapped[str] = mapped_column(String(16), default=POLL_ACTIVE, index=True)
    duration: Mapped[int] = mapped_column(Integer)
    channel_points_voting_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    channel_points_per_vote: Mapped[int] = mapped_column(BigInteger, default=0)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ends_at: Mapped[dt.datetime] = mapped_column(index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class PollChoice(Base):
    __tablename__ = "poll_choices"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    poll_id: Mapped[str] = mapped_column(ForeignKey("polls.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(25))
    votes: Mapped[int] = mapped_column(BigInteger, default=0)
    channel_points_votes: Mapped[int] = mapped_column(BigInteger, default=0)


class PollBallot(Base):
    """A viewer's participation in a poll: whether the free vote is used, and votes bought."""

    __tablename__ = "poll_ballots"

    poll_id: Mapped[str] = mapped_column(ForeignKey("polls.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    choice_id: Mapped[str] = mapped_column(String(36))  # the free vote's choice
    paid_votes: Mapped[int] = mapped_column(BigInteger, default=0)
