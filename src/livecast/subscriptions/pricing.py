"""What a tier costs in a channel and how the money splits between creator and platform.

Configuration sets the defaults (``sub_prices``, ``sub_currency``, ``creator_share_percent``,
``partner_share_percent``); a ``sub_channel_terms`` row overrides them for one channel, which is
how a partner's negotiated contract is expressed. Shares are computed in integer minor units
and the rounding remainder goes to the platform, so fee + share always equals the amount.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from livecast.config import Settings
from livecast.identity.models import User
from livecast.subscriptions.models import TIERS, ChannelTerms


class PricingError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Price:
    tier: str
    unit_amount: int  # minor units
    currency: str
    share_percent: int

    def split(self, quantity: int = 1) -> tuple[int, int, int]:
        """(amount, platform fee, creator share) for ``quantity`` units."""
        amount = self.unit_amount * quantity
        share = amount * self.share_percent // 100
        return amount, amount - share, share


def tier_name(tier: str) -> str:
    return f"Tier {int(tier) // 1000}"


def check_tier(tier: str) -> str:
    tier = str(tier)
    if tier not in TIERS:
        raise PricingError("unknown_price", f"unknown tier {tier!r}; use one of {', '.join(TIERS)}")
    return tier


async def price_for(db: AsyncSession, settings: Settings, channel_id: str, tier: str) -> Price:
    """The price a viewer pays for ``tier`` in this channel; an unknown tier is a PricingError."""
    tier = check_tier(tier)
    terms = await db.get(ChannelTerms, channel_id)
    prices = dict(settings.sub_prices)
    if terms is not None and terms.prices:
        prices.update({str(k): int(v) for k, v in terms.prices.items()})
    amount = prices.get(tier)
    if amount is None or amount <= 0:
        raise PricingError("unknown_price", f"no price is configured for tier {tier}")
    if terms is not None and terms.share_percent is not None:
        share = terms.share_percent
    else:
        owner = await db.get(User, channel_id)
        partner = owner is not None and owner.broadcaster_type == "partner"
        share = settings.partner_share_percent if partner else settings.creator_share_percent
    return Price(tier, int(amount), settings.sub_currency.upper(), share)


async def set_channel_terms(db: AsyncSession, channel_id: str, *, prices: dict[str, int] | None = None,
                            share_percent: int | None = None) -> ChannelTerms:
    if prices:
        for tier, amount in prices.items():
            check_tier(tier)
            if not isinstance(amount, int) or amount <= 0:
                raise PricingError("unknown_price", f"price for tier {tier} must be a positive integer")
    if share_percent is not None and not 0 <= share_percent <= 100:
        raise PricingError("bad_share", "share_percent must be between 0 and 100")
    terms = await db.get(ChannelTerms, channel_id)
    if terms is None:
        terms = ChannelTerms(channel_id=channel_id)
        db.add(terms)
    terms.prices = prices
    terms.share_percent = share_percent
    await db.flush()
    return terms
