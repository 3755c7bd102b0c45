"""Discovery's own small JSON endpoints for the player and the web app.

``POST /api/playback/{login}/token`` and ``POST /api/heartbeat`` count viewers;
``/api/notifications`` is the signed-in user's feed (and badge count) and preferences;
``/api/recommendations`` and ``/api/following/live`` feed the home page. Helix search and
browse endpoints call the service functions directly; they are not duplicated here.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from livecast import metrics
from livecast.app import error_response
from livecast.bus import Bus
from livecast.discovery import browse, cursor, notifications, recommend, viewers
from livecast.identity.models import User
from livecast.platform import Platform
from livecast.web.session import check_csrf, current_user

VIEWER_COOKIE = "livecast_viewer"
TOKENS_PER_MINUTE = 20  # per client address: enough for tabs and reloads, not for a farm
HEARTBEAT_INTERVAL = 30

T = TypeVar("T")


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _secret(platform: Platform) -> bytes:
    cached: bytes | None = platform.state.get("discovery.secret")
    if cached is None:
        cached = await viewers.shared_secret(platform.bus, platform.settings.secret_key)
        platform.state["discovery.secret"] = cached
    return cached


async def _json_body(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body() or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _language(request: Request, explicit: str | None) -> str | None:
    if explicit:
        return explicit[:8].lower()
    header = request.headers.get("accept-language", "")
    first = header.split(",", 1)[0].split(";", 1)[0].strip()
    return first.split("-", 1)[0].lower()[:8] or None


async def _signed_in_page(
    request: Request, platform: Platform, refusal: str, read: Callable[[AsyncSession, User], Awaitable[T]]
) -> T | Response:
    """*read*'s page for the signed-in user, or the 401 (*refusal*) or the 400 for an ``after`` cursor we did not issue."""
    user = await current_user(request)
    if user is None:
        return error_response(401, refusal)
    try:
        async with platform.db.session() as db:
            return await read(db, user)
    except cursor.InvalidCursor:
        return error_response(400, "The parameter \"after\" was malformed")


async def _signed_in_body(request: Request) -> tuple[User, dict[str, Any] | None] | Response:
    """The signed-in user of a change and the JSON body (None when it is not an object), or the
    401 or 403 that refuses the change: it needs the session and its token in ``X-CSRF-Token``."""
    user = await current_user(request)
    if user is None:
        return error_response(401, "Sign in first")
    if not await check_csrf(request, request.headers.get("x-csrf-token", "")):
        return error_response(403, "Missing or wrong X-CSRF-Token header")
    return user, await _json_body(request)


