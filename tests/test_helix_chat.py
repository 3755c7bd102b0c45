"""Chat and moderation endpoints, driven over Helix and observed from a real IRC connection."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets
from twitchAPI.twitch import Twitch
from twitchAPI.type import AuthScope

from livecast.api.helix import raids
from livecast.discovery.follows import follow
from tests.conftest import Server, wait_for
from tests.helix_support import app_with_tokens, headers


class Irc:
    """A minimal TMI client: enough to join a room and read what arrives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.lines: list[str] = []
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, server: Server, login: str, token: str, channel: str) -> Irc:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.irc_port)
        irc = cls(reader, writer)
        irc.send("CAP REQ :twitch.tv/tags twitch.tv/commands", f"PASS oauth:{token}", f"NICK {login}")
        await wait_for(lambda: irc.seen(" 376 "))
        irc.send(f"JOIN #{channel}")
        try:
            await wait_for(lambda: any(" ROOMSTATE " in line for line in irc.lines))
        except TimeoutError:
            raise AssertionError(irc.lines) from None
        return irc

    def send(self, *lines: str) -> None:
        for line in lines:
            self.writer.write(line.encode() + b"\r\n")

    async def _read(self) -> None:
        async for raw in self.reader:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("PING"):
                self.send("PONG :tmi.twitch.tv")
            self.lines.append(line)

    def seen(self, needle: str) -> bool:
        return any(needle in line for line in self.lines)

    async def close(self) -> None:
        self.task.cancel()
        self.writer.close()


