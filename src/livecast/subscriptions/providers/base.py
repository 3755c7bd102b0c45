"""The provider interface: start a checkout, and charge a renewal off-session.

A provider either completes a payment at once (``sandbox``) or hands back a URL where the
viewer pays (Stripe Checkout); the latter's completion arrives later as a webhook event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class CheckoutRequest:
    kind: str  # subscribe | gift | community_gift
    channel_id: str
    payer_id: str
    tier: str
    unit_amount: int  # minor units, from pricing
    currency: str
    quantity: int = 1
    recipient_id: str = ""
    anonymous: bool = False
    description: str = ""
    success_url: str = ""
    cancel_url: str = ""
    idempotency_key: str = ""

    def metadata(self) -> dict[str, str]:
        """What the completion event must carry back so the purchase can be applied."""
        return {"livecast_kind": self.kind, "channel_id": self.channel_id, "payer_id": self.payer_id,
                "tier": self.tier, "quantity": str(self.quantity), "recipient_id": self.recipient_id,
                "anonymous": "1" if self.anonymous else "0"}


@dataclass(frozen=True)
class CheckoutResult:
    provider: str
    completed: bool  # True: paid already, ``payment_ref`` names the payment
    payment_ref: str = ""
    url: str = ""  # where to send the viewer when not completed
    session_id: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RenewalRequest:
    """One period's renewal charge; ``period_key`` names the period end it pays past.

    The pair (subscription, period) is the renewal's identity: providers derive their
    idempotency key from it, so a job retried after a crash asks for the same payment again
    instead of taking the money twice.
    """

    subscription_id: str
    amount: int  # minor units
    currency: str
    period_key: str
    tier: str = ""
    customer: str = ""  # the provider's saved customer and card, from the first purchase
    payment_method: str = ""
    original_ref: str = ""  # the payment for the current period, whose card can be read back

    @property
    def idempotency_key(self) -> str:
        return f"livecast-renewal:{self.subscription_id}:{self.period_key}"


# RenewalResult.status values
SUCCEEDED = "succeeded"  # paid now: ``ref`` names the payment
PENDING = "pending"  # accepted but not final (an asynchronous method): the provider's webhook decides
DECLINED = "declined"  # refused (card declined, authentication needed with nobody present)
UNSUPPORTED = "unsupported"  # nothing to charge (no saved card): the subscription lapses


@dataclass(frozen=True)
class RenewalResult:
    status: str
    ref: str = ""
    amount: int | None = None  # what the provider says it charged, checked against the price
    currency: str | None = None
    payment_method: str = ""  # the card actually used (saved for the next renewal)
    reason: str = ""


class Provider(Protocol):
    name: str

    async def start_checkout(self, request: CheckoutRequest) -> CheckoutResult: ...

    async def charge_renewal(self, request: RenewalRequest) -> RenewalResult:
        """Charge a renewal now; raise on a transient failure (the job retries, same key)."""
        ...
