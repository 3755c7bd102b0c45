"""Stripe: Checkout Sessions for purchases, signed webhooks for what happened next.

The signature scheme is Stripe's: the ``Stripe-Signature`` header carries ``t=<unix time>``
and one or more ``v1=<hex>``; ``v1`` is HMAC-SHA256 of ``"<t>.<raw body>"`` keyed with the
endpoint's signing secret. A timestamp more than 300 s away is refused so a captured request
cannot be replayed later. Verification and event parsing are pure functions (no I/O); only
:meth:`StripeProvider.start_checkout` talks to the network, through httpx.

Purchases are Checkout payments (``mode=payment``). A subscription purchase also saves the
card for later (``customer_creation=always`` and ``payment_intent_data[setup_future_usage]=
off_session``); each renewal then charges it with an off-session PaymentIntent (``confirm``,
``off_session``) whose ``Idempotency-Key`` is derived from the subscription and the period, so
a renewal retried after a crash gets Stripe's first answer back instead of a second charge.
Renewals are our own monthly PaymentIntents rather than Stripe Billing subscriptions so that
prices, tiers, periods and the ledger stay in one place (the same as the sandbox's).
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

from livecast.subscriptions.providers.base import (
    DECLINED,
    PENDING,
    SUCCEEDED,
    UNSUPPORTED,
    CheckoutRequest,
    CheckoutResult,
    RenewalRequest,
    RenewalResult,
)

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
    if isinstance(ref, dict):  # expanded
        ref = ref.get("id") or ""
    if doc["type"].startswith("payment_intent."):
        ref = obj.get("id") or ""
    elif doc["type"].startswith("checkout.session.") and not ref:
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
    body: dict[str, Any] = {
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
    if request.kind == "subscribe":  # keep the card so the next periods can be charged off-session
        body["customer_creation"] = "always"
        body["payment_intent_data"] = {"metadata": meta, "setup_future_usage": "off_session"}
    out: list[tuple[str, str]] = []
    _form("", body, out)
    return out


def renewal_form(request: RenewalRequest, payment_method: str) -> list[tuple[str, str]]:
    """An off-session PaymentIntent confirmed at once; its metadata lets the webhook find the period."""
    body = {
        "amount": request.amount,
        "currency": request.currency.lower(),
        "customer": request.customer,
        "payment_method": payment_method,
        "confirm": True,
        "off_session": True,
        "description": f"Subscription renewal ({request.period_key})",
        "metadata": {"livecast_kind": "renewal", "subscription_id": request.subscription_id,
                     "period_key": request.period_key, "tier": request.tier},
    }
    out: list[tuple[str, str]] = []
    _form("", body, out)
    return out


def _id(value: Any) -> str:
    """An object reference as Stripe sends it: an id string, or the expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else ""


def renewal_outcome(status_code: int, doc: Any) -> RenewalResult:
    """Stripe's answer to a renewal PaymentIntent, as a :class:`RenewalResult`.

    A card refused off-session is a 402 whose ``error.payment_intent`` is the failed intent
    (``card_declined``, or ``authentication_required`` since nobody is there to do 3-D Secure).
    Any other error is transient or ours: raised, so the job retries with the same key.
    """
    if not isinstance(doc, dict):
        raise RuntimeError(f"Stripe answered {status_code} without JSON")
    error: dict[str, Any] = doc["error"] if isinstance(doc.get("error"), dict) else {}
    if status_code == 402:
        intent = error.get("payment_intent")
        reason = error.get("decline_code") or error.get("code") or error.get("message") or "declined"
        return RenewalResult(DECLINED, _id(intent), reason=str(reason))
    if status_code >= 400:
        raise RuntimeError(f"Stripe refused the renewal ({status_code}): {error.get('message', '')}")
    status = doc.get("status")
    ref = _id(doc)
    amount = doc.get("amount_received") or doc.get("amount")
    currency = doc.get("currency")
    paid = amount if isinstance(amount, int) else None
    cur = currency if isinstance(currency, str) else None
    method = _id(doc.get("payment_method"))
    if status == "succeeded":
        return RenewalResult(SUCCEEDED, ref, paid, cur, method)
    if status == "processing":
        return RenewalResult(PENDING, ref, paid, cur, method)
    return RenewalResult(DECLINED, ref, reason=str(status))  # requires_action, requires_payment_method...


class StripeProvider:
    name = "stripe"

    def __init__(self, secret_key: str, api_base: str = "https://api.stripe.com",
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.secret_key = secret_key
        self.api_base = api_base.rstrip("/")
        self.transport = transport

    def _headers(self, idempotency_key: str = "") -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.secret_key}",
                   "Content-Type": "application/x-www-form-urlencoded"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    async def start_checkout(self, request: CheckoutRequest) -> CheckoutResult:
        async with httpx.AsyncClient(transport=self.transport, timeout=15) as client:
            response = await client.post(f"{self.api_base}/v1/checkout/sessions", content=urlencode(checkout_form(request)),
                                         headers=self._headers(request.idempotency_key))
        doc = response.json()
        if response.status_code >= 400 or not isinstance(doc, dict):
            message = (doc.get("error") or {}).get("message", "") if isinstance(doc, dict) else ""
            raise RuntimeError(f"Stripe refused the checkout session: {message or response.status_code}")
        return CheckoutResult(self.name, False, url=str(doc.get("url", "")), session_id=str(doc.get("id", "")))

    async def charge_renewal(self, request: RenewalRequest) -> RenewalResult:
        """Charge the saved card off-session; the idempotency key makes a retry safe.

        A subscription bought before cards were saved has no customer: it lapses, as before.
        When the card is not known yet (the checkout event carries only the customer), it is
        read from the PaymentIntent that paid the current period.
        """
        if not request.customer:
            return RenewalResult(UNSUPPORTED, reason="no saved customer")
        async with httpx.AsyncClient(transport=self.transport, timeout=30) as client:
            payment_method = request.payment_method
            if not payment_method and request.original_ref.startswith("pi_"):
                response = await client.get(f"{self.api_base}/v1/payment_intents/{request.original_ref}",
                                            headers=self._headers())
                if response.status_code >= 400:
                    raise RuntimeError(f"Stripe could not read {request.original_ref}: {response.status_code}")
                payment_method = _id(response.json().get("payment_method"))
            if not payment_method:
                return RenewalResult(UNSUPPORTED, reason="no saved payment method")
            response = await client.post(f"{self.api_base}/v1/payment_intents",
                                         content=urlencode(renewal_form(request, payment_method)),
                                         headers=self._headers(request.idempotency_key))
        try:
            doc = response.json()
        except ValueError:
            doc = None
        result = renewal_outcome(response.status_code, doc)
        if result.payment_method or result.status != SUCCEEDED:
            return result
        return RenewalResult(result.status, result.ref, result.amount, result.currency, payment_method)
