"""The creator dashboard: stream key, stream info, ingest health and chat moderation settings.

Every form posts back to ``/dashboard/...`` and gets the whole dashboard re-rendered with a
notice or an error, so the page works without JavaScript. Chat changes go through
:mod:`livecast.chat.service` with the signed-in user as the acting broadcaster, exactly as the
same change made from chat or Helix would, so every chat node hears about it on the bus.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from livecast.app import error_response
from livecast.chat import service as chat
from livecast.chat.models import ROLE_MODERATOR, ROLE_VIP
from livecast.chat.state import Chatter
from livecast.discovery import analytics
from livecast.discovery.models import Category
from livecast.identity import service
from livecast.identity.models import Channel, User
from livecast.ingest.models import Stream
from livecast.platform import Platform
from livecast.store.base import utcnow
from livecast.web import queries
from livecast.web.pages import render
from livecast.web.session import check_csrf, current_user

LANGUAGES = ["en", "de", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "ru", "sv", "tr", "zh", "other"]
SLOW_CHOICES = [0, 3, 5, 10, 20, 30, 60, 120]
FOLLOWER_CHOICES = [(-1, "Off"), (0, "Any follower"), (10, "10 minutes"), (30, "30 minutes"), (60, "1 hour"),
                    (1440, "1 day"), (10080, "1 week"), (43200, "1 month")]
AUTOMOD_LEVELS = ["Off", "Less filtering", "Some filtering", "More filtering", "Maximum filtering"]
SIGN_IN = "/login?next=/dashboard"

FormHandler = Callable[[Request, User, FormData], Awaitable[Response]]
"""A dashboard form's handler, called with the signed-in user and the form once the CSRF token checked out."""


@dataclass(frozen=True)
class Person:
    login: str
    display_name: str
    detail: str = ""


