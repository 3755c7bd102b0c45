"""The default provider: every payment succeeds at once and no money moves.

For self-hosted communities that want subscriber perks without payments, and for tests. The
payment reference of a renewal is derived from the period it pays for, so a renewal retried
after a crash cannot be charged twice.
"""

from __future__ import annotations

import secrets

from livecast.subscriptions.providers.base import (
    SUCCEEDED,
    CheckoutRequest,
    CheckoutResult,
    RenewalRequest,
    RenewalResult,
)


class SandboxProvider:
    name = "sandbox"

    async def start_checkout(self, request: CheckoutRequest) -> CheckoutResult:
        ref = request.idempotency_key or secrets.token_hex(12)
        return CheckoutResult(self.name, True, payment_ref=f"sb_{ref}")

    async def charge_renewal(self, request: RenewalRequest) -> RenewalResult:
        return RenewalResult(SUCCEEDED, f"sb_renew_{request.subscription_id}_{request.period_key}")
