"""Applying provider events exactly once, whatever order and however often they arrive.

One transaction per delivery: insert the ``(provider, event id)`` row first (a duplicate
inserts nothing and stops there; on PostgreSQL a concurrent duplicate waits on the unique
index until the first commits, then sees the conflict), then take a transaction-scoped lock
on the payment reference so a checkout and its refund never run side by side, then apply.

Out of order: a refund or dispute whose charge is unknown yet is stored as ``deferred``; the
checkout that creates the charge applies the deferred events for its payment in the same
transaction. A malformed event or a wrong price raises :class:`WebhookError` and rolls back,
recording nothing, so the provider's retry is processed again once the cause is fixed.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from livecast import metrics
from livecast.logs import event as log_event
from livecast.platform import Platform
from livecast.subscriptions import service
from livecast.subscriptions.events import Outbox
from livecast.subscriptions.models import ProviderEvent
from livecast.subscriptions.pricing import PricingError
from livecast.subscriptions.providers.stripe import StripeEvent

log = logging.getLogger("livecast.subscriptions")

# async payment methods complete the session later, with async_payment_succeeded
CHECKOUTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
REVERSALS = {"charge.refunded": "refund", "charge.dispute.created": "chargeback"}


class WebhookError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _insert_ignore(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


async def _claim(db: AsyncSession, provider: str, ev: StripeEvent) -> ProviderEvent | None:
    dialect = db.get_bind().dialect.name
    stmt = _insert_ignore(dialect)(ProviderEvent).values(
        provider=provider, event_id=ev.id, type=ev.type, ref=ev.ref, status="processing",
        payload={"type": ev.type, "object": ev.obj}, received_at=service.utcnow(),
    ).on_conflict_do_nothing().returning(ProviderEvent.id)
    row = (await db.execute(stmt)).first()
    if row is None:
        return None
    if dialect == "postgresql" and ev.ref:
        await db.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"{provider}:{ev.ref}"})
    return await db.get(ProviderEvent, row[0])


async def _apply_checkout(db: AsyncSession, out: Outbox, platform: Platform, provider: str,
                          ev: StripeEvent) -> str:
    settings = platform.settings
    obj = ev.obj
    if obj.get("payment_status") not in ("paid", "no_payment_required"):
        return "ignored"
    meta = ev.metadata
    kind = meta.get("livecast_kind", "")
    try:
        quantity = int(meta.get("quantity", "1"))
        amount = int(obj["amount_total"])
    except (KeyError, TypeError, ValueError):
        raise WebhookError("checkout session without a valid amount_total or quantity") from None
    payment = service.Payment(provider, ev.ref, amount, str(obj.get("currency", "")) or None)
    channel_id, tier, payer = meta.get("channel_id", ""), meta.get("tier", ""), meta.get("payer_id", "")
    anonymous = meta.get("anonymous") == "1"
    try:
        if kind == "subscribe":
            await service.subscribe(db, out, settings, channel_id=channel_id, user_id=payer, tier=tier,
                                    payment=payment)
        elif kind == "gift":
            await service.gift(db, out, settings, channel_id=channel_id, gifter_id=payer, tier=tier, payment=payment,
                               recipient_id=meta.get("recipient_id", ""), anonymous=anonymous)
        elif kind == "community_gift":
            await service.community_gift(db, out, settings, channel_id=channel_id, gifter_id=payer, tier=tier,
                                         payment=payment, count=quantity, anonymous=anonymous,
                                         chatters=await service.chatters_in(db, platform, channel_id))
        else:
            raise WebhookError(f"checkout session without a Livecast purchase kind ({kind!r})")
    except PricingError as exc:
        raise WebhookError(exc.message) from None
    except service.SubscriptionError as exc:
        raise WebhookError(exc.message, 409 if exc.status == 409 else 400) from None
    deferred = (await db.execute(select(ProviderEvent).where(
        ProviderEvent.provider == provider, ProviderEvent.ref == ev.ref, ProviderEvent.status == "deferred",
    ).order_by(ProviderEvent.id))).scalars().all()
    for later in deferred:
        charge = await service.find_charge(db, provider=provider, ref=ev.ref)
        await service.reverse(db, out, charge, REVERSALS[later.type])
        later.status = "processed"
    return "processed"


async def _apply_reversal(db: AsyncSession, out: Outbox, provider: str, ev: StripeEvent) -> str:
    if ev.type == "charge.refunded" and not ev.obj.get("refunded", True):
        return "ignored"  # a partial refund: the subscription stays (full refunds only)
    if not ev.ref:
        raise WebhookError("the charge has no payment_intent")
    charge = await service.find_charge(db, provider=provider, ref=ev.ref)
    if charge is None:
        return "deferred"  # the checkout event has not arrived yet
    await service.reverse(db, out, charge, REVERSALS[ev.type])
    return "processed"


async def handle_stripe(platform: Platform, ev: StripeEvent) -> str:
    """Apply one verified Stripe event; returns processed, duplicate, deferred or ignored."""

    async def apply(db: AsyncSession, out: Outbox) -> str:
        row = await _claim(db, "stripe", ev)
        if row is None:
            return "duplicate"
        if ev.type in CHECKOUTS:
            status = await _apply_checkout(db, out, platform, "stripe", ev)
        elif ev.type in REVERSALS:
            status = await _apply_reversal(db, out, "stripe", ev)
        else:
            status = "ignored"
        row.status = status
        return status

    status = await service.run(platform, apply)  # retried if it lost a race on another key
    metrics.provider_events.labels("stripe", status).inc()
    log_event(log, "stripe event", id=ev.id, type=ev.type, status=status)
    return status