def install(app: FastAPI, platform: Platform) -> None:
    @app.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard(request: Request) -> Response:
        return await _dashboard(request, platform)

    @app.get("/web/api/dashboard/health", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard_health(request: Request) -> Response:
        """The health panel alone, for the dashboard's periodic refresh."""
        viewer = await current_user(request)
        if viewer is None:
            return error_response(401, "Sign in first")
        async with platform.db.session() as db:
            profile = await queries.channel_profile(db, viewer.login)
        response = await render(request, "_health_fragment.html", profile=profile,
                                ingest_url=_ingest_url(request, platform))
        response.headers["Cache-Control"] = "no-store"
        return response

    @_form_route(app, platform, "/dashboard/stream-key")
    async def reset_key(request: Request, viewer: User, form: FormData) -> Response:
        if form.get("confirm") != "reset":
            return await _dashboard(request, platform, error="Tick the box to confirm the reset.", status=400)
        async with platform.db.session() as db:
            key = await service.reset_stream_key(db, viewer.id)
        return await _dashboard(request, platform, new_key=key,
                                notice="New stream key created. Copy it now: it will not be shown again.")

    @_form_route(app, platform, "/dashboard/channel")
    async def edit_channel(request: Request, viewer: User, form: FormData) -> Response:
        title = str(form.get("title", "")).strip()
        category_name = str(form.get("category", "")).strip()
        language = str(form.get("language", "en")).strip() or "en"
        tags = [t.strip() for t in str(form.get("tags", "")).split(",") if t.strip()]
        problem = _channel_problem(title, category_name, language, tags)
        if problem:
            return await _dashboard(request, platform, error=problem, status=400)
        async with platform.db.session() as db:
            channel = await db.get(Channel, viewer.id)
            if channel is None:
                return await _dashboard(request, platform, error="No channel for this account.", status=404)
            channel.title, channel.category_name, channel.language, channel.tags = title, category_name, language, tags
            channel.category_id = await _category_id(db, category_name)
            # A change made while live shows on the live stream too, as on Twitch.
            for stream in (await db.execute(
                select(Stream).where(Stream.user_id == viewer.id, Stream.status.in_(queries.ON_AIR))
            )).scalars():
                stream.title, stream.category_name, stream.category_id = title, category_name, channel.category_id
                stream.language, stream.tags = language, tags
        return await _dashboard(request, platform, notice="Stream info saved.")

    @_form_route(app, platform, "/dashboard/chat/settings")
    async def chat_settings(request: Request, viewer: User, form: FormData) -> Response:
        try:
            changes = {
                "slow_seconds": int(str(form.get("slow_seconds", "0"))),
                "followers_only_minutes": int(str(form.get("followers_only_minutes", "-1"))),
                "subscribers_only": form.get("subscribers_only") == "on",
                "emote_only": form.get("emote_only") == "on",
                "unique_chat": form.get("unique_chat") == "on",
                "automod_level": int(str(form.get("automod_level", "0"))),
            }
        except ValueError:
            return await _dashboard(request, platform, error="Chat settings must be numbers.", status=400)
        return await _chat_action(request, platform, "Chat settings saved.",
                                  chat.update_settings(platform, viewer.login, Chatter.from_user(viewer), **changes))

    @_form_route(app, platform, "/dashboard/chat/role")
    async def chat_role(request: Request, viewer: User, form: FormData) -> Response:
        login = _login_field(form)
        role, action = form.get("role"), form.get("action")
        actor = Chatter.from_user(viewer)
        calls = {
            ("moderator", "add"): chat.add_moderator, ("moderator", "remove"): chat.remove_moderator,
            ("vip", "add"): chat.add_vip, ("vip", "remove"): chat.remove_vip,
        }
        call = calls.get((str(role), str(action)))
        if call is None or not login:
            return await _dashboard(request, platform, error="Name a user to add or remove.", status=400)
        verb = "is now a" if action == "add" else "is no longer a"
        return await _chat_action(request, platform, f"{login} {verb} {'VIP' if role == 'vip' else role}.",
                                  call(platform, viewer.login, actor, login))

    @_form_route(app, platform, "/dashboard/chat/ban")
    async def chat_ban(request: Request, viewer: User, form: FormData) -> Response:
        login = _login_field(form)
        if not login:
            return await _dashboard(request, platform, error="Name a user to ban or unban.", status=400)
        actor = Chatter.from_user(viewer)
        if form.get("action") == "unban":
            return await _chat_action(request, platform, f"{login} is unbanned.",
                                      chat.unban_user(platform, viewer.login, actor, login))
        reason = str(form.get("reason", ""))[:500]
        return await _chat_action(request, platform, f"{login} is banned.",
                                  chat.ban_user(platform, viewer.login, actor, login, reason=reason))

    @_form_route(app, platform, "/dashboard/chat/terms")
    async def chat_terms(request: Request, viewer: User, form: FormData) -> Response:
        actor = Chatter.from_user(viewer)
        if form.get("action") == "remove":
            return await _chat_action(request, platform, "Blocked term removed.",
                                      chat.remove_blocked_term(platform, viewer.login, actor,
                                                               str(form.get("term_id", ""))[:32]))
        text = str(form.get("text", "")).strip()
        return await _chat_action(request, platform, "Blocked term added.",
                                  chat.add_blocked_term(platform, viewer.login, actor, text))


def _form_route(app: FastAPI, platform: Platform, path: str) -> Callable[[FormHandler], FormHandler]:
    """Registers a dashboard form's POST handler behind :func:`_checked_form`, so that every form
    refuses a signed-out visitor or a stale CSRF token the same way and none can forget to."""

    def register(handler: FormHandler) -> FormHandler:
        async def endpoint(request: Request) -> Response:
            checked = await _checked_form(request, platform)
            if isinstance(checked, Response):
                return checked
            return await handler(request, *checked)

        app.add_api_route(path, endpoint, methods=["POST"], response_class=HTMLResponse, include_in_schema=False,
                          name=handler.__name__)
        return handler

    return register


async def _checked_form(request: Request, platform: Platform) -> tuple[User, FormData] | Response:
    """The signed-in user and their form, or the response that refuses the post."""
    viewer = await current_user(request)
    if viewer is None:
        return RedirectResponse(SIGN_IN, status_code=303)
    form = await request.form()
    if not await check_csrf(request, str(form.get("csrf", ""))):
        return await _dashboard(request, platform, error="Your session expired; reload and retry.", status=403)
    return viewer, form


def _login_field(form: FormData) -> str:
    """The form's ``login`` as chat knows it: typed with or without ``@``, in any case."""
    return str(form.get("login", "")).strip().lstrip("@").lower()[:25]


async def _chat_action(request: Request, platform: Platform, notice: str, action: Any) -> Response:
    try:
        await action
    except chat.ChatError as exc:
        return await _dashboard(request, platform, error=exc.message, status=400)
    return await _dashboard(request, platform, notice=notice)


def _channel_problem(title: str, category: str, language: str, tags: list[str]) -> str:
    if len(title) > 140:
        return "The title is limited to 140 characters."
    if len(category) > 256:
        return "The category name is too long."
    if language not in LANGUAGES:
        return "Pick a language from the list."
    if len(tags) > 10:
        return "At most 10 tags."
    for tag in tags:
        if len(tag) > 25 or not re.match(r"^\w+$", tag):
            return f"Tag {tag!r}: up to 25 letters or digits, no spaces or symbols."
    return ""


async def _category_id(db: AsyncSession, name: str) -> str:
    """The category's id, creating the category the first time someone streams under it."""
    if not name:
        return ""
    row = (await db.execute(select(Category).where(func.lower(Category.name) == name.lower()))).scalar_one_or_none()
    if row is None:
        row = Category(name=name)
        db.add(row)
        await db.flush()
    return str(row.id)


def _ingest_url(request: Request, platform: Platform) -> str:
    """OBS's "Server": the host the browser reached us on, and the RTMP port actually bound."""
    host = request.url.hostname or platform.settings.host
    rtmp_port = platform.ports.get("rtmp", platform.settings.rtmp_port)
    return f"rtmp://{host}:{rtmp_port}/app"


async def _chat_panel(platform: Platform, login: str) -> dict[str, Any]:
    """Room settings, moderators, VIPs, active bans and blocked terms, for the chat panels."""
    state = await chat.channel(platform, login)
    terms = await chat.list_blocked_terms(platform, login)
    now = utcnow()
    ids = set(state.roles) | set(state.bans)
    async with platform.db.session() as db:
        users = {u.id: u for u in (await db.execute(select(User).where(User.id.in_(ids)))).scalars()} if ids else {}

    def people(role: str) -> list[Person]:
        return sorted((Person(users[uid].login, users[uid].display_name) for uid, roles in state.roles.items()
                       if role in roles and uid in users), key=lambda p: p.login)

    bans = []
    for uid, expires in state.bans.items():
        if uid in users and (expires is None or expires > now):
            left = "" if expires is None else f"timed out, {int((expires - now).total_seconds()) // 60 + 1} min left"
            bans.append(Person(users[uid].login, users[uid].display_name, left or "banned"))
    return {
        "settings": state.settings, "moderators": people(ROLE_MODERATOR), "vips": people(ROLE_VIP),
        "bans": sorted(bans, key=lambda p: p.login), "terms": terms,
    }


async def _dashboard(
    request: Request, platform: Platform, *, new_key: str = "", notice: str = "", error: str = "", status: int = 200
) -> Response:
    viewer = await current_user(request)
    if viewer is None:
        return RedirectResponse(SIGN_IN, status_code=303)
    async with platform.db.session() as db:
        channel = await db.get(Channel, viewer.id)
        profile = await queries.channel_profile(db, viewer.login)
        days = await analytics.daily(db, viewer.id, days=30)
        last_id = (await db.execute(
            select(Stream.id).where(Stream.user_id == viewer.id).order_by(Stream.started_at.desc()).limit(1)
        )).scalar_one_or_none()
        last = await analytics.stream_summary(db, last_id) if last_id else None
    return await render(
        request, "dashboard.html", status=status, channel=channel, profile=profile,
        ingest_url=_ingest_url(request, platform), key_prefix=channel.stream_key_prefix if channel else "",
        new_key=new_key, notice=notice, error=error, languages=LANGUAGES, chat=await _chat_panel(platform, viewer.login),
        slow_choices=SLOW_CHOICES, follower_choices=FOLLOWER_CHOICES, automod_levels=AUTOMOD_LEVELS,
        analytics_days=list(reversed(days)), last_stream=last,
    )
