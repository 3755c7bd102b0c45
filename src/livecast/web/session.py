"""Browser sessions: an opaque random id in an HttpOnly cookie, its hash in the database.

Pages call :func:`current_user`; forms carry the session's CSRF token, checked with
:func:`check_csrf`. Sign-in and sign-up pages create sessions with :func:`start_session`.
"""

from __future__ import annotations

import datetime as dt
import secrets

from fastapi import Request, Response
from sqlalchemy import delete, select

from livecast.identity.credentials import same, sha256
from livecast.identity.models import User, WebSession
from livecast.platform import Platform
from livecast.store.base import utcnow

COOKIE = "livecast_session"
LIFETIME = dt.timedelta(days=30)


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


async def start_session(request: Request, response: Response, user: User) -> WebSession:
    """Sign ``user`` in with a fresh session id; any session this browser held before ends."""
    raw = secrets.token_urlsafe(32)
    row = WebSession(id_hash=sha256(raw), user_id=user.id, csrf=secrets.token_urlsafe(24),
                     expires_at=utcnow() + LIFETIME)
    previous = request.cookies.get(COOKIE, "")
    async with _platform(request).db.session() as db:
        if previous and len(previous) < 128:
            await db.execute(delete(WebSession).where(WebSession.id_hash == sha256(previous)))
        db.add(row)
    response.set_cookie(
        COOKIE, raw, max_age=int(LIFETIME.total_seconds()), httponly=True, samesite="lax",
        secure=request.url.scheme == "https", path="/",
    )
    return row


async def _session_row(request: Request) -> WebSession | None:
    if "livecast_web_session" in request.scope:
        cached: WebSession | None = request.scope["livecast_web_session"]
        return cached
    raw = request.cookies.get(COOKIE, "")
    row = None
    if raw and len(raw) < 128:
        async with _platform(request).db.session() as db:
            row = await db.get(WebSession, sha256(raw))
        if row is not None and row.expires_at <= utcnow():
            row = None
    request.scope["livecast_web_session"] = row
    return row


async def current_user(request: Request) -> User | None:
    """The signed-in user, or None. Cached per request."""
    if "livecast_user" in request.scope:
        cached: User | None = request.scope["livecast_user"]
        return cached
    row = await _session_row(request)
    user = None
    if row is not None:
        async with _platform(request).db.session() as db:
            user = await db.get(User, row.user_id)
    request.scope["livecast_user"] = user
    return user


async def csrf_token(request: Request) -> str:
    row = await _session_row(request)
    return row.csrf if row is not None else ""


async def check_csrf(request: Request, submitted: str) -> bool:
    row = await _session_row(request)
    return row is not None and bool(submitted) and same(row.csrf, submitted)


# Forms shown before anyone is signed in (sign-in, sign-up) have no session to hold a CSRF
# token, yet a forged sign-in would put a victim in the attacker's account. They use a
# double-submit cookie instead: a random value in a SameSite cookie, repeated in the form.
FORM_COOKIE = "livecast_form"


def form_token(request: Request) -> str:
    """This browser's pre-session CSRF token (new if it has none); see :func:`set_form_cookie`."""
    cached = request.scope.get("livecast_form_token")
    if isinstance(cached, str):
        return cached
    token = request.cookies.get(FORM_COOKIE, "")
    if not (16 <= len(token) <= 64):
        token = secrets.token_urlsafe(24)
    request.scope["livecast_form_token"] = token
    return token


def set_form_cookie(request: Request, response: Response) -> None:
    response.set_cookie(FORM_COOKIE, form_token(request), max_age=24 * 3600, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https", path="/")


def check_form_token(request: Request, submitted: str) -> bool:
    cookie = request.cookies.get(FORM_COOKIE, "")
    return bool(cookie) and bool(submitted) and same(cookie, submitted)


async def end_session(request: Request, response: Response) -> None:
    raw = request.cookies.get(COOKIE, "")
    if raw:
        async with _platform(request).db.session() as db:
            await db.execute(delete(WebSession).where(WebSession.id_hash == sha256(raw)))
    response.delete_cookie(COOKIE, path="/")


async def sessions_for(platform: Platform, user_id: str) -> int:
    async with platform.db.session() as db:
        return len((await db.execute(select(WebSession).where(WebSession.user_id == user_id))).scalars().all())
