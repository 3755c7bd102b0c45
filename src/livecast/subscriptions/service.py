"""The subscription state machine, its money, and its entitlements, in one transaction each.

States: ``active`` (renews), ``cancelled`` (benefits until the period ends, no renewal),
``expired``, ``refunded`` and ``charged_back`` (benefits revoked at once). A viewer keeps one
row per channel through lapses, so cumulative months carry over while the streak restarts.

Functions here take an open session and an :class:`Outbox`; they never commit or publish, so a
caller can combine them with its own idempotency record (a webhook event row, a claimed job)
in one atomic unit. :func:`run` is the convenience wrapper: one transaction, then publish.
Every validation happens before the first write, and any error rolls the whole unit back, so
bad input never leaves a charge or a ledger entry behind.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from livecast import metrics
from livecast.config import Settings
from livecast.identity.models import User
from livecast.platform import Platform
from livecast.store.base import utcnow
from livecast.subscriptions import events, ledger
from livecast.subscriptions.events import Outbox, Person
from livecast.subscriptions.models import (
    ACTIVE,
    CANCELLED,
    CHARGED_BACK,
    ENTITLED_STATES,
    EXPIRED,
    REFUNDED,
    Charge,
    Job,
    Subscription,
)
from livecast.subscriptions.pricing import PricingError, check_tier, price_for

PERIOD = dt.timedelta(days=30)
MAX_COMMUNITY_GIFT = 100

T = TypeVar("T")


class SubscriptionError(Exception):
    """A refused change; ``code`` is stable for clients, ``message`` is for people."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Payment:
    """A completed payment as a provider reports it."""

    provider: str
    ref: str
    amount: int | None = None  # what the provider says was paid; checked against our price
    currency: str | None = None


def sandbox_payment() -> Payment:
    return Payment("sandbox", "sb_" + secrets.token_hex(12))


async def run(platform: Platform, fn: Callable[[AsyncSession, Outbox], Awaitable[T]], attempts: int = 5) -> T:
    """One transaction around ``fn``, then publish what it collected.

    A unit that lost a race (a unique key taken by a concurrent purchase, or SQLite's writer
    lock held by another connection) is rolled back and run again from the start, where it
    now sees the winner's rows and answers with the proper refusal (``already_subscribed``).
    """
    for attempt in range(attempts):
        out = Outbox()
        try:
            async with platform.db.session() as db:
                result = await fn(db, out)
        except (IntegrityError, OperationalError) as exc:
            lost_race = isinstance(exc, IntegrityError) or "locked" in str(exc.orig)
            if not lost_race or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.01 * (attempt + 1) * (1 + random.random()))
            continue
        await events.publish(platform, out)
        return result
    raise AssertionError("unreachable")


# Lookups -------------------------------------------------------------------------------------------

async def person(db: AsyncSession, user_id: str, what: str = "user") -> Person:
    user = await db.get(User, user_id)
    if user is None:
        raise SubscriptionError("invalid_user", f"no {what} with id {user_id!r}", 404)
    return Person.of(user)


async def lock_subscription(db: AsyncSession, channel_id: str, user_id: str) -> Subscription | None:
    """The viewer's row, locked until the transaction ends, and read fresh.

    PostgreSQL locks the row (``FOR UPDATE``). SQLite has no row locks, so a no-op write first
    takes the database's writer lock; either way a concurrent purchase waits here and then
    sees the winner's changes instead of overwriting them.
    """
    where = (Subscription.channel_id == channel_id, Subscription.user_id == user_id)
    if db.get_bind().dialect.name == "sqlite":
        await db.execute(update(Subscription).where(*where).values(updated_at=Subscription.updated_at)
                         .execution_options(synchronize_session=False))
    stmt = select(Subscription).where(*where).with_for_update().execution_options(populate_existing=True)
    return (await db.execute(stmt)).scalar_one_or_none()


async def is_banned(db: AsyncSession, channel_id: str, user_id: str, now: dt.datetime | None = None) -> bool:
    try:
        from livecast.chat.models import ChatBan
    except ImportError:
        return False
    now = now or utcnow()
    stmt = select(ChatBan.id).where(ChatBan.channel_id == channel_id, ChatBan.user_id == user_id,
                                    or_(ChatBan.expires_at.is_(None), ChatBan.expires_at > now))
    return (await db.execute(stmt)).first() is not None


