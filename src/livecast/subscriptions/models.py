"""Subscription tables: channel terms, subscriptions, charges, provider events, the ledger, jobs.

Money is always an integer count of the currency's minor unit (cents), never a float. Three
unique keys make every provider event land exactly once, even when deliveries race:
``(provider, event_id)`` on provider events, ``(provider, provider_ref)`` on charges and
``idem_key`` on ledger transactions. ``(channel_id, user_id)`` is unique on subscriptions: a
viewer has one subscription row per channel that lives through lapses and re-subscriptions, so
cumulative months survive and a concurrent duplicate purchase cannot create a second row.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from livecast.store.base import Base, new_id, utcnow

TIERS = ("1000", "2000", "3000")

ACTIVE = "active"
CANCELLED = "cancelled"  # will not renew; benefits continue until the period ends
EXPIRED = "expired"
REFUNDED = "refunded"
CHARGED_BACK = "charged_back"
ENTITLED_STATES = (ACTIVE, CANCELLED)


class ChannelTerms(Base):
    """A channel's override of the configured prices and revenue share (partners' contracts)."""

    __tablename__ = "sub_channel_terms"

    channel_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    prices: Mapped[dict[str, int] | None] = mapped_column(JSON, nullable=True)  # tier -> minor units
    share_percent: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("channel_id", "user_id", name="uq_subscriptions_channel_user"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    channel_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    tier: Mapped[str] = mapped_column(String(8))
    next_tier: Mapped[str | None] = mapped_column(String(8), nullable=True)  # applied at renewal
    state: Mapped[str] = mapped_column(String(16), index=True)
    provider: Mapped[str] = mapped_column(String(16), default="sandbox")
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=True)
    is_gift: Mapped[bool] = mapped_column(Boolean, default=False)
    gifter_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    gift_anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    cumulative_months: Mapped[int] = mapped_column(Integer, default=0)
    streak_months: Mapped[int] = mapped_column(Integer, default=0)
    resub_share_available: Mapped[bool] = mapped_column(Boolean, default=False)
    charge_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # pays the current period
    # Where a provider can charge the next period off-session (Stripe: cus_..., pm_...); empty for sandbox
    # and gifts. Saved from the purchase so renewals need no viewer present.
    provider_customer: Mapped[str] = mapped_column(String(255), default="", server_default="")
    provider_payment_method: Mapped[str] = mapped_column(String(255), default="", server_default="")
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    current_period_start: Mapped[dt.datetime] = mapped_column(default=utcnow)
    current_period_end: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Charge(Base):
    """One payment: a purchase, a renewal, a gift or a community gift of ``quantity`` subs."""

    __tablename__ = "sub_charges"
    __table_args__ = (UniqueConstraint("provider", "provider_ref", name="uq_sub_charges_provider_ref"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    provider: Mapped[str] = mapped_column(String(16))
    provider_ref: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # subscribe | renewal | gift | community_gift
    channel_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    payer_id: Mapped[str] = mapped_column(String(32))
    tier: Mapped[str] = mapped_column(String(8))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    platform_fee: Mapped[int] = mapped_column(BigInteger)
    creator_share: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="paid")  # paid | refunded | charged_back
    # How much of ``amount`` partial refunds gave back so far (the provider's running total); the charge
    # stays ``paid`` (benefits kept) until a full refund or a chargeback reverses the rest.
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ProviderEvent(Base):
    """A webhook event seen once; ``status`` is ``deferred`` while it waits for its charge."""

    __tablename__ = "sub_provider_events"
    __table_args__ = (UniqueConstraint("provider", "event_id", name="uq_sub_provider_events_event"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str] = mapped_column(String(128), default="", index=True)
    status: Mapped[str] = mapped_column(String(16), default="processed")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LedgerTransaction(Base):
    __tablename__ = "ledger_transactions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    idem_key: Mapped[str] = mapped_column(String(160), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # charge | refund | chargeback
    charge_id: Mapped[str] = mapped_column(String(32), index=True)
    channel_id: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class LedgerEntry(Base):
    """One leg: debits positive, credits negative; a transaction's legs sum to zero per currency."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transaction_id: Mapped[str] = mapped_column(ForeignKey("ledger_transactions.id", ondelete="CASCADE"),
                                                index=True)
    account: Mapped[str] = mapped_column(String(64), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))


class Job(Base):
    """A durable scheduled job; claimed with a lease so exactly one worker runs it."""

    __tablename__ = "sub_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    key: Mapped[str] = mapped_column(String(160), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # period_end
    subscription_id: Mapped[str] = mapped_column(String(32), index=True)
    run_at: Mapped[dt.datetime] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    locked_by: Mapped[str] = mapped_column(String(64), default="")
    locked_until: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    finished_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
