"""Stripe: Checkout Sessions for purchases, signed webhooks for what happened next.

The signature scheme is Stripe's: the ``Stripe-Signature`` header carries ``t=<unix time>``
and one or more ``v1=<hex>``; ``v1`` is HMAC-SHA256 of ``"<t>.<raw body>"`` keyed with the
endpoint's signing secret. A timestamp more than 300 s away is refused so a captured request
cannot be replayed later. Verification and event parsing are pure functions (no I/O); only
:meth:`StripeProvider.start_checkout` talks to the network, through httpx.

Purchases are one-off payments (Checkout ``mode=payment``), one per period: a Stripe
subscription is not renewed off-session, so it lapses at its period end unless bought again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from livecast.subscriptions.providers.base import CheckoutRequest, CheckoutResult

TOLERANCE_S = 300


class SignatureError(Exception):
    pass


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header value (what Stripe sends; tests and tools use it)."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(payload: bytes, header: str, secret: str, *, now: float | None = None,
           tolerance: int = TOLERANCE_S) -> None:
    """Raise :class:`SignatureError` unless ``header`` signs ``payload`` with ``secret``."""
    if not secret:
        raise SignatureError("no webhook signing secret is configured")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("malformed timestamp in Stripe-Signature") from None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureError("Stripe-Signature needs t= and v1=")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    # As bytes: a header is latin-1 text, and compare_digest raises TypeError on non-ASCII str.
    if not any(hmac.compare_digest(expected.encode(), sig.encode()) for sig in signatures):
        raise SignatureError("no v1 signature matches the payload")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError("timestamp outside the tolerance")


@dataclass(frozen=True)
class StripeEvent:
    """What Livecast needs from one Stripe event."""

    id: str
    type: str
    ref: str  # the PaymentIntent id that ties a checkout to its refunds and disputes
    obj: dict[str, Any]

    @property
    def metadata(self) -> dict[str, str]:
        meta = self.obj.get("metadata") or {}
        return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


class EventError(ValueError):
    pass


def parse_event(payload: bytes) -> StripeEvent:
    try:
        doc = json.loads(payload)
    except ValueError:
        raise EventError("the body is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) or not isinstance(doc.get("type"), str):
        raise EventError("not a Stripe event (id and type are required)")
    data = doc.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise EventError("the event has no data.object")
    ref = obj.get("payment_intent") or ""
    if doc["type"].startswith("checkout.session.") and not ref:
        ref = obj.get("id") or ""
    return StripeEvent(doc["id"], doc["type"], str(ref), obj)


def _form(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    """Stripe's form encoding of nested objects: ``a[b][0][c]=v``."""
    if isinstance(value, dict):
        for key, item in value.items():
            _form(f"{prefix}[{key}]" if prefix else str(key), item, out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _form(f"{prefix}[{i}]", item, out)
    elif isinstance(value, bool):
        out.append((prefix, "true" if value else "false"))
    else:
        out.append((prefix, str(value)))


def checkout_form(request: CheckoutRequest) -> list[tuple[str, str]]:
    meta = request.metadata()
    body = {
        "mode": "payment",
        "success_url": request.success_url,
        "cancel_url": request.cancel_url,
        "client_reference_id": request.payer_id,
        "line_items": [{
            "quantity": request.quantity,
            "price_data": {"currency": request.currency.lower(), "unit_amount": request.unit_amount,
                           "product_data": {"name": request.description or f"Tier {int(request.tier) // 1000} sub"}},
        }],
        "metadata": meta,
        "payment_intent_data": {"metadata": meta},
    }
    out: list[tuple[str, str]] = []
    _form("", body, out)
    return out


class StripeProvider:
    name = "stripe"

    def __init__(self, secret_key: str, api_base: str = "https://api.stripe.com",
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.secret_key = secret_key
        self.api_base = api_base.rstrip("/")
        self.transport = transport

    async def start_checkout(self, request: CheckoutRequest) -> CheckoutResult:
        headers = {"Authorization": f"Bearer {self.secret_key}",
                   "Content-Type": "application/x-www-form-urlencoded"}
        if request.idempotency_key:
            headers["Idempotency-Key"] = request.idempotency_key
        async with httpx.AsyncClient(transport=self.transport, timeout=15) as client:
            response = await client.post(f"{self.api_base}/v1/checkout/sessions", content=urlencode(checkout_form(request)),
                                         headers=headers)
        doc = response.json()
        if response.status_code >= 400 or not isinstance(doc, dict):
            message = (doc.get("error") or {}).get("message", "") if isinstance(doc, dict) else ""
            raise RuntimeError(f"Stripe refused the checkout session: {message or response.status_code}")
        return CheckoutResult(self.name, False, url=str(doc.get("url", "")), session_id=str(doc.get("id", "")))

    async def charge_renewal(self, subscription_id: str, amount: int, currency: str, period_key: str) -> str | None:
        return None  # one-off Checkout payments leave no card to charge off-session
