"""HTTP: the Stripe webhook, the web app's subscribe/cancel/share endpoints, and Helix.

Thin on purpose: parse, check who is asking, call :mod:`purchases`, :mod:`service` or
:mod:`webhooks`, and answer with the ``{"error", "status", "message"}`` envelope on refusal.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from livecast.app import error_response
from livecast.platform import Platform
from livecast.subscriptions import service, webhooks
from livecast.subscriptions.events import Outbox
from livecast.subscriptions.pricing import PricingError
from livecast.subscriptions.providers import stripe
from livecast.subscriptions.purchases import Purchase, checkout

MAX_WEBHOOK_BYTES = 1 << 20


async def stripe_webhook(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    body = await request.body()
    if len(body) > MAX_WEBHOOK_BYTES:
        return error_response(413, "webhook body too large")
    try:
        stripe.verify(body, request.headers.get("stripe-signature", ""), platform.settings.stripe_webhook_secret)
        event = stripe.parse_event(body)
    except stripe.SignatureError as exc:
        return error_response(400, f"invalid Stripe signature: {exc}")
    except stripe.EventError as exc:
        return error_response(400, str(exc))
    try:
        status = await webhooks.handle_stripe(platform, event)
    except webhooks.WebhookError as exc:
        return error_response(exc.status, exc.message)
    return JSONResponse({"received": True, "status": status})


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        doc = json.loads(await request.body() or b"{}")
    except ValueError:
        raise service.SubscriptionError("bad_json", "the body must be a JSON object") from None
    if not isinstance(doc, dict):
        raise service.SubscriptionError("bad_json", "the body must be a JSON object")
    return doc


async def _signed_in(request: Request, doc: dict[str, Any]) -> str:
    from livecast.web.session import check_csrf, current_user

    user = await current_user(request)
    if user is None:
        raise service.SubscriptionError("login_required", "sign in first", 401)
    submitted = request.headers.get("x-csrf-token", "") or str(doc.get("csrf", ""))
    if not await check_csrf(request, submitted):
        raise service.SubscriptionError("csrf", "missing or wrong CSRF token", 403)
    return user.id


async def _user_id(platform: Platform, login_or_id: Any) -> str:
    """A login or a numeric id; an unknown name is the same clear 404 as an unknown id."""
    from sqlalchemy import select

    from livecast.identity.models import User

    value = str(login_or_id or "").lower().lstrip("@#")
    async with platform.db.session() as db:
        user = (await db.execute(select(User).where(User.login == value))).scalar_one_or_none()
        if user is None:
            user = await db.get(User, value)
    if user is None:
        raise service.SubscriptionError("invalid_user", f"no user {login_or_id!r}", 404)
    return user.id


def _refusal(exc: Exception) -> Response:
    if isinstance(exc, service.SubscriptionError):
        return JSONResponse({"error": exc.code, "status": exc.status, "message": exc.message}, status_code=exc.status)
    assert isinstance(exc, PricingError)
    return JSONResponse({"error": exc.code, "status": 400, "message": exc.message}, status_code=400)


async def web_checkout(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    try:
        doc = await _json_body(request)
        payer = await _signed_in(request, doc)
        channel_id = await _user_id(platform, doc.get("channel"))
        kind = str(doc.get("kind", "subscribe"))
        recipient = await _user_id(platform, doc.get("recipient")) if kind == "gift" else ""
        try:
            count = int(doc.get("count", 1))
        except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's Infinity
            raise service.SubscriptionError("bad_count", "count must be an integer") from None
        result = await checkout(platform, Purchase(kind, channel_id, payer, str(doc.get("tier", "1000")),
                                                   recipient, count, bool(doc.get("anonymous", False))))
    except (service.SubscriptionError, PricingError) as exc:
        return _refusal(exc)
    return JSONResponse(result)


async def web_action(request: Request) -> Response:
    """``cancel``, ``resume``, ``change-tier`` and ``share`` (the once-per-period resub message)."""
    platform: Platform = request.app.state.platform
    action = request.path_params["action"]
    try:
        doc = await _json_body(request)
        user_id = await _signed_in(request, doc)
        channel_id = await _user_id(platform, doc.get("channel"))

        async def apply(db: Any, out: Outbox) -> Any:
            if action == "cancel":
                return await service.cancel(db, out, channel_id=channel_id, user_id=user_id)
            if action == "resume":
                return await service.resume(db, out, channel_id=channel_id, user_id=user_id)
            if action == "change-tier":
                return await service.change_tier(db, out, channel_id=channel_id, user_id=user_id,
                                                 tier=str(doc.get("tier", "")))
            if action == "share":
                return await service.share_resub(db, out, channel_id=channel_id, user_id=user_id,
                                                 message=str(doc.get("message", "")),
                                                 share_streak=bool(doc.get("share_streak", True)))
            raise service.SubscriptionError("not_found", f"no action {action!r}", 404)

        sub = await service.run(platform, apply)
    except (service.SubscriptionError, PricingError) as exc:
        return _refusal(exc)
    return JSONResponse({"subscription": service.describe(sub)})


def install(app: FastAPI, platform: Platform) -> None:
    app.add_api_route("/subscriptions/webhooks/stripe", stripe_webhook, methods=["POST"], include_in_schema=False)
    app.add_api_route("/subscriptions/checkout", web_checkout, methods=["POST"], include_in_schema=False)
    app.add_api_route("/subscriptions/{action}", web_action, methods=["POST"], include_in_schema=False)
    try:
        from livecast.subscriptions import helix
    except ImportError:  # Helix is not part of this build
        return
    app.include_router(helix.router, prefix="/helix", tags=["helix"])
    app.include_router(helix.router, prefix="/mock", include_in_schema=False)
