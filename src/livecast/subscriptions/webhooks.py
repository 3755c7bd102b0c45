"""Applying provider events exactly once, whatever order and however often they arrive.

One transaction per delivery: insert the ``(provider, event id)`` row first (a duplicate
inserts nothing and stops there; on PostgreSQL a concurrent duplicate waits on the unique
index until the first commits, then sees the conflict), then take a transaction-scoped lock
on the payment reference so a checkout and its refund never run side by side, then apply.

Out of order: a refund or dispute whose charge is unknown yet is stored as ``deferred``; the
checkout that creates the charge applies the deferred events for its payment in the same
transaction. A partial refund (``charge.refunded`` with ``refunded: false``) carries Stripe's
running total ``amount_refunded``; the ledger is brought up to that total, so an older total
arriving after a newer one, or after the full refund, books nothing.

Renewals: ``payment_intent.succeeded`` for a renewal PaymentIntent (``metadata.livecast_kind``
``renewal``) renews the period it names unless the worker's own answer already did (both book
the charge under the PaymentIntent id, which is unique); ``payment_intent.payment_failed`` ends
the subscription at its period end. For a first purchase, ``payment_intent.succeeded`` tells
which card was saved for those renewals. A malformed event or a wrong price raises :class:`WebhookError` and rolls back,
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
from livecast.store.db import upsert_insert
from livecast.subscriptions import service
from livecast.subscriptions.events import Outbox
from livecast.subscriptions.models import ACTIVE, ENTITLED_STATES, Charge, ProviderEvent, Subscription
from livecast.subscriptions.pricing import PricingError
from livecast.subscriptions.providers.stripe import StripeEvent

log = logging.getLogger("livecast.subscriptions")

# async payment methods complete the session later, with async_payment_succeeded
CHECKOUTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
REVERSALS = {"charge.refunded": "refund", "charge.dispute.created": "chargeback"}
INTENTS = ("payment_intent.succeeded", "payment_intent.payment_failed")


class WebhookError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


async def _claim(db: AsyncSession, provider: str, ev: StripeEvent) -> ProviderEvent | None:
    dialect = db.get_bind().dialect.name
    stmt = upsert_insert(dialect)(ProviderEvent).values(
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
    if kind == "subscribe":
        customer = obj.get("customer")
        if isinstance(customer, dict):
            customer = customer.get("id")
        if isinstance(customer, str) and customer:
            await _save_card(db, provider, ev.ref, customer=customer)
    deferred = (await db.execute(select(ProviderEvent).where(
        ProviderEvent.provider == provider, ProviderEvent.ref == ev.ref, ProviderEvent.status == "deferred",
    ).order_by(ProviderEvent.id))).scalars().all()
    for later in deferred:
        charge = await service.find_charge(db, provider=provider, ref=ev.ref)
        obj_later = later.payload.get("object") if isinstance(later.payload, dict) else None
        await _reverse(db, out, charge, later.type, obj_later if isinstance(obj_later, dict) else {})
        later.status = "processed"
    return "processed"


async def _save_card(db: AsyncSession, provider: str, ref: str, *, customer: str = "",
                     payment_method: str = "") -> bool:
    """Remember where renewals of the subscription this payment started can be charged."""
    charge = (await db.execute(select(Charge).where(Charge.provider == provider, Charge.provider_ref == ref))
              ).scalar_one_or_none()
    if charge is None:
        return False
    sub = (await db.execute(select(Subscription).where(Subscription.charge_id == charge.id))).scalar_one_or_none()
    if sub is None:
        return False
    if customer:
        sub.provider_customer = customer
    if payment_method:
        sub.provider_payment_method = payment_method
    await db.flush()
    return True


def _refunded_total(obj: dict[str, Any]) -> int | None:
    """Stripe's running refund total on a partially refunded charge; None for a full refund."""
    if obj.get("refunded", True):
        return None
    total = obj.get("amount_refunded")
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        raise WebhookError("a partial charge.refunded needs an integer amount_refunded")
    return total


async def _reverse(db: AsyncSession, out: Outbox, charge: Charge | None, type_: str, obj: dict[str, Any]) -> None:
    total = _refunded_total(obj) if type_ == "charge.refunded" else None
    if charge is not None and total is not None and total < charge.amount:
        if total > 0:
            await service.partial_refund(db, charge, total)
        return
    await service.reverse(db, out, charge, REVERSALS[type_])


async def _apply_reversal(db: AsyncSession, out: Outbox, provider: str, ev: StripeEvent) -> str:
    if ev.type == "charge.refunded":
        _refunded_total(ev.obj)  # a malformed total is refused before anything is stored
    if not ev.ref:
        raise WebhookError("the charge has no payment_intent")
    charge = await service.find_charge(db, provider=provider, ref=ev.ref)
    if charge is None:
        return "deferred"  # the checkout event has not arrived yet
    await _reverse(db, out, charge, ev.type, ev.obj)
    return "processed"


async def _apply_intent(db: AsyncSession, out: Outbox, platform: Platform, provider: str, ev: StripeEvent) -> str:
    meta = ev.metadata
    kind = meta.get("livecast_kind", "")
    obj = ev.obj
    if kind == "subscribe" and ev.type == "payment_intent.succeeded":
        method = obj.get("payment_method")
        method = method.get("id") if isinstance(method, dict) else method
        saved = isinstance(method, str) and bool(method) and await _save_card(db, provider, ev.ref,
                                                                               payment_method=method)
        return "processed" if saved else "ignored"  # unknown yet: read from this intent at renewal
    if kind != "renewal" or not ev.ref:
        return "ignored"
    found = await db.get(Subscription, meta.get("subscription_id", ""))
    sub = await service.lock_subscription(db, found.channel_id, found.user_id) if found is not None else None
    if sub is None:
        raise WebhookError(f"renewal of an unknown subscription {meta.get('subscription_id', '')!r}")
    amount, currency = obj.get("amount_received") or obj.get("amount"), obj.get("currency")
    payment = service.Payment(provider, ev.ref, amount if isinstance(amount, int) else None,
                              currency if isinstance(currency, str) else None)
    if await service.already_paid(db, payment):
        return "processed"  # the worker's synchronous answer booked it already
    now = service.utcnow()
    current = sub.state in ENTITLED_STATES and service.period_key(sub) == meta.get("period_key")
    try:
        if ev.type == "payment_intent.payment_failed":
            if current:
                await service.expire(db, out, sub, now)
            return "processed"
        method = obj.get("payment_method")
        if isinstance(method, str) and method:
            sub.provider_payment_method = method
        if current and sub.state == ACTIVE and sub.auto_renew:
            await service.renew(db, out, platform.settings, sub, payment, now)
        else:  # paid for a period that cannot start any more: book the money all the same
            await service.record_unapplied_renewal(db, platform.settings, sub, payment,
                                                   meta.get("tier") or sub.tier, now)
    except PricingError as exc:
        raise WebhookError(exc.message) from None
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
        elif ev.type in INTENTS:
            status = await _apply_intent(db, out, platform, "stripe", ev)
        else:
            status = "ignored"
        row.status = status
        return status

    status = await service.run(platform, apply)  # retried if it lost a race on another key
    metrics.provider_events.labels("stripe", status).inc()
    log_event(log, "stripe event", id=ev.id, type=ev.type, status=status)
    return status
