"""Small JSON endpoints the pages' scripts call: stream status, chat token, follow, hls.js.

They live under ``/web/`` so that they can never collide with a channel login, and every
state-changing one checks the session's CSRF token from the ``X-CSRF-Token`` header.
"""

from __future__ import annotations

import functools
import secrets
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from livecast import metrics
from livecast.app import error_response
from livecast.bus import publish_event
from livecast.discovery import follows, raids
from livecast.identity import service
from livecast.platform import Platform
from livecast.subscriptions import pricing
from livecast.subscriptions import service as subs
from livecast.subscriptions.providers import CheckoutRequest, provider_for
from livecast.web import queries
from livecast.web.session import check_csrf, current_user

CHAT_TOKEN_LIFETIME = 3600
CHAT_SCOPES = ["chat:read", "chat:edit"]
TIER = "1000"
HLS_JS = Path("node_modules") / "hls.js" / "dist" / "hls.min.js"


@functools.cache
def hls_js_path() -> Path | None:
    """hls.js as ``npm install`` left it, looked for above this package and the working directory.

    Serving the installed file (rather than a CDN) keeps viewers' browsers talking only to
    this Livecast, and the version pinned by package.json.
    """
    here = Path(__file__).resolve()
    for base in [*here.parents, Path.cwd().resolve(), *Path.cwd().resolve().parents]:
        candidate = base / HLS_JS
        if candidate.is_file():
            return candidate
    return None


def install(app: FastAPI, platform: Platform) -> None:
    @app.get("/web/vendor/hls.min.js", include_in_schema=False)
    async def hls_js() -> Response:
        path = hls_js_path()
        if path is None:
            return error_response(404, "hls.js is not installed; run scripts/setup (npm install)")
        return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"})

    @app.get("/web/api/channel/{login}/status", include_in_schema=False)
    async def channel_status(login: str) -> Response:
        async with platform.db.session() as db:
            profile = await queries.channel_profile(db, login[:25])
        if profile is None:
            return error_response(404, "No such channel")
        raid = await raids.raid_state(platform.bus, profile.user_id)
        return JSONResponse(
            {
                "login": profile.login,
                "raid": raid,
                "status": profile.status,
                "stream_id": profile.stream_id,
                "viewer_count": profile.viewer_count,
                "title": profile.title,
                "category_name": profile.category_name,
                "started_at": profile.started_at.isoformat() if profile.started_at else None,
                "renditions": profile.renditions,
            },
            headers={"Cache-Control": "no-store"},
        )

    @app.post("/web/chat-token", include_in_schema=False)
    async def chat_token(request: Request) -> Response:
        """A short-lived chat token so the page's IRC client can sign in as the session's user."""
        user = await current_user(request)
        if user is None:
            return error_response(401, "Sign in to chat")
        if not await check_csrf(request, request.headers.get("x-csrf-token", "")):
            return error_response(403, "Invalid CSRF token")
        async with platform.db.session() as db:
            app_row = await service.ensure_admin_app(db)
            issued = await service.issue_token(
                db, app_row.client_id, user.id, CHAT_SCOPES, lifetime=CHAT_TOKEN_LIFETIME, refresh=False
            )
        metrics.web_chat_tokens.inc()
        return JSONResponse(
            {"token": issued.access_token, "login": user.login, "expires_in": issued.expires_in},
            headers={"Cache-Control": "no-store"},
        )

    @app.post("/web/api/follow/{login}", include_in_schema=False)
    async def follow(login: str, request: Request) -> Response:
        return await _set_follow(request, login, True)

    @app.post("/web/api/unfollow/{login}", include_in_schema=False)
    async def unfollow(login: str, request: Request) -> Response:
        return await _set_follow(request, login, False)

    @app.post("/web/api/subscribe/{login}", include_in_schema=False)
    async def subscribe(login: str, request: Request) -> Response:
        """Buy a Tier 1 subscription through the configured provider (the sandbox one by default).

        The sandbox completes at once; a real provider answers with a checkout URL to send the
        viewer to, and its webhook applies the purchase later.
        """
        user = await current_user(request)
        if user is None:
            return error_response(401, "Sign in to subscribe")
        if not await check_csrf(request, request.headers.get("x-csrf-token", "")):
            return error_response(403, "Invalid CSRF token")
        async with platform.db.session() as db:
            channel = await service.get_user_by_login(db, login[:25])
            if channel is None:
                return error_response(404, "No such channel")
            try:
                price = await pricing.price_for(db, platform.settings, channel.id, TIER)
            except pricing.PricingError as exc:
                return error_response(400, exc.message)
        base = platform.base_url()
        checkout = await provider_for(platform.settings).start_checkout(CheckoutRequest(
            kind="subscribe", channel_id=channel.id, payer_id=user.id, tier=TIER, unit_amount=price.unit_amount,
            currency=price.currency, description=f"{pricing.tier_name(TIER)} subscription to {channel.display_name}",
            success_url=f"{base}/{channel.login}", cancel_url=f"{base}/{channel.login}",
            idempotency_key=secrets.token_hex(16),
        ))
        if not checkout.completed:
            return JSONResponse({"subscribed": False, "redirect": checkout.url})
        payment = subs.Payment(checkout.provider, checkout.payment_ref, price.unit_amount, price.currency)
        try:
            await subs.run(platform, lambda db, out: subs.subscribe(
                db, out, platform.settings, channel_id=channel.id, user_id=user.id, tier=TIER, payment=payment))
        except (subs.SubscriptionError, pricing.PricingError) as exc:
            return error_response(getattr(exc, "status", 400), exc.message)
        return JSONResponse({"subscribed": True, "tier": TIER})

    async def _set_follow(request: Request, login: str, on: bool) -> Response:
        user = await current_user(request)
        if user is None:
            return error_response(401, "Sign in to follow")
        if not await check_csrf(request, request.headers.get("x-csrf-token", "")):
            return error_response(403, "Invalid CSRF token")
        announce: dict[str, str] | None = None
        async with platform.db.session() as db:
            channel = await service.get_user_by_login(db, login[:25])
            if channel is None:
                return error_response(404, "No such channel")
            if channel.id == user.id:
                return error_response(400, "You cannot follow your own channel")
            if on:
                row, new = await follows.follow(db, user.id, channel.id)
                if new:
                    announce = await follows.follow_event(db, row)
            else:
                await follows.unfollow(db, user.id, channel.id)
            count = await follows.follower_count(db, channel.id)
        if announce is not None:  # after the commit: EventSub must never announce a follow that rolled back
            await publish_event(platform.bus, "channel.follow", announce)
        return JSONResponse({"following": on, "followers": count})