async def test_moderation_over_helix(server: Server) -> None:
    alice = await server.create_user("alice")
    bob = await server.create_user("bob")
    carol = await server.create_user("carol", scopes=["chat:read"])
    h = headers(alice["client_id"], alice["token"])
    q = {"broadcaster_id": alice["user_id"], "moderator_id": alice["user_id"]}
    irc = await Irc.connect(server, "bob", bob["token"], "alice")
    try:
        async with httpx.AsyncClient(base_url=server.http_url) as c:
            r = await c.get("/helix/chat/chatters", params=q, headers=h)
            assert r.status_code == 200 and "bob" in [x["user_login"] for x in r.json()["data"]]
            # a timeout then a ban, each seen in chat as CLEARCHAT
            r = await c.post("/helix/moderation/bans", params=q, headers=h,
                             json={"data": {"user_id": bob["user_id"], "duration": 60, "reason": "calm down"}})
            assert r.status_code == 200, r.text
            assert r.json()["data"][0]["end_time"]
            await wait_for(lambda: irc.seen("ban-duration=60") and irc.seen("CLEARCHAT #alice :bob"))
            r = await c.get("/helix/moderation/banned", params={"broadcaster_id": alice["user_id"]}, headers=h)
            assert [(b["user_login"], b["reason"]) for b in r.json()["data"]] == [("bob", "calm down")]
            r = await c.delete("/helix/moderation/bans", params={**q, "user_id": bob["user_id"]}, headers=h)
            assert r.status_code == 204
            r = await c.delete("/helix/moderation/bans", params={**q, "user_id": bob["user_id"]}, headers=h)
            assert r.status_code == 400  # not banned any more
            # carol is no moderator, and her token lacks the scope
            ch = headers(carol["client_id"], carol["token"])
            r = await c.post("/helix/moderation/bans", headers=ch,
                             params={"broadcaster_id": alice["user_id"], "moderator_id": carol["user_id"]},
                             json={"data": {"user_id": bob["user_id"]}})
            assert r.status_code == 401 and "moderator:manage:banned_users" in r.json()["message"]
            # bob becomes a moderator; as one he may not ban the broadcaster
            r = await c.post("/helix/moderation/moderators",
                             params={"broadcaster_id": alice["user_id"], "user_id": bob["user_id"]}, headers=h)
            assert r.status_code == 204
            r = await c.get("/helix/moderation/moderators", params={"broadcaster_id": alice["user_id"]}, headers=h)
            assert [m["user_login"] for m in r.json()["data"]] == ["bob"]
            bh = headers(bob["client_id"], bob["token"])
            r = await c.post("/helix/moderation/bans", headers=bh,
                             params={"broadcaster_id": alice["user_id"], "moderator_id": bob["user_id"]},
                             json={"data": {"user_id": alice["user_id"]}})
            assert r.status_code == 400
            r = await c.post("/helix/moderation/bans", headers=bh,
                             params={"broadcaster_id": alice["user_id"], "moderator_id": bob["user_id"]},
                             json={"data": {"user_id": carol["user_id"]}})
            assert r.status_code == 200
            r = await c.delete("/helix/moderation/moderators",
                               params={"broadcaster_id": alice["user_id"], "user_id": bob["user_id"]}, headers=h)
            assert r.status_code == 204
            r = await c.post("/helix/channels/vips",
                             params={"broadcaster_id": alice["user_id"], "user_id": bob["user_id"]}, headers=h)
            assert r.status_code == 204
            r = await c.get("/helix/channels/vips", params={"broadcaster_id": alice["user_id"]}, headers=h)
            assert [m["user_login"] for m in r.json()["data"]] == ["bob"]
            r = await c.delete("/helix/channels/vips",
                               params={"broadcaster_id": alice["user_id"], "user_id": bob["user_id"]}, headers=h)
            assert r.status_code == 204

            # settings
            r = await c.patch("/helix/chat/settings", params=q, headers=h,
                              json={"slow_mode": True, "slow_mode_wait_time": 10, "emote_mode": True})
            assert r.status_code == 200, r.text
            assert r.json()["data"][0]["slow_mode_wait_time"] == 10
            await wait_for(lambda: irc.seen("slow=10"))
            r = await c.get("/helix/chat/settings", params={"broadcaster_id": alice["user_id"]}, headers=h)
            assert r.json()["data"][0]["emote_mode"] is True
            r = await c.patch("/helix/chat/settings", params=q, headers=h,
                              json={"slow_mode": False, "emote_mode": False})
            # blocked terms refuse messages sent through Helix
            r = await c.post("/helix/moderation/blocked_terms", params=q, headers=h, json={"text": "badword"})
            assert r.status_code == 200
            term_id = r.json()["data"][0]["id"]
            r = await c.get("/helix/moderation/blocked_terms", params=q, headers=h)
            assert [t["text"] for t in r.json()["data"]] == ["badword"]
            r = await c.post("/helix/chat/messages", headers=bh, json={
                "broadcaster_id": alice["user_id"], "sender_id": bob["user_id"], "message": "a badword here"})
            assert r.status_code == 200 and r.json()["data"][0]["is_sent"] is False
            r = await c.delete("/helix/moderation/blocked_terms", params={**q, "id": term_id}, headers=h)
            assert r.status_code == 204
            r = await c.post("/helix/chat/messages", headers=h, json={
                "broadcaster_id": alice["user_id"], "sender_id": alice["user_id"], "message": "hello from helix"})
            assert r.json()["data"][0]["is_sent"] is True
            await wait_for(lambda: irc.seen("PRIVMSG #alice :hello from helix"))
            msg_id = r.json()["data"][0]["message_id"]
            r = await c.post("/helix/chat/messages", headers=bh, json={
                "broadcaster_id": alice["user_id"], "sender_id": bob["user_id"], "message": "bob speaks"})
            bob_msg = r.json()["data"][0]["message_id"]
            r = await c.delete("/helix/moderation/chat", params={**q, "message_id": bob_msg}, headers=h)
            assert r.status_code == 204
            await wait_for(lambda: irc.seen(f"target-msg-id={bob_msg}"))
            r = await c.delete("/helix/moderation/chat", params={**q, "message_id": msg_id}, headers=h)
            assert r.status_code == 400  # the broadcaster's own message cannot be deleted
            r = await c.delete("/helix/moderation/chat", params=q, headers=h)
            assert r.status_code == 204
            await wait_for(lambda: irc.seen("CLEARCHAT #alice") and irc.lines[-1].endswith("CLEARCHAT #alice"))
            r = await c.post("/helix/chat/announcements", params=q, headers=h, json={"message": "hear ye",
                                                                                    "color": "blue"})
            assert r.status_code == 204
            await wait_for(lambda: irc.seen("msg-id=announcement"))
            r = await c.post("/helix/whispers", params={"from_user_id": alice["user_id"],
                                                        "to_user_id": bob["user_id"]}, headers=h,
                             json={"message": "psst"})
            assert r.status_code == 204
            await wait_for(lambda: irc.seen("WHISPER bob :psst"))
            r = await c.get("/helix/chat/color", params={"user_id": alice["user_id"]}, headers=h)
            assert r.json()["data"][0]["user_login"] == "alice"
            for path in ("/helix/chat/badges/global", "/helix/chat/emotes/global"):
                assert (await c.get(path, headers=h)).status_code == 200
            r = await c.get("/helix/chat/badges", params={"broadcaster_id": alice["user_id"]}, headers=h)
            url = r.json()["data"][0]["versions"][0]["image_url_1x"]
            assert (await c.get(url)).headers["content-type"] == "image/png"
    finally:
        await irc.close()


