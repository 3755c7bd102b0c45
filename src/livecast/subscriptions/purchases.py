"""From "the viewer clicked Subscribe" to a paid subscription, through the configured provider.

Everything that can be refused (unknown tier, unknown or banned recipient, already
subscribed) is checked *before* the provider is asked for money. With the sandbox the payment
completes at once and the purchase is applied in the same call; with Stripe the viewer is sent
to Checkout and the purchase is applied when ``checkout.session.completed`` arrives.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from livecast.platform import Platform
from livecast.store.base import utcnow
from livecast.subscriptions import service
from livecast.subscriptions.events import Outbox
from livecast.subscriptions.pricing import check_tier, price_for, tier_name
from livecast.subscriptions.providers import CheckoutRequest, provider_for

KINDS = ("subscribe", "gift", "community_gift")


@dataclass(frozen=True)
class Purchase:
    kind: str
    channel_id: str
    payer_id: str
    tier: str
    recipient_id: str = ""
    count: int = 1
    anonymous: bool = False


async def _precheck(platform: Platform, p: Purchase) -> CheckoutRequest:
    if p.kind not in KINDS:
        raise service.SubscriptionError("bad_kind", f"kind must be one of {', '.join(KINDS)}")
    tier = check_tier(p.tier)
    now = utcnow()
    async with platform.db.session() as db:
        channel = await service.person(db, p.channel_id, "channel")
        await service.person(db, p.payer_id)
        if p.kind == "subscribe":
            if p.payer_id == p.channel_id:
                raise service.SubscriptionError("self_subscribe", "a broadcaster cannot subscribe to their own channel")
            if service.entitled(await service.get_subscription(db, p.channel_id, p.payer_id), now):
                raise service.SubscriptionError("already_subscribed", "already subscribed", 409)
        elif p.kind == "gift":
            await service.check_recipient(db, channel, p.recipient_id, p.payer_id, now)
        else:
            if not 1 <= p.count <= service.MAX_COMMUNITY_GIFT:
                raise service.SubscriptionError("bad_count", f"a community gift is 1 to {service.MAX_COMMUNITY_GIFT} subs")
            chatters = await service.chatters_in(db, platform, p.channel_id)
            pool = await service.eligible_viewers(db, p.channel_id, p.payer_id, now, chatters)
            if len(pool) < p.count:
                raise service.SubscriptionError("not_enough_recipients",
                                                f"only {len(pool)} eligible viewers for {p.count} gifts")
        price = await price_for(db, platform.settings, p.channel_id, tier)
    base = platform.base_url()
    return CheckoutRequest(
        kind=p.kind, channel_id=p.channel_id, payer_id=p.payer_id, tier=tier, unit_amount=price.unit_amount,
        currency=price.currency, quantity=p.count if p.kind == "community_gift" else 1,
        recipient_id=p.recipient_id, anonymous=p.anonymous,
        description=f"{tier_name(tier)} subscription to {channel.name}",
        success_url=f"{base}/{channel.login}?subscribed=1", cancel_url=f"{base}/{channel.login}",
        idempotency_key=secrets.token_hex(16),
    )


async def checkout(platform: Platform, p: Purchase) -> dict[str, Any]:
    """Start (and with the sandbox, finish) a purchase; returns what the web app shows next."""
    request = await _precheck(platform, p)
    provider = provider_for(platform.settings)
    result = await provider.start_checkout(request)
    if not result.completed:
        return {"status": "redirect", "provider": result.provider, "url": result.url, "session_id": result.session_id}
    payment = service.Payment(result.provider, result.payment_ref)

    async def apply(db: Any, out: Outbox) -> Any:
        settings = platform.settings
        if p.kind == "subscribe":
            return await service.subscribe(db, out, settings, channel_id=p.channel_id, user_id=p.payer_id,
                                           tier=request.tier, payment=payment)
        if p.kind == "gift":
            return await service.gift(db, out, settings, channel_id=p.channel_id, gifter_id=p.payer_id,
                                      recipient_id=p.recipient_id, tier=request.tier, payment=payment,
                                      anonymous=p.anonymous)
        return await service.community_gift(db, out, settings, channel_id=p.channel_id, gifter_id=p.payer_id,
                                            count=p.count, tier=request.tier, payment=payment,
                                            anonymous=p.anonymous,
                                            chatters=await service.chatters_in(db, platform, p.channel_id))

    outcome = await service.run(platform, apply)
    subs = outcome if isinstance(outcome, list) else [outcome] if outcome is not None else []
    return {"status": "completed", "provider": result.provider,
            "subscriptions": [service.describe(s) for s in subs]}
