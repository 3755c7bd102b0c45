"""The web pages over plain HTTP: routing, listing order, search, dashboard forms, JSON helpers.

The browser-level behaviour (player, chat panel) is in test_web_browser.py; these check what
the server renders and refuses, quickly, on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from typing import Any

import httpx
import pytest

from livecast.discovery import search as ranked_search
from livecast.discovery.models import Category
from livecast.identity import service
from livecast.identity.credentials import sha256
from livecast.identity.models import WebSession
from livecast.ingest.models import Stream
from livecast.store.base import utcnow
from livecast.web.session import COOKIE, LIFETIME
from tests.conftest import Server


async def signed_in(server: Server, user_id: str) -> tuple[str, str]:
    """A browser session for ``user_id`` without going through the sign-in form: (cookie, csrf)."""
    raw, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    async with server.platform.db.session() as db:
        db.add(WebSession(id_hash=sha256(raw), user_id=user_id, csrf=csrf, expires_at=utcnow() + LIFETIME))
    return raw, csrf


async def go_live(server: Server, user_id: str, *, title: str = "", category: str = "", viewers: int = 0,
                  status: str = "live", health: dict[str, Any] | None = None,
                  renditions: list[str] | None = None) -> str:
    """A streams row as the ingest domain writes it when a publisher connects."""
    from tests.helix_support import seed_viewers

    await seed_viewers(server, user_id, viewers)
    async with server.platform.db.session() as db:
        row = Stream(user_id=user_id, title=title, category_name=category, viewer_count=viewers, status=status,
                     health=health or {}, renditions=renditions or [])
        db.add(row)
        await db.flush()
        return row.id


def client(server: Server, cookie: str = "") -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.http_url, cookies={COOKIE: cookie} if cookie else None,
                             follow_redirects=False, timeout=10)


def order(html: str, *logins: str) -> list[str]:
    """The logins in the order their cards appear on the page."""
    found = re.findall(r'class="lc-card" href="/([a-z0-9_]+)"', html)
    return [login for login in found if login in logins]


async def test_home_lists_live_by_viewers_and_followed_first(server: Server) -> None:
    users = {name: await server.create_user(name) for name in ("alpha", "bravo", "charlie", "viewer1")}
    await go_live(server, users["alpha"]["user_id"], title="small stream", category="Chess", viewers=3)
    await go_live(server, users["bravo"]["user_id"], title="big stream", category="Just Chatting", viewers=90)
    await go_live(server, users["charlie"]["user_id"], title="mid", category="Chess", viewers=40,
                  status="reconnecting")
    async with client(server) as http:
        home = await http.get("/")
    assert home.status_code == 200
    assert order(home.text, "alpha", "bravo", "charlie") == ["bravo", "charlie", "alpha"]
    assert "RECONNECTING" in home.text
    # top categories by live viewers: Just Chatting (90) before Chess (43)
    cats = re.findall(r'href="/directory/category/([^"]+)"', home.text)
    assert cats[:2] == ["Just%20Chatting", "Chess"]

    async with server.platform.db.session() as db:
        from livecast.discovery.follows import follow

        await follow(db, users["viewer1"]["user_id"], users["alpha"]["user_id"])
    cookie, _ = await signed_in(server, users["viewer1"]["user_id"])
    async with client(server, cookie) as http:
        home = await http.get("/")
    assert order(home.text, "alpha", "bravo", "charlie") == ["alpha", "bravo", "charlie"]
    assert "Live channels you follow" in home.text


async def test_directory_category_and_search(server: Server) -> None:
    a = await server.create_user("speedy_runner")
    b = await server.create_user("painter")
    await go_live(server, a["user_id"], title="any% world record attempts", category="Celeste", viewers=12)
    await go_live(server, b["user_id"], title="oil painting", category="Art", viewers=5)
    async with server.platform.db.session() as db:
        db.add(Category(name="Retro Games"))
    async with client(server) as http:
        directory = await http.get("/directory")
        assert directory.status_code == 200
        assert "Celeste" in directory.text and "Retro Games" in directory.text
        celeste = await http.get("/directory/category/celeste")  # case-insensitive
        assert celeste.status_code == 200
        assert order(celeste.text, "speedy_runner", "painter") == ["speedy_runner"]
        assert (await http.get("/directory/category/Retro Games")).status_code == 200
        assert (await http.get("/directory/category/Nothing Here")).status_code == 404

        found = await http.get("/search", params={"term": "world record"})
        assert order(found.text, "speedy_runner", "painter") == ["speedy_runner"]
        found = await http.get("/search", params={"term": "PAINT"})
        assert 'href="/painter"' in found.text
        async with server.platform.db.session() as db:
            await ranked_search.reindex(db)
        found = await http.get("/search", params={"term": "paintr"})  # a typo: discovery's index finds it
        assert 'href="/painter"' in found.text
        assert 'href="/directory/category/Retro%20Games"' in (
            await http.get("/search", params={"term": "retro gmes"})).text
        # LIKE wildcards are matched literally
        found = await http.get("/search", params={"term": "%"})
        assert order(found.text, "speedy_runner", "painter") == ["speedy_runner"]
        found = await http.get("/search", params={"term": "_"})
        assert 'href="/painter"' not in found.text and 'href="/speedy_runner"' in found.text
        html = (await http.get("/search", params={"term": "<script>x</script>"})).text
        assert "<script>x</script>" not in html and "&lt;script&gt;" in html


async def test_channel_page_states_and_reserved_words(server: Server) -> None:
    u = await server.create_user("streamer")
    async with client(server) as http:
        page = await http.get("/streamer")
        assert page.status_code == 200
        assert 'id="player-offline"' in page.text and "streamer is offline." in page.text
        assert '"status": "offline"' in page.text
        assert (await http.get("/web/api/channel/streamer/status")).json()["status"] == "offline"

        await go_live(server, u["user_id"], title="hello world", viewers=7, renditions=["source", "480p30"])
        page = await http.get("/streamer")
        assert '"status": "live"' in page.text and "hello world" in page.text
        status = (await http.get("/web/api/channel/streamer/status")).json()
        assert status["status"] == "live" and status["viewer_count"] == 7
        assert status["renditions"] == ["source", "480p30"]
        assert '<script src="/web/vendor/hls.min.js">' in page.text
        assert "cdn" not in page.text.lower()

        redirect = await http.get("/StreamER")
        assert redirect.status_code == 301 and redirect.headers["location"] == "/streamer"
        assert (await http.get("/nobody_here")).status_code == 404
        assert (await http.get("/web/api/channel/nobody_here/status")).status_code == 404
        # A user whose login is a reserved word still cannot shadow a route.
        assert (await http.get("/dashboard")).status_code == 303
        assert (await http.get("/healthz")).json()["status"] == "ok"
        for word in ("videos", "emotes", "static", "web"):
            assert (await http.get(f"/{word}")).status_code == 404

        js = await http.get("/web/vendor/hls.min.js")
        assert js.status_code == 200 and "text/javascript" in js.headers["content-type"]
        assert len(js.content) > 100_000
        for asset in ("/static/css/app.css", "/static/js/chat.js", "/static/js/irc.js", "/static/js/player.js"):
            assert (await http.get(asset)).status_code == 200, asset


async def _first(subscription: Any) -> bytes:
    async for _, data in subscription:
        return bytes(data)
    raise AssertionError("subscription ended")


async def test_follow_and_chat_token_need_session_and_csrf(server: Server) -> None:
    star = await server.create_user("star")
    fan = await server.create_user("fan")
    cookie, csrf = await signed_in(server, fan["user_id"])
    async with client(server) as anon:
        assert (await anon.post("/web/api/follow/star")).status_code == 401
        assert (await anon.post("/web/chat-token")).status_code == 401
    async with client(server, cookie) as http:
        assert (await http.post("/web/api/follow/star")).status_code == 403
        assert (await http.post("/web/api/follow/star", headers={"X-CSRF-Token": "wrong"})).status_code == 403
        events = await server.platform.bus.subscribe("event.channel.follow")
        ok = await http.post("/web/api/follow/star", headers={"X-CSRF-Token": csrf})
        assert ok.json() == {"following": True, "followers": 1}
        # EventSub's channel.follow hears about follows made on the web too
        announced = json.loads(await asyncio.wait_for(_first(events), 10))
        await events.close()
        assert (announced["user_id"], announced["broadcaster_user_id"]) == (fan["user_id"], star["user_id"])
        assert "Following" in (await http.get("/star")).text
        assert (await http.post("/web/api/follow/fan", headers={"X-CSRF-Token": csrf})).status_code == 400
        assert (await http.post("/web/api/follow/ghost", headers={"X-CSRF-Token": csrf})).status_code == 404
        off = await http.post("/web/api/unfollow/star", headers={"X-CSRF-Token": csrf})
        assert off.json() == {"following": False, "followers": 0}

        assert (await http.post("/web/api/subscribe/star")).status_code == 403
        sub = await http.post("/web/api/subscribe/star", headers={"X-CSRF-Token": csrf})
        assert sub.json() == {"subscribed": True, "tier": "1000"}
        again = await http.post("/web/api/subscribe/star", headers={"X-CSRF-Token": csrf})
        assert again.status_code == 409 and "already subscribed" in again.json()["message"]
        own = await http.post("/web/api/subscribe/fan", headers={"X-CSRF-Token": csrf})
        assert own.status_code == 400

        assert (await http.post("/web/chat-token")).status_code == 403
        token = (await http.post("/web/chat-token", headers={"X-CSRF-Token": csrf})).json()
        assert token["login"] == "fan" and 0 < token["expires_in"] <= 3600
    async with server.platform.db.session() as db:
        info = await service.validate_token(db, token["token"])
    assert info is not None and info.user_id == fan["user_id"]
    assert set(info.scopes) == {"chat:read", "chat:edit"}
    assert star["login"] == "star"


async def test_dashboard_key_reset_and_stream_info(server: Server) -> None:
    me = await server.create_user("creator")
    cookie, csrf = await signed_in(server, me["user_id"])
    async with client(server) as anon:
        assert (await anon.get("/dashboard")).headers["location"].startswith("/login")
    async with client(server, cookie) as http:
        page = await http.get("/dashboard")
        assert page.status_code == 200
        assert "No streams in the last 30 days." in page.text
        ingest = re.search(r'id="ingest-url"[^>]*value="(rtmp://127\.0\.0\.1:\d+/app)"', page.text)
        assert ingest is not None
        if "rtmp" in server.platform.ports:  # the port this process's RTMP server really bound
            assert ingest.group(1) == f"rtmp://127.0.0.1:{server.rtmp_port}/app"
        assert me["stream_key"][:12] in page.text and me["stream_key"] not in page.text
        assert "You are offline" in page.text

        refused = await http.post("/dashboard/stream-key", data={"csrf": csrf})
        assert refused.status_code == 400 and "confirm" in refused.text
        refused = await http.post("/dashboard/stream-key", data={"csrf": "nope", "confirm": "reset"})
        assert refused.status_code == 403
        reset = await http.post("/dashboard/stream-key", data={"csrf": csrf, "confirm": "reset"})
        assert reset.status_code == 200
        new_key = re.search(r'id="stream-key"[^>]*value="([^"]+)"', reset.text)
        assert new_key is not None and new_key.group(1) != me["stream_key"]
        assert "will not be shown again" in reset.text
        async with server.platform.db.session() as db:
            assert (await service.user_for_stream_key(db, me["stream_key"])) is None
            owner = await service.user_for_stream_key(db, new_key.group(1))
        assert owner is not None and owner.id == me["user_id"]
        assert new_key.group(1) not in (await http.get("/dashboard")).text  # shown once

        stream_id = await go_live(server, me["user_id"], title="old", health={
            "bitrate_kbps": 2500.5, "fps": 30, "keyframe_interval": 8.0, "resolution": "1280x720",
            "transcode": {"renditions": ["source", "audio_only"], "decision": "passthrough",
                          "reason": "not a partner"}}, renditions=["source"])
        saved = await http.post("/dashboard/channel", data={
            "csrf": csrf, "title": "New title!", "category": "Science", "language": "de", "tags": "Chill, Science"})
        assert saved.status_code == 200 and "Stream info saved" in saved.text
        assert 'value="New title!"' in saved.text
        assert "2500.5 kbps" in saved.text and "1280x720" in saved.text and "8.0 s" in saved.text
        assert "passthrough" in saved.text and "not a partner" in saved.text and "source, audio_only" in saved.text
        assert "keyframe interval to 2 seconds" in saved.text  # 8 s keyframes: advice shown
        assert "Current stream" in saved.text
        day = re.search(r'id="analytics-days">.*?<tbody>\s*<tr><td>([0-9-]+)</td><td>(\d+)</td>', saved.text, re.S)
        assert day is not None and day.group(1) == utcnow().date().isoformat() and day.group(2) == "1"
        bad = await http.post("/dashboard/channel", data={"csrf": csrf, "title": "x", "tags": "no spaces allowed"})
        assert bad.status_code == 400
        fragment = await http.get("/web/api/dashboard/health")
        assert 'data-status="live"' in fragment.text and "30 fps" in fragment.text
    async with server.platform.db.session() as db:
        stream = await db.get(Stream, stream_id)
        assert stream is not None
        assert (stream.title, stream.category_name, stream.language, stream.tags) == (
            "New title!", "Science", "de", ["Chill", "Science"])
    async with client(server) as http:
        assert order((await http.get("/directory/category/science")).text, "creator") == ["creator"]


@pytest.mark.postgres
async def test_pages_on_postgres(pg_server: Server) -> None:
    u = await pg_server.create_user("pg_star")
    await go_live(pg_server, u["user_id"], title="on postgres 100%", category="Chess", viewers=4)
    async with client(pg_server) as http:
        assert order((await http.get("/")).text, "pg_star") == ["pg_star"]
        assert order((await http.get("/search", params={"term": "100%"})).text, "pg_star") == ["pg_star"]
        assert order((await http.get("/directory/category/CHESS")).text, "pg_star") == ["pg_star"]
        assert (await http.get("/pg_star")).status_code == 200


async def test_dashboard_forms_refuse_a_visitor_and_a_stale_token(server: Server) -> None:
    """Every form posts behind the same two checks: a signed-out visitor is sent to sign in, and a
    post without the session's CSRF token gets the dashboard back with a 403; none answers a GET."""
    me = await server.create_user("formcheck")
    cookie, _ = await signed_in(server, me["user_id"])
    forms = ("/dashboard/stream-key", "/dashboard/channel", "/dashboard/chat/settings", "/dashboard/chat/role",
             "/dashboard/chat/ban", "/dashboard/chat/terms")
    async with client(server) as anon, client(server, cookie) as http:
        for path in forms:
            visitor = await anon.post(path, data={"csrf": "x", "confirm": "reset"})
            assert visitor.status_code == 303 and visitor.headers["location"] == "/login?next=/dashboard", path
            stale = await http.post(path, data={"csrf": "stale", "confirm": "reset", "login": "someone"})
            assert stale.status_code == 403 and "Your session expired; reload and retry." in stale.text, path
            assert (await http.get(path)).status_code == 405, path