def entitled(sub: Subscription | None, now: dt.datetime | None = None) -> bool:
    if sub is None or sub.state not in ENTITLED_STATES:
        return False
    return sub.current_period_end > (now or utcnow())


async def is_subscriber(db: AsyncSession, channel_id: str, user_id: str) -> tuple[str, int] | None:
    """(tier, cumulative months) while the viewer has a subscriber's benefits in the channel."""
    stmt = select(Subscription).where(Subscription.channel_id == channel_id, Subscription.user_id == user_id)
    sub = (await db.execute(stmt)).scalar_one_or_none()
    if not entitled(sub):
        return None
    assert sub is not None
    return sub.tier, sub.cumulative_months


async def get_subscription(db: AsyncSession, channel_id: str, user_id: str) -> Subscription | None:
    stmt = select(Subscription).where(Subscription.channel_id == channel_id, Subscription.user_id == user_id)
    return (await db.execute(stmt)).scalar_one_or_none()


async def gifts_given(db: AsyncSession, channel_id: str, gifter_id: str) -> int:
    stmt = select(func.coalesce(func.sum(Charge.quantity), 0)).where(
        Charge.channel_id == channel_id, Charge.payer_id == gifter_id,
        Charge.kind.in_(("gift", "community_gift")), Charge.status == "paid")
    return int((await db.execute(stmt)).scalar() or 0)


# Building blocks -----------------------------------------------------------------------------------

async def _sync_role(db: AsyncSession, out: Outbox, sub: Subscription, channel: Person) -> None:
    """Mirror the subscription into chat's stored subscriber role (badges, sub-only, emotes)."""
    try:
        from livecast.chat.models import ROLE_SUBSCRIBER, ChatRole
    except ImportError:
        return
    await db.execute(delete(ChatRole).where(ChatRole.channel_id == sub.channel_id,
                                            ChatRole.user_id == sub.user_id, ChatRole.role == ROLE_SUBSCRIBER))
    if sub.state in ENTITLED_STATES:
        db.add(ChatRole(channel_id=sub.channel_id, user_id=sub.user_id, role=ROLE_SUBSCRIBER,
                        months=sub.cumulative_months, tier=int(sub.tier)))
    await db.flush()
    out.roles_changed.setdefault(channel.login, set()).add(sub.user_id)


async def schedule_period_end(db: AsyncSession, sub: Subscription) -> None:
    key = f"period_end:{sub.id}:{sub.current_period_end.astimezone(dt.UTC).isoformat()}"
    exists = (await db.execute(select(Job.id).where(Job.key == key))).first()
    if exists is None:
        db.add(Job(key=key, kind="period_end", subscription_id=sub.id, run_at=sub.current_period_end))
        await db.flush()


def job_key_for(sub: Subscription) -> str:
    return f"period_end:{sub.id}:{sub.current_period_end.astimezone(dt.UTC).isoformat()}"


def period_key(sub: Subscription) -> str:
    """Names the period end a renewal pays past (in providers' idempotency keys and metadata)."""
    return sub.current_period_end.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S")


async def already_paid(db: AsyncSession, payment: Payment) -> bool:
    """Was this provider payment recorded before? (a replay changes nothing)"""
    stmt = select(Charge.id).where(Charge.provider == payment.provider, Charge.provider_ref == payment.ref)
    return (await db.execute(stmt)).first() is not None


async def _record_charge(db: AsyncSession, settings: Settings, payment: Payment, *, kind: str, channel_id: str,
                         payer_id: str, tier: str, quantity: int, now: dt.datetime) -> Charge | None:
    """Store and book a charge; None when this provider payment was already recorded."""
    existing = (await db.execute(select(Charge).where(Charge.provider == payment.provider,
                                                      Charge.provider_ref == payment.ref))).scalar_one_or_none()
    if existing is not None:
        return None
    price = await price_for(db, settings, channel_id, tier)
    amount, fee, share = price.split(quantity)
    if payment.amount is not None and payment.amount != amount:
        raise PricingError("unknown_price", f"paid {payment.amount} but {quantity} x {tier} costs {amount}")
    if payment.currency is not None and payment.currency.upper() != price.currency:
        raise PricingError("unknown_price", f"paid in {payment.currency.upper()} but prices are in {price.currency}")
    charge = Charge(provider=payment.provider, provider_ref=payment.ref, kind=kind, channel_id=channel_id,
                    payer_id=payer_id, tier=tier, quantity=quantity, amount=amount, currency=price.currency,
                    platform_fee=fee, creator_share=share, status="paid", created_at=now)
    db.add(charge)
    await db.flush()
    await ledger.book_charge(db, charge)
    metrics.subscription_charges.labels(kind).inc()
    return charge


