"""The viewer- and creator-facing web pages, at Twitch's URLs.

Routes stay thin: they read through :mod:`livecast.web.queries`, change state through the
domains' service functions, and render Jinja templates. This component is installed last
because ``/{login}`` matches any single path segment; :data:`RESERVED` names the segments that
belong to other parts of Livecast and must never be read as a channel.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from livecast import metrics
from livecast.discovery import raids, recommend
from livecast.identity.service import RESERVED_LOGINS
from livecast.platform import Platform
from livecast.subscriptions import service as subscriptions
from livecast.web import api, queries, templating
from livecast.web.session import csrf_token, current_user

RESERVED = RESERVED_LOGINS
LOGIN_SEGMENT = re.compile(r"^[A-Za-z0-9_]{1,25}$")


async def render(request: Request, template: str, status: int = 200, **ctx: Any) -> Response:
    """The shared layout's renderer, plus ``viewer`` and ``page_csrf`` that these pages use."""
    viewer = await current_user(request)
    ctx.setdefault("viewer", viewer)
    ctx.setdefault("page_csrf", await csrf_token(request) if viewer is not None else "")
    response = await templating.render(request, template, status_code=status, **ctx)
    metrics.web_page_renders.labels(template).inc()
    return response


def is_channel_segment(segment: str) -> bool:
    return bool(LOGIN_SEGMENT.match(segment)) and segment.lower() not in RESERVED


def _ensure_static(app: FastAPI) -> None:
    """Mount the package's static folder unless the sign-in pages' component already did."""
    from pathlib import Path

    for route in app.routes:
        if isinstance(route, Mount) and route.path == "/static":
            return
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")


def install(app: FastAPI, platform: Platform) -> None:
    from livecast.web import connections, dashboard

    api.install(app, platform)
    dashboard.install(app, platform)
    connections.install(app, platform)
    _ensure_static(app)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home(request: Request) -> Response:
        viewer = await current_user(request)
        async with platform.db.session() as db:
            live = await queries.live_channels(db, viewer_id=viewer.id if viewer else None, limit=48)
            categories = await queries.top_categories(db, limit=12)
            recs = await recommend.recommend(db, viewer.id, limit=12) if viewer else []
        followed = [c for c in live if c.followed]
        by_login = {c.login: c for c in live if not c.followed}
        recommended = [(by_login[r.login], r.reason) for r in recs if r.is_live and r.login in by_login]
        shown = {c.login for c, _ in recommended}
        others = [c for c in live if not c.followed and c.login not in shown]
        return await render(request, "home.html", followed=followed, recommended=recommended, live=others,
                            categories=categories)

    @app.get("/directory", response_class=HTMLResponse, include_in_schema=False)
    async def directory(request: Request) -> Response:
        async with platform.db.session() as db:
            categories = await queries.top_categories(db, limit=120)
            live = await queries.live_channels(db, limit=60)
        return await render(request, "directory.html", categories=categories, live=live)

    @app.get("/directory/category/{name}", response_class=HTMLResponse, include_in_schema=False)
    async def category(request: Request, name: str) -> Response:
        async with platform.db.session() as db:
            canonical = await queries.category_exists(db, name[:256])
            live = await queries.live_channels(db, category=canonical, limit=120) if canonical else []
        if canonical is None:
            return await render(request, "not_found.html", status=404, what=f"category {name!r}")
        return await render(request, "category.html", category_name=canonical, live=live,
                            viewers=sum(c.viewer_count for c in live))

    @app.get("/search", response_class=HTMLResponse, include_in_schema=False)
    async def search(request: Request, term: str = "") -> Response:
        term = term.strip()[:100]
        results = None
        if term:
            async with platform.db.session() as db:
                results = await queries.search(db, term)
        return await render(request, "search.html", term=term, results=results)

    @app.get("/{login}", response_class=HTMLResponse, include_in_schema=False)
    async def channel(request: Request, login: str) -> Response:
        if not is_channel_segment(login):
            return await render(request, "not_found.html", status=404, what="this page")
        viewer = await current_user(request)
        async with platform.db.session() as db:
            profile = await queries.channel_profile(db, login)
            following = subscribed = False
            videos: list[queries.RecentItem] = []
            clips: list[queries.RecentItem] = []
            if profile is not None:
                videos, clips = await queries.recent_media(db, profile.user_id, profile.login)
            if profile is not None and viewer is not None:
                following = await queries.is_following(db, viewer.id, profile.user_id)
                subscribed = await subscriptions.is_subscriber(db, profile.user_id, viewer.id) is not None
        if profile is None:
            return await render(request, "not_found.html", status=404, what=f"channel {login!r}")
        if profile.login != login:
            return RedirectResponse(f"/{quote(profile.login)}", status_code=301)
        raid = await raids.raid_state(platform.bus, profile.user_id)
        return await render(request, "channel.html", channel=profile, following=following, subscribed=subscribed,
                            is_owner=viewer is not None and viewer.id == profile.user_id, videos=videos, clips=clips,
                            raid_done=raid["id"] if raid is not None and raid["in_seconds"] <= 0 else None)