async def test_dashboard_chat_moderation_panels(server: Server) -> None:
    from livecast.chat import service as chat

    me = await server.create_user("modhost")
    await server.create_user("helper")
    await server.create_user("troll")
    cookie, csrf = await signed_in(server, me["user_id"])
    async with client(server, cookie) as http:
        page = await http.get("/dashboard")
        assert "Nobody is banned." in page.text and "No blocked terms." in page.text
        ok = await http.post("/dashboard/chat/settings", data={
            "csrf": csrf, "slow_seconds": "30", "followers_only_minutes": "10", "emote_only": "on",
            "automod_level": "2"})
        assert ok.status_code == 200 and "Chat settings saved." in ok.text
        state = await chat.channel(server.platform, "modhost")
        assert (state.settings.slow_seconds, state.settings.followers_only_minutes, state.settings.emote_only,
                state.settings.subscribers_only, state.settings.automod_level) == (30, 10, True, False, 2)
        assert '<option value="30" selected>' in ok.text
        bad = await http.post("/dashboard/chat/settings", data={"csrf": csrf, "slow_seconds": "999"})
        assert bad.status_code == 400 and "out of range" in bad.text
        assert (await http.post("/dashboard/chat/settings", data={"csrf": "x"})).status_code == 403

        added = await http.post("/dashboard/chat/role", data={"csrf": csrf, "role": "moderator", "action": "add",
                                                              "login": "@Helper"})
        assert "helper is now a moderator." in added.text
        assert re.search(r'id="list-moderator">\s*<li><span>helper</span>', added.text)
        again = await http.post("/dashboard/chat/role", data={"csrf": csrf, "role": "moderator", "action": "add",
                                                              "login": "helper"})
        assert again.status_code == 400 and "already" in again.text
        await http.post("/dashboard/chat/role", data={"csrf": csrf, "role": "vip", "action": "add", "login": "troll"})
        banned = await http.post("/dashboard/chat/ban", data={"csrf": csrf, "action": "ban", "login": "troll",
                                                              "reason": "spam"})
        assert "troll is banned." in banned.text and re.search(r'id="list-bans">\s*<li><span>troll', banned.text)
        nobody = await http.post("/dashboard/chat/ban", data={"csrf": csrf, "action": "ban", "login": "ghost"})
        assert nobody.status_code == 400 and "Invalid username" in nobody.text
        unbanned = await http.post("/dashboard/chat/ban", data={"csrf": csrf, "action": "unban", "login": "troll"})
        assert "Nobody is banned." in unbanned.text

        term = await http.post("/dashboard/chat/terms", data={"csrf": csrf, "action": "add", "text": "badword"})
        assert "Blocked term added." in term.text and "badword" in term.text
        assert await chat.list_blocked_terms(server.platform, "modhost")
        term_id = re.search(r'name="term_id" value="([^"]+)"', term.text)
        assert term_id is not None
        removed = await http.post("/dashboard/chat/terms", data={"csrf": csrf, "action": "remove",
                                                                 "term_id": term_id.group(1)})
        assert "No blocked terms." in removed.text
        assert not await chat.list_blocked_terms(server.platform, "modhost")
    state = await chat.channel(server.platform, "modhost")
    assert not state.bans