async def _start(db: AsyncSession, out: Outbox, *, channel: Person, user: Person, tier: str, charge: Charge,
                 provider: str, gifter: Person | None, is_gift: bool, anonymous: bool,
                 now: dt.datetime) -> Subscription:
    """Begin a paid period for ``user`` (new row, or a lapsed one coming back)."""
    sub = await lock_subscription(db, channel.id, user.id)
    if sub is None:
        sub = Subscription(channel_id=channel.id, user_id=user.id, tier=tier, state=ACTIVE, cumulative_months=0,
                           streak_months=0, started_at=now)
        db.add(sub)
    elif entitled(sub, now):
        raise SubscriptionError("already_subscribed", f"{user.login} is already subscribed to {channel.login}", 409)
    else:
        sub.streak_months = 0  # a lapse breaks the streak
    sub.tier = tier
    sub.next_tier = None
    sub.state = ACTIVE
    sub.provider = provider
    sub.auto_renew = not is_gift
    sub.is_gift = is_gift
    sub.gifter_id = gifter.id if gifter else None
    sub.gift_anonymous = anonymous
    sub.cumulative_months += 1
    sub.streak_months += 1
    sub.resub_share_available = sub.cumulative_months > 1
    sub.charge_id = charge.id
    sub.current_period_start = now
    sub.current_period_end = now + PERIOD
    sub.ended_at = None
    await db.flush()
    await schedule_period_end(db, sub)
    await _sync_role(db, out, sub, channel)
    out.events.append(("channel.subscribe", events.subscribe_event(channel, user, tier, is_gift)))
    if not is_gift and sub.cumulative_months == 1:
        out.notices.append(events.sub_notice(channel, user, tier))
    return sub


async def _end(db: AsyncSession, out: Outbox, sub: Subscription, state: str, now: dt.datetime) -> None:
    channel = await person(db, sub.channel_id)
    user = await person(db, sub.user_id)
    sub.state = state
    sub.auto_renew = False
    sub.resub_share_available = False
    sub.ended_at = now
    if state in (REFUNDED, CHARGED_BACK):
        sub.current_period_end = min(sub.current_period_end, now)
    await db.flush()
    await _sync_role(db, out, sub, channel)
    out.events.append(("channel.subscription.end", events.end_event(channel, user, sub.tier, sub.is_gift)))


# Purchases -----------------------------------------------------------------------------------------

async def subscribe(db: AsyncSession, out: Outbox, settings: Settings, *, channel_id: str, user_id: str, tier: str,
                    payment: Payment, now: dt.datetime | None = None) -> Subscription | None:
    """A viewer buys a subscription for themself; None if ``payment`` was already recorded."""
    now = now or utcnow()
    if await already_paid(db, payment):
        return None
    tier = check_tier(tier)
    channel = await person(db, channel_id, "channel")
    user = await person(db, user_id)
    if channel_id == user_id:
        raise SubscriptionError("self_subscribe", "a broadcaster cannot subscribe to their own channel")
    current = await lock_subscription(db, channel_id, user_id)
    if entitled(current, now):
        raise SubscriptionError("already_subscribed", f"{user.login} is already subscribed to {channel.login}", 409)
    charge = await _record_charge(db, settings, payment, kind="subscribe", channel_id=channel_id, payer_id=user_id,
                                  tier=tier, quantity=1, now=now)
    if charge is None:
        return None
    return await _start(db, out, channel=channel, user=user, tier=tier, charge=charge, provider=payment.provider,
                        gifter=None, is_gift=False, anonymous=False, now=now)


async def check_recipient(db: AsyncSession, channel: Person, recipient_id: str, gifter_id: str,
                           now: dt.datetime) -> Person:
    recipient = await person(db, recipient_id, "recipient")
    if recipient_id == gifter_id:
        raise SubscriptionError("invalid_recipient", "use subscribe to subscribe yourself")
    if recipient_id == channel.id:
        raise SubscriptionError("invalid_recipient", "a broadcaster cannot receive a sub to their own channel")
    if await is_banned(db, channel.id, recipient_id, now):
        raise SubscriptionError("user_banned", f"{recipient.login} is banned in {channel.login}")
    if entitled(await get_subscription(db, channel.id, recipient_id), now):
        raise SubscriptionError("already_subscribed", f"{recipient.login} is already subscribed", 409)
    return recipient


