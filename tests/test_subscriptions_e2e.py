"""A subscription seen from outside: the web button, chat badges and sub-only mode, EventSub,
Helix, and the payouts report from the real ``livecast`` command."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import secrets
import sys
from typing import Any

import httpx
import websockets

from livecast.identity.credentials import sha256
from livecast.identity.models import WebSession
from livecast.store.base import utcnow
from livecast.web.session import COOKIE
from tests.conftest import Server
from tests.test_chat_tcp import Client


async def sign_in(server: Server, user_id: str) -> tuple[dict[str, str], str]:
    raw, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
    async with server.platform.db.session() as db:
        db.add(WebSession(id_hash=sha256(raw), user_id=user_id, csrf=csrf,
                          expires_at=utcnow().replace(year=utcnow().year + 1)))
    return {COOKIE: raw}, csrf


async def livecast(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "livecast", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


def helix(user: dict[str, Any]) -> dict[str, str]:
    return {"Client-Id": user["client_id"], "Authorization": f"Bearer {user['token']}"}


async def test_subscription_end_to_end(server: Server) -> None:
    streamer = await server.create_user("streamer")
    viewer = await server.create_user("viewer")
    lurker = await server.create_user("lurker")
    cookies, csrf = await sign_in(server, viewer["user_id"])
    ws_url = server.http_url.replace("http", "ws") + "/ws"
    async with httpx.AsyncClient(base_url=server.http_url) as c, websockets.connect(ws_url) as ws:
        # EventSub over WebSocket, authorised by the broadcaster
        session = json.loads(await ws.recv())["payload"]["session"]
        for kind in ("channel.subscribe", "channel.subscription.message"):
            r = await c.post("/helix/eventsub/subscriptions", headers=helix(streamer), json={
                "type": kind, "version": "1", "condition": {"broadcaster_user_id": streamer["user_id"]},
                "transport": {"method": "websocket", "session_id": session["id"]}})
            assert r.status_code == 202, r.text

        # chat: the room is sub-only; nobody but the broadcaster may talk yet
        owner = await Client.in_room(server.irc_port, "streamer", streamer["token"], "streamer")
        chatter = await Client.in_room(server.irc_port, "viewer", viewer["token"], "streamer")
        other = await Client.in_room(server.irc_port, "lurker", lurker["token"], "streamer")
        owner.send("PRIVMSG #streamer :/subscribers")
        await chatter.expect("ROOMSTATE", lambda m: m.tags.get("subs-only") == "1")
        chatter.send("PRIVMSG #streamer :let me in")
        await chatter.expect("NOTICE", lambda m: m.tags.get("msg-id") == "msg_subsonly")

        # the web app's subscribe button: signed in, with the CSRF token
        r = await c.post("/subscriptions/checkout", json={"channel": "streamer", "tier": "1000"})
        assert r.status_code == 401 and r.json()["error"] == "login_required"
        c.cookies.update(cookies)
        r = await c.post("/subscriptions/checkout", json={"channel": "streamer", "tier": "1000"})
        assert r.status_code == 403 and r.json()["error"] == "csrf"
        r = await c.post("/subscriptions/checkout", headers={"X-CSRF-Token": csrf},
                         json={"channel": "streamer", "tier": "9000"})
        assert r.status_code == 400 and r.json()["error"] == "unknown_price"
        r = await c.post("/subscriptions/checkout", headers={"X-CSRF-Token": csrf},
                         json={"channel": "streamer", "kind": "gift", "recipient": "nobody_here"})
        assert r.status_code == 404 and r.json()["error"] == "invalid_user"
        r = await c.post("/subscriptions/checkout", headers={"X-CSRF-Token": csrf},
                         json={"channel": "streamer", "tier": "1000"})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["status"] == "completed" and doc["provider"] == "sandbox"
        assert doc["subscriptions"][0]["cumulative_months"] == 1

        note = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert note["metadata"]["subscription_type"] == "channel.subscribe"
        assert note["payload"]["event"] == {
            "user_id": viewer["user_id"], "user_login": "viewer", "user_name": "viewer",
            "broadcaster_user_id": streamer["user_id"], "broadcaster_user_login": "streamer",
            "broadcaster_user_name": "streamer", "tier": "1000", "is_gift": False}
        notice = await owner.expect("USERNOTICE", lambda m: m.tags.get("msg-id") == "sub")
        assert notice.tags["login"] == "viewer" and notice.tags["msg-param-sub-plan"] == "1000"
        assert notice.tags["system-msg"] == "viewer subscribed at Tier 1."

        # the subscriber's next message carries the badge and months; the room accepts it
        await asyncio.sleep(0.2)
        chatter.send("PRIVMSG #streamer :thanks for the badge")
        msg = await owner.expect("PRIVMSG", lambda m: m.params[1] == "thanks for the badge")
        assert "subscriber/0" in msg.tags["badges"].split(",")
        assert msg.tags["badge-info"] == "subscriber/1" and msg.tags["subscriber"] == "1"
        other.send("PRIVMSG #streamer :me too?")
        await other.expect("NOTICE", lambda m: m.tags.get("msg-id") == "msg_subsonly")

        # Helix, with Twitch's scopes
        r = await c.get("/helix/subscriptions", params={"broadcaster_id": streamer["user_id"]},
                        headers=helix(streamer))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total"] == 1 and body["points"] == 1 and body["pagination"] == {}
        assert body["data"] == [{
            "broadcaster_id": streamer["user_id"], "broadcaster_login": "streamer", "broadcaster_name": "streamer",
            "gifter_id": "", "gifter_login": "", "gifter_name": "", "is_gift": False,
            "plan_name": "Channel Subscription (streamer)", "tier": "1000", "user_id": viewer["user_id"],
            "user_name": "viewer", "user_login": "viewer"}]
        r = await c.get("/helix/subscriptions", params={"broadcaster_id": streamer["user_id"]},
                        headers=helix(viewer))
        assert r.status_code == 401
        r = await c.get("/helix/subscriptions/user", headers=helix(viewer),
                        params={"broadcaster_id": streamer["user_id"], "user_id": viewer["user_id"]})
        assert r.status_code == 200 and r.json() == {"data": [{
            "broadcaster_id": streamer["user_id"], "broadcaster_login": "streamer", "broadcaster_name": "streamer",
            "is_gift": False, "tier": "1000"}]}
        r = await c.get("/helix/subscriptions/user", headers=helix(lurker),
                        params={"broadcaster_id": streamer["user_id"], "user_id": lurker["user_id"]})
        assert r.status_code == 404 and r.json()["error"] == "Not Found"
        unscoped = await server.create_user("noscope", scopes=["user:read:email"])
        r = await c.get("/helix/subscriptions/user", headers=helix(unscoped),
                        params={"broadcaster_id": streamer["user_id"], "user_id": unscoped["user_id"]})
        assert r.status_code == 401 and "user:read:subscriptions" in r.json()["message"]

        # cancel through the web app: benefits stay until the period ends
        r = await c.post("/subscriptions/cancel", headers={"X-CSRF-Token": csrf}, json={"channel": "streamer"})
        assert r.status_code == 200 and r.json()["subscription"]["state"] == "cancelled"
        r = await c.post("/subscriptions/share", headers={"X-CSRF-Token": csrf},
                         json={"channel": "streamer", "message": "hi"})
        assert r.status_code == 409 and r.json()["error"] == "already_shared"
        # a community gift from someone not in chat reaches the one eligible viewer in the room
        gifter = await server.create_user("gifter")
        g_cookies, g_csrf = await sign_in(server, gifter["user_id"])
        c.cookies.clear()
        c.cookies.update(g_cookies)
        r = await c.post("/subscriptions/checkout", headers={"X-CSRF-Token": g_csrf},
                         json={"channel": "streamer", "kind": "community_gift", "count": 2})
        assert r.status_code == 400 and r.json()["error"] == "not_enough_recipients"
        r = await c.post("/subscriptions/checkout", headers={"X-CSRF-Token": g_csrf},
                         json={"channel": "streamer", "kind": "community_gift", "count": 1, "tier": "2000"})
        assert r.status_code == 200, r.text
        (gifted,) = r.json()["subscriptions"]
        assert gifted["user_id"] == lurker["user_id"] and gifted["is_gift"] and gifted["tier"] == "2000"
        mystery = await owner.expect("USERNOTICE", lambda m: m.tags.get("msg-id") == "submysterygift")
        assert mystery.tags["login"] == "gifter" and mystery.tags["msg-param-mass-gift-count"] == "1"
        gift = await owner.expect("USERNOTICE", lambda m: m.tags.get("msg-id") == "subgift")
        assert gift.tags["msg-param-recipient-user-name"] == "lurker"
        assert gift.tags["system-msg"] == "gifter gifted a Tier 2 sub to lurker!"
        await asyncio.sleep(0.2)
        other.send("PRIVMSG #streamer :now I can talk")
        said = await owner.expect("PRIVMSG", lambda m: m.params[1] == "now I can talk")
        assert said.tags["subscriber"] == "1" and said.tags["badge-info"] == "subscriber/1"
        for client in (owner, chatter, other):
            await client.close()

    # the payouts report, from the command line against the same database
    month = utcnow().strftime("%Y-%m")
    env = dict(os.environ, LIVECAST_DATA_DIR=str(server.platform.settings.data_dir))
    code, stdout, stderr = await livecast(env, "admin", "payouts", "--month", month, "--csv")
    assert code == 0, stderr
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert rows == [{"creator_id": streamer["user_id"], "creator_login": "streamer", "month": month,
                     "currency": "USD", "charges": "2", "gross": "1498", "platform_fee": "750",
                     "creator_share": "748", "refunds": "0", "chargebacks": "0", "net_payable": "748"}]
    code, _, stderr = await livecast(env, "admin", "payouts", "--month", "November")
    assert code == 1 and "2026-11" in stderr