def install(app: FastAPI, platform: Platform) -> None:
    bus: Bus = platform.bus

    @app.post("/api/playback/{login}/token")
    async def playback_token(login: str, request: Request) -> Response:
        allowed, _, retry_in = await bus.take_tokens(
            f"discovery:tokens:{_client(request)}", 1, TOKENS_PER_MINUTE, TOKENS_PER_MINUTE / 60
        )
        if not allowed:
            return error_response(429, "Too many playback tokens requested", headers={"Retry-After": str(max(1, int(retry_in / TOKENS_PER_MINUTE)))})
        async with platform.db.session() as db:
            channel_id = (await db.execute(select(User.id).where(User.login == login.lower()[:25]))).scalar()
        if channel_id is None:
            return error_response(404, "No such channel")
        user = await current_user(request)
        cookie = request.cookies.get(VIEWER_COOKIE, "")
        fresh_cookie = not (16 <= len(cookie) <= 64 and cookie.isascii())
        if fresh_cookie:
            cookie = secrets.token_urlsafe(18)
        # One signed-in user is one viewer on every device; anonymous viewers are one per browser.
        session_id = f"u:{user.id}" if user is not None else f"a:{cookie}"
        token = viewers.issue_token(await _secret(platform), channel_id, session_id)
        response = JSONResponse(
            {"token": token, "channel_id": channel_id, "heartbeat_interval": HEARTBEAT_INTERVAL,
             "expires_in": viewers.TOKEN_LIFETIME}
        )
        if fresh_cookie:
            response.set_cookie(VIEWER_COOKIE, cookie, max_age=365 * 86400, httponly=True, samesite="lax",
                                secure=request.url.scheme == "https", path="/")
        return response

    @app.post("/api/heartbeat")
    async def heartbeat(request: Request) -> Response:
        body = await _json_body(request)
        token = body.get("token") if body else None
        if not isinstance(token, str):
            return error_response(400, "Body must be JSON with a playback token: {\"token\": ...}")
        grant = viewers.verify_token(await _secret(platform), token)
        if grant is None:
            return error_response(401, "Invalid or expired playback token")
        # "stream" (the channel login, as players send it) is optional: the token names the channel.
        if body and body.get("stream") is not None and not isinstance(body.get("stream"), str):
            return error_response(400, "stream must be a string")
        counted = await viewers.heartbeat(bus, grant, address=_client(request))
        metrics.viewer_heartbeats.inc()
        if grant.session_id.startswith("u:"):
            user_id = grant.session_id[2:]
            minute = viewers.current_minute()
            if await bus.set(f"discovery:watched:{user_id}:{grant.channel_id}:{minute}", b"1", ttl=120,
                             only_if_absent=True):
                async with platform.db.session() as db:
                    await recommend.record_watch(db, user_id, grant.channel_id)
                # Channel points for watching (livecast.community.worker credits it once per minute).
                await bus.publish("community.watch", json.dumps(
                    {"channel_id": grant.channel_id, "user_id": user_id, "minute": minute}).encode())
        return JSONResponse({"counted": counted, "next_in": HEARTBEAT_INTERVAL})

    @app.get("/api/notifications")
    async def notification_feed(
        request: Request, first: int = Query(default=20, ge=1, le=100), after: str | None = Query(default=None)
    ) -> Response:
        found = await _signed_in_page(request, platform, "Sign in to see notifications",
                                      lambda db, user: notifications.feed(db, user.id, first=first, after=after))
        if isinstance(found, Response):
            return found
        items, unread, next_cursor = found
        data = [
            {"id": str(i.id), "type": i.kind, "channel_id": i.channel_id, "channel_login": i.channel_login,
             "channel_name": i.channel_name, "stream_id": i.stream_id, "read": i.read,
             "created_at": i.created_at.isoformat().replace("+00:00", "Z")}
            for i in items
        ]
        page = {"cursor": next_cursor} if next_cursor else {}
        return JSONResponse({"data": data, "unread": unread, "pagination": page})

    @app.post("/api/notifications/read")
    async def notifications_read(request: Request) -> Response:
        checked = await _signed_in_body(request)
        if isinstance(checked, Response):
            return checked
        user, body = checked
        up_to = body.get("up_to") if body else None
        if up_to is not None and not (isinstance(up_to, int) and not isinstance(up_to, bool)):
            return error_response(400, "up_to must be a notification id (integer)")
        async with platform.db.session() as db:
            changed = await notifications.mark_read(db, user.id, up_to)
        return JSONResponse({"marked": changed})

    @app.put("/api/notifications/preferences/{login}")
    async def notification_preference(login: str, request: Request) -> Response:
        checked = await _signed_in_body(request)
        if isinstance(checked, Response):
            return checked
        user, body = checked
        enabled = body.get("enabled") if body else None
        if not isinstance(enabled, bool):
            return error_response(400, "Body must be JSON: {\"enabled\": true|false}")
        async with platform.db.session() as db:
            channel_id = (await db.execute(select(User.id).where(User.login == login.lower()[:25]))).scalar()
            if channel_id is None:
                return error_response(404, "No such channel")
            await notifications.set_preference(db, user.id, channel_id, enabled)
        return JSONResponse({"channel_id": channel_id, "enabled": enabled})

    @app.get("/api/recommendations")
    async def recommendations(
        request: Request, first: int = Query(default=12, ge=1, le=50), language: str | None = Query(default=None)
    ) -> Response:
        user = await current_user(request)
        lang = _language(request, language)
        async with platform.db.session() as db:
            if user is not None:
                rows = await recommend.recommend(db, user.id, language=language, limit=first)
            else:
                rows = await recommend.popular_live(db, language=lang, limit=first)
        data = [
            {"broadcaster_id": r.channel_id, "broadcaster_login": r.login, "broadcaster_name": r.display_name,
             "is_live": r.is_live, "viewer_count": r.viewer_count, "game_name": r.category_name,
             "language": r.language, "reason": r.reason}
            for r in rows
        ]
        return JSONResponse({"data": data})

    @app.get("/api/following/live")
    async def following_live(
        request: Request, first: int = Query(default=20, ge=1, le=100), after: str | None = Query(default=None)
    ) -> Response:
        found = await _signed_in_page(request, platform, "Sign in first",
                                      lambda db, user: browse.followed_live(db, user.id, first=first, after=after))
        if isinstance(found, Response):
            return found
        rows, next_cursor = found
        data = [
            {"id": r.stream.id, "user_id": r.stream.user_id, "user_login": r.login, "user_name": r.display_name,
             "game_id": r.stream.category_id, "game_name": r.stream.category_name, "title": r.stream.title,
             "viewer_count": r.stream.viewer_count, "language": r.stream.language,
             "started_at": r.stream.started_at.isoformat().replace("+00:00", "Z")}
            for r in rows
        ]
        return JSONResponse({"data": data, "pagination": {"cursor": next_cursor} if next_cursor else {}})