async def gift(db: AsyncSession, out: Outbox, settings: Settings, *, channel_id: str, gifter_id: str,
               recipient_id: str, tier: str, payment: Payment, anonymous: bool = False,
               now: dt.datetime | None = None) -> Subscription | None:
    """Gift one sub to a named viewer (not banned, not already subscribed)."""
    now = now or utcnow()
    if await already_paid(db, payment):
        return None
    tier = check_tier(tier)
    channel = await person(db, channel_id, "channel")
    gifter = await person(db, gifter_id, "gifter")
    recipient = await check_recipient(db, channel, recipient_id, gifter_id, now)
    charge = await _record_charge(db, settings, payment, kind="gift", channel_id=channel_id, payer_id=gifter_id,
                                  tier=tier, quantity=1, now=now)
    if charge is None:
        return None
    shown = None if anonymous else gifter
    sub = await _start(db, out, channel=channel, user=recipient, tier=tier, charge=charge,
                       provider=payment.provider, gifter=gifter, is_gift=True, anonymous=anonymous, now=now)
    total = await gifts_given(db, channel_id, gifter_id)
    out.events.append(("channel.subscription.gift", events.gift_event(channel, shown, 1, tier, total)))
    out.notices.append(events.subgift_notice(channel, shown, recipient, tier, sub.cumulative_months,
                                             None if anonymous else total, False))
    return sub


async def eligible_viewers(db: AsyncSession, channel_id: str, gifter_id: str, now: dt.datetime,
                           extra: list[str] | None = None) -> list[str]:
    """Followers plus ``extra`` (recent chatters), minus banned users, subscribers, gifter, owner."""
    candidates: set[str] = set(extra or ())
    try:
        from livecast.discovery.models import Follow

        rows = await db.execute(select(Follow.user_id).where(Follow.channel_id == channel_id))
        candidates.update(r for (r,) in rows)
    except ImportError:
        pass
    candidates.discard(gifter_id)
    candidates.discard(channel_id)
    eligible = []
    for user_id in sorted(candidates):
        if await db.get(User, user_id) is None or await is_banned(db, channel_id, user_id, now):
            continue
        if entitled(await get_subscription(db, channel_id, user_id), now):
            continue
        eligible.append(user_id)
    return eligible


async def chatters_in(db: AsyncSession, platform: Platform, channel_id: str) -> list[str]:
    """Ids of the signed-in viewers in the channel's chat room on every node (community gift candidates)."""
    try:
        from livecast.chat.service import get_chatters
    except ImportError:
        return []
    owner = await db.get(User, channel_id)
    logins = await get_chatters(platform, owner.login) if owner is not None else []
    if not logins:
        return []
    rows = await db.execute(select(User.id).where(User.login.in_(logins)))
    return [user_id for (user_id,) in rows]


async def community_gift(db: AsyncSession, out: Outbox, settings: Settings, *, channel_id: str, gifter_id: str,
                         count: int, tier: str, payment: Payment, anonymous: bool = False,
                         chatters: list[str] | None = None, now: dt.datetime | None = None,
                         rng: random.Random | None = None) -> list[Subscription] | None:
    """Gift ``count`` subs to random eligible viewers, as one charge."""
    now = now or utcnow()
    if await already_paid(db, payment):
        return None
    tier = check_tier(tier)
    if not 1 <= count <= MAX_COMMUNITY_GIFT:
        raise SubscriptionError("bad_count", f"a community gift is 1 to {MAX_COMMUNITY_GIFT} subs")
    channel = await person(db, channel_id, "channel")
    gifter = await person(db, gifter_id, "gifter")
    pool = await eligible_viewers(db, channel_id, gifter_id, now, chatters)
    if len(pool) < count:
        raise SubscriptionError("not_enough_recipients", f"only {len(pool)} eligible viewers for {count} gifts")
    chosen = (rng or random.SystemRandom()).sample(pool, count)
    charge = await _record_charge(db, settings, payment, kind="community_gift", channel_id=channel_id,
                                  payer_id=gifter_id, tier=tier, quantity=count, now=now)
    if charge is None:
        return None
    shown = None if anonymous else gifter
    total = await gifts_given(db, channel_id, gifter_id)
    out.events.append(("channel.subscription.gift", events.gift_event(channel, shown, count, tier, total)))
    out.notices.append(events.mystery_notice(channel, shown, tier, count, None if anonymous else total))
    subs = []
    for user_id in chosen:
        recipient = await person(db, user_id)
        sub = await _start(db, out, channel=channel, user=recipient, tier=tier, charge=charge,
                           provider=payment.provider, gifter=gifter, is_gift=True, anonymous=anonymous, now=now)
        out.notices.append(events.subgift_notice(channel, shown, recipient, tier, sub.cumulative_months, None, True))
        subs.append(sub)
    return subs


