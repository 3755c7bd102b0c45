"""Payment providers behind one small interface; ``sandbox`` unless Stripe is configured."""

from __future__ import annotations

from livecast.config import Settings
from livecast.subscriptions.providers.base import (
    CheckoutRequest,
    CheckoutResult,
    Provider,
    RenewalRequest,
    RenewalResult,
)


def provider_for(settings: Settings, name: str | None = None) -> Provider:
    """The named provider, or the configured default (Stripe when a secret key is set)."""
    name = name or ("stripe" if settings.stripe_secret_key else "sandbox")
    if name == "stripe":
        from livecast.subscriptions.providers.stripe import StripeProvider

        return StripeProvider(settings.stripe_secret_key, settings.stripe_api_base)
    if name == "sandbox":
        from livecast.subscriptions.providers.sandbox import SandboxProvider

        return SandboxProvider()
    raise ValueError(f"unknown payment provider {name!r}")


__all__ = ["CheckoutRequest", "CheckoutResult", "Provider", "RenewalRequest", "RenewalResult", "provider_for"]
