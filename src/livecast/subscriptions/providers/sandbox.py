"""The default provider: every payment succeeds at once and no money moves.

For self-hosted communities that want subscriber perks without payments, and for tests. The
payment reference of a renewal is derived from the period it pays for, so a renewal retried
after a crash cannot be charged twice.
"""

from __future__ import annotations

import secrets

from livecast.subscriptions.providers.base import CheckoutRequest, CheckoutResult


class SandboxProvider:
    name = "sandbox"

    async def start_checkout(self, request: CheckoutRequest) -> CheckoutResult:
        ref = request.idempotency_key or secrets.token_hex(12)
        return CheckoutResult(self.name, True, payment_ref=f"sb_{ref}")

    async def charge_renewal(self, subscription_id: str, amount: int, currency: str, period_key: str) -> str | None:
        return f"sb_renew_{subscription_id}_{period_key}"