# Lifecycle -----------------------------------------------------------------------------------------

async def _require(db: AsyncSession, channel_id: str, user_id: str) -> Subscription:
    sub = await lock_subscription(db, channel_id, user_id)
    if sub is None:
        raise SubscriptionError("not_subscribed", "no such subscription", 404)
    return sub


async def renew(db: AsyncSession, out: Outbox, settings: Settings, sub: Subscription, payment: Payment,
                now: dt.datetime | None = None) -> Charge | None:
    """Start the next period of an auto-renewing subscription, applying a pending tier change."""
    now = now or utcnow()
    if sub.state != ACTIVE or not sub.auto_renew:
        raise SubscriptionError("not_renewable", f"a {sub.state} subscription does not renew")
    tier = sub.next_tier or sub.tier
    charge = await _record_charge(db, settings, payment, kind="renewal", channel_id=sub.channel_id,
                                  payer_id=sub.user_id, tier=tier, quantity=1, now=now)
    if charge is None:
        return None
    # back to back with the paid period, unless the renewal comes after a long outage
    start = sub.current_period_end if sub.current_period_end > now - PERIOD else now
    sub.tier = tier
    sub.next_tier = None
    sub.cumulative_months += 1
    sub.streak_months += 1
    sub.resub_share_available = True
    sub.charge_id = charge.id
    sub.current_period_start = start
    sub.current_period_end = start + PERIOD
    await db.flush()
    await schedule_period_end(db, sub)
    await _sync_role(db, out, sub, await person(db, sub.channel_id))
    return charge


async def record_unapplied_renewal(db: AsyncSession, settings: Settings, sub: Subscription, payment: Payment,
                                   tier: str, now: dt.datetime | None = None) -> Charge | None:
    """Book a renewal payment that can no longer extend its period (cancelled or ended meanwhile).

    The money was taken, so the ledger must show it; a refund of it reverses it as usual.
    """
    return await _record_charge(db, settings, payment, kind="renewal", channel_id=sub.channel_id,
                                payer_id=sub.user_id, tier=tier, quantity=1, now=now or utcnow())


async def cancel(db: AsyncSession, out: Outbox, *, channel_id: str, user_id: str) -> Subscription:
    """Stop renewal; benefits last until the period ends (the period-end job expires it)."""
    sub = await _require(db, channel_id, user_id)
    if sub.state != ACTIVE:
        raise SubscriptionError("not_active", f"cannot cancel a {sub.state} subscription", 409)
    sub.state = CANCELLED
    sub.auto_renew = False
    sub.next_tier = None
    await db.flush()
    return sub


async def resume(db: AsyncSession, out: Outbox, *, channel_id: str, user_id: str,
                 now: dt.datetime | None = None) -> Subscription:
    """Undo a cancel before the period ends."""
    sub = await _require(db, channel_id, user_id)
    if sub.state != CANCELLED or not entitled(sub, now) or sub.is_gift:
        raise SubscriptionError("not_cancelled", "only a cancelled, still running subscription can resume", 409)
    sub.state = ACTIVE
    sub.auto_renew = True
    await db.flush()
    return sub


async def expire(db: AsyncSession, out: Outbox, sub: Subscription, now: dt.datetime | None = None) -> None:
    if sub.state not in ENTITLED_STATES:
        return
    await _end(db, out, sub, EXPIRED, now or utcnow())


async def change_tier(db: AsyncSession, out: Outbox, *, channel_id: str, user_id: str, tier: str) -> Subscription:
    """Choose the tier billed from the next renewal on (no proration; Twitch does the same)."""
    tier = check_tier(tier)
    sub = await _require(db, channel_id, user_id)
    if sub.state != ACTIVE or not sub.auto_renew:
        raise SubscriptionError("not_active", "only an active, renewing subscription can change tier", 409)
    sub.next_tier = None if tier == sub.tier else tier
    await db.flush()
    return sub


