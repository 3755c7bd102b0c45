"""The provider interface: start a checkout, and (maybe) charge a renewal off-session.

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


class Provider(Protocol):
    name: str

    async def start_checkout(self, request: CheckoutRequest) -> CheckoutResult: ...

    async def charge_renewal(self, subscription_id: str, amount: int, currency: str, period_key: str) -> str | None:
        """Charge a renewal now and return the payment reference, or None if it cannot."""
        ...