async def test_bad_input_gets_a_clear_answer_not_a_crash(server: Server) -> None:
    me = await server.create_user("sturdy")
    cookie, csrf = await signed_in(server, me["user_id"])
    async with client(server, cookie) as http:
        assert (await http.get("/search", params={"term": "ä" * 5000})).status_code == 200
        assert (await http.get("/search", params={"term": "\x00'\";--"})).status_code == 200
        assert (await http.get("/directory/category/" + "x" * 3000)).status_code == 404
        assert (await http.get("/web/api/channel/" + "y" * 300 + "/status")).status_code == 404
        assert (await http.get("/" + "z" * 40)).status_code == 404
        long_title = await http.post("/dashboard/channel", data={"csrf": csrf, "title": "t" * 141})
        assert long_title.status_code == 400 and "140 characters" in long_title.text
        bad_lang = await http.post("/dashboard/channel", data={"csrf": csrf, "language": "klingon"})
        assert bad_lang.status_code == 400
        not_numbers = await http.post("/dashboard/chat/settings", data={"csrf": csrf, "slow_seconds": "fast"})
        assert not_numbers.status_code == 400 and "numbers" in not_numbers.text
        no_role = await http.post("/dashboard/chat/role", data={"csrf": csrf, "role": "king", "action": "add",
                                                                "login": "x"})
        assert no_role.status_code == 400
        assert (await http.post("/dashboard/chat/terms", data={"csrf": csrf, "text": "x"})).status_code == 400
        for path in ("/dashboard/stream-key", "/dashboard/channel", "/dashboard/chat/ban"):
            assert (await http.post(path, content=b"\xff\xfe", headers={"content-type": "text/plain"})).status_code \
                in (400, 403)
        assert "Traceback" not in (await http.get("/dashboard")).text