async def find_charge(db: AsyncSession, *, charge_id: str | None = None, provider: str | None = None,
                      ref: str | None = None) -> Charge | None:
    if charge_id is not None:
        stmt = select(Charge).where(Charge.id == charge_id)
    else:
        stmt = select(Charge).where(Charge.provider == provider, Charge.provider_ref == ref)
    stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await db.execute(stmt)).scalar_one_or_none()


async def reverse(db: AsyncSession, out: Outbox, charge: Charge | None, kind: str,
                  now: dt.datetime | None = None) -> bool:
    """Refund or chargeback: money back to the payer, benefits of the subs it paid for end now.

    Returns False when the charge was already reversed (a replay), True when booked now.
    """
    if charge is None:
        raise SubscriptionError("unknown_charge", "no such charge", 404)
    if kind not in ("refund", "chargeback"):
        raise ValueError(kind)
    if charge.status != "paid":
        return False
    now = now or utcnow()
    charge.status = "refunded" if kind == "refund" else "charged_back"
    await ledger.book_reversal(db, charge, kind)
    charge.amount_refunded = charge.amount
    stmt = select(Subscription).where(Subscription.charge_id == charge.id).with_for_update()
    for sub in (await db.execute(stmt)).scalars():
        if sub.state in ENTITLED_STATES:
            sub.cumulative_months = max(0, sub.cumulative_months - 1)
            sub.streak_months = max(0, sub.streak_months - 1)
            await _end(db, out, sub, REFUNDED if kind == "refund" else CHARGED_BACK, now)
    return True


async def partial_refund(db: AsyncSession, charge: Charge | None, refunded_total: int) -> bool:
    """A refund of part of a charge: money back pro rata, benefits kept.

    ``refunded_total`` is the provider's running total of refunds on the charge (Stripe's
    ``amount_refunded``). Returns True when something was booked; a total already reached (a
    replay, or an older event after a newer one) or a charge already fully reversed books
    nothing. A total of the whole amount is a full refund: use :func:`reverse`.
    """
    if charge is None:
        raise SubscriptionError("unknown_charge", "no such charge", 404)
    if not 0 < refunded_total < charge.amount:
        raise SubscriptionError("bad_amount", f"a partial refund is between 1 and {charge.amount - 1}")
    if charge.status != "paid" or refunded_total <= charge.amount_refunded:
        return False
    await ledger.book_partial_refund(db, charge, refunded_total)
    charge.amount_refunded = refunded_total
    await db.flush()
    return True


async def share_resub(db: AsyncSession, out: Outbox, *, channel_id: str, user_id: str, message: str,
                      share_streak: bool = True) -> Subscription:
    """Post the once-per-period resub message to chat and EventSub."""
    if len(message) > 500:
        raise SubscriptionError("msg_too_long", "a resub message is at most 500 characters")
    sub = await _require(db, channel_id, user_id)
    if not entitled(sub):
        raise SubscriptionError("not_subscribed", "not subscribed", 404)
    if not sub.resub_share_available:
        raise SubscriptionError("already_shared", "the resub message was already shared this period", 409)
    channel = await person(db, channel_id)
    user = await person(db, user_id)
    sub.resub_share_available = False
    await db.flush()
    streak = sub.streak_months if share_streak else None
    out.notices.append(events.resub_notice(channel, user, sub.tier, message, sub.cumulative_months, streak))
    out.events.append(("channel.subscription.message",
                       events.message_event(channel, user, sub.tier, message, sub.cumulative_months, streak)))
    return sub


def describe(sub: Subscription) -> dict[str, Any]:
    return {"id": sub.id, "channel_id": sub.channel_id, "user_id": sub.user_id, "tier": sub.tier,
            "next_tier": sub.next_tier, "state": sub.state, "is_gift": sub.is_gift,
            "cumulative_months": sub.cumulative_months, "streak_months": sub.streak_months,
            "current_period_end": sub.current_period_end.isoformat(),
            "resub_share_available": sub.resub_share_available}


__all__ = ["CANCELLED", "EXPIRED", "Payment", "SubscriptionError", "is_subscriber", "run"]