async def test_eventsub_chat_events_and_raid(server: Server) -> None:
    alice = await server.create_user("alice")
    bob = await server.create_user("bob")
    client_id, _s, _app, tokens = await app_with_tokens(server, [alice["user_id"]])
    h = headers(client_id, tokens[alice["user_id"]][0])
    raids.RAID_DELAY_S = 0.2
    ws_url = server.http_url.replace("http", "ws") + "/ws"
    async with httpx.AsyncClient(base_url=server.http_url) as c, websockets.connect(ws_url) as ws:
        session = json.loads(await ws.recv())["payload"]["session"]["id"]

        async def sub(type_: str, condition: dict[str, str], version: str = "1") -> None:
            r = await c.post("/helix/eventsub/subscriptions", headers=h, json={
                "type": type_, "version": version, "condition": condition,
                "transport": {"method": "websocket", "session_id": session}})
            assert r.status_code == 202, r.text

        me = {"broadcaster_user_id": alice["user_id"], "user_id": alice["user_id"]}
        await sub("channel.chat.message", me)
        await sub("channel.ban", {"broadcaster_user_id": alice["user_id"]})
        await sub("channel.raid", {"from_broadcaster_user_id": alice["user_id"]})
        await sub("channel.follow", {"broadcaster_user_id": alice["user_id"], "moderator_user_id": alice["user_id"]},
                  version="2")
        async with server.platform.db.session() as db:
            await follow(db, bob["user_id"], alice["user_id"], bus=server.platform.bus)
        await c.post("/helix/chat/messages", headers=h, json={
            "broadcaster_id": alice["user_id"], "sender_id": alice["user_id"], "message": "to eventsub"})
        await c.post("/helix/moderation/bans", headers=h,
                     params={"broadcaster_id": alice["user_id"], "moderator_id": alice["user_id"]},
                     json={"data": {"user_id": bob["user_id"], "reason": "spam"}})
        r = await c.post("/helix/raids", params={"from_broadcaster_id": alice["user_id"],
                                                 "to_broadcaster_id": bob["user_id"]}, headers=h)
        assert r.status_code == 200
        got: dict[str, Any] = {}
        while len(got) < 4:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if msg["metadata"]["message_type"] == "notification":
                got[msg["metadata"]["subscription_type"]] = msg["payload"]["event"]
        assert got["channel.chat.message"]["message"]["text"] == "to eventsub"
        assert got["channel.ban"]["user_login"] == "bob" and got["channel.ban"]["is_permanent"] is True
        assert got["channel.raid"]["to_broadcaster_user_login"] == "bob"
        assert got["channel.follow"]["user_login"] == "bob"
        r = await c.delete("/helix/raids", params={"broadcaster_id": alice["user_id"]}, headers=h)
        assert r.status_code == 404


async def test_pytwitchapi_ban_user(server: Server) -> None:
    alice = await server.create_user("alice")
    bob = await server.create_user("bob")
    client_id, secret, _app, tokens = await app_with_tokens(server, [alice["user_id"]])
    twitch = await Twitch(client_id, secret, base_url=f"{server.http_url}/helix/",
                          auth_base_url=f"{server.http_url}/oauth2/")
    try:
        access, refresh = tokens[alice["user_id"]]
        await twitch.set_user_authentication(access, [AuthScope.MODERATOR_MANAGE_BANNED_USERS, AuthScope.MODERATION_READ],
                                           refresh)
        ban = await twitch.ban_user(alice["user_id"], alice["user_id"], bob["user_id"], "rude")
        assert ban.user_id == bob["user_id"] and ban.end_time is None
        banned = [b async for b in twitch.get_banned_users(alice["user_id"])]
        assert [(b.user_login, b.reason) for b in banned] == [("bob", "rude")]
    finally:
        await twitch.close()
