"""Chat over plain TCP, byte for byte as Twitch clients see it: login, JOIN order, tags,
rules and moderation, and bad input that must not hurt other clients."""

from __future__ import annotations

import asyncio

from livecast.chat import service
from livecast.chat.state import Chatter
from livecast.protocols import irc
from tests.conftest import Server, wait_for


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.lines: list[irc.Message] = []
        self.task = asyncio.create_task(self._read())
        self.eof = False

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        return cls(reader, writer)

    async def _read(self) -> None:
        while True:
            line = await self.reader.readline()
            if not line:
                self.eof = True
                return
            self.lines.append(irc.parse(line.decode()))

    def send(self, *lines: str) -> None:
        self.writer.write("".join(line + "\r\n" for line in lines).encode())

    async def expect(self, command: str, pred: object = None, timeout: float = 5.0) -> irc.Message:
        def find() -> irc.Message | None:
            for m in self.lines:
                if m.command == command and (pred is None or pred(m)):  # type: ignore[operator]
                    return m
            return None
        return await wait_for(find, timeout=timeout)

    async def login(self, nick: str, token: str | None) -> None:
        self.send("CAP REQ :twitch.tv/tags twitch.tv/commands twitch.tv/membership")
        if token:
            self.send(f"PASS oauth:{token}")
        self.send(f"NICK {nick}")
        await self.expect("376")

    async def join(self, channel: str) -> None:
        self.send(f"JOIN #{channel}")
        await self.expect("ROOMSTATE", lambda m: m.params[0] == f"#{channel}")

    @classmethod
    async def in_room(cls, port: int, nick: str, token: str | None, channel: str) -> Client:
        """Connected, logged in and joined: where most chat tests start."""
        client = await cls.connect(port)
        await client.login(nick, token)
        await client.join(channel)
        return client

    async def close(self) -> None:
        self.task.cancel()
        self.writer.close()


async def test_login_join_and_message_tags(server: Server) -> None:
    alice = await server.create_user("alice", partner=True)
    bob = await server.create_user("bob")
    a = await Client.connect(server.irc_port)
    a.send("CAP LS 302")
    a.send("CAP REQ :twitch.tv/tags twitch.tv/commands twitch.tv/membership")
    a.send(f"PASS oauth:{alice['token']}", "NICK alice", "CAP END")
    await a.expect("GLOBALUSERSTATE")
    cmds = [m.command for m in a.lines]
    assert cmds == ["CAP", "CAP", "001", "002", "003", "004", "375", "372", "376", "GLOBALUSERSTATE"]
    assert a.lines[1].params[1:] == ("ACK", "twitch.tv/tags twitch.tv/commands twitch.tv/membership")
    assert all(m.source == "tmi.twitch.tv" for m in a.lines)
    a.lines.clear()
    await a.join("alice")
    assert [m.command for m in a.lines] == ["JOIN", "353", "366", "USERSTATE", "ROOMSTATE"]
    assert a.lines[0].source == "alice!alice@alice.tmi.twitch.tv"
    assert a.lines[3].tags["badges"] == "broadcaster/1,partner/1"
    assert set(a.lines[4].tags) == {"emote-only", "followers-only", "r9k", "room-id", "slow", "subs-only"}

    b = await Client.in_room(server.irc_port, "bob", bob["token"], "alice")
    watcher = await Client.in_room(server.irc_port, "justinfan12345", None, "alice")

    b.send("@reply-parent-msg-id=nope PRIVMSG #alice :hello LiveHype \U0001F600 LiveHype")
    got = await a.expect("PRIVMSG")
    assert got.params == ("#alice", "hello LiveHype \U0001F600 LiveHype")
    tags = got.tags
    assert tags["display-name"] == "bob" and tags["user-id"] == bob["user_id"]
    assert tags["room-id"] == alice["user_id"]
    assert tags["emotes"] == "1:6-13,17-24"  # code points: the emoji counts as one
    assert tags["first-msg"] == "1" and tags["mod"] == "0" and tags["subscriber"] == "0"
    assert tags["badges"] == "" and tags["badge-info"] == ""
    for key in ("color", "id", "returning-chatter", "tmi-sent-ts", "turbo", "user-type"):
        assert key in tags
    assert got.source == "bob!bob@bob.tmi.twitch.tv"
    state = await b.expect("USERSTATE", lambda m: "id" in m.tags)
    assert state.tags["id"] == tags["id"]
    await watcher.expect("PRIVMSG")
    assert not any(m.command == "PRIVMSG" for m in b.lines)  # no echo to the sender

    # a reply carries reply-parent-* tags
    a.send(f"@reply-parent-msg-id={tags['id']} PRIVMSG #alice :@bob hi back")
    reply = await b.expect("PRIVMSG")
    assert reply.tags["reply-parent-msg-id"] == tags["id"]
    assert reply.tags["reply-parent-user-login"] == "bob"
    assert reply.tags["reply-parent-msg-body"] == "hello LiveHype \U0001F600 LiveHype"
    assert reply.tags["badges"] == "broadcaster/1,partner/1"

    # anonymous users cannot talk
    watcher.send("PRIVMSG #alice :hi")
    await watcher.expect("NOTICE", lambda m: m.tags.get("msg-id") == "msg_anon_or_read_only")

    # /me and PART
    b.send("PRIVMSG #alice :/me waves")
    action = await a.expect("PRIVMSG", lambda m: m.params[1].startswith("\x01ACTION"))
    assert action.params[1] == "\x01ACTION waves\x01"
    b.send("PART #alice")
    await b.expect("PART")
    for c in (a, b, watcher):
        await c.close()


async def test_failed_auth_and_ping(server: Server) -> None:
    c = await Client.connect(server.irc_port)
    c.send("PING :abc")
    pong = await c.expect("PONG")
    assert pong.params == ("tmi.twitch.tv", "abc")
    c.send("PASS oauth:wrongtoken", "NICK someone")
    notice = await c.expect("NOTICE")
    assert notice.params == ("*", "Login authentication failed")
    await wait_for(lambda: c.eof)
    await c.close()


async def test_moderation_commands_and_modes(server: Server) -> None:
    alice = await server.create_user("alice")
    bob = await server.create_user("bob")
    await server.create_user("carol")
    a = await Client.in_room(server.irc_port, "alice", alice["token"], "alice")
    b = await Client.in_room(server.irc_port, "bob", bob["token"], "alice")

    a.send("PRIVMSG #alice :/mod carol")
    await a.expect("NOTICE", lambda m: m.tags.get("msg-id") == "mod_success")
    b.send("PRIVMSG #alice :/ban carol")
    await b.expect("NOTICE", lambda m: m.tags.get("msg-id") == "no_permission")

    a.send("PRIVMSG #alice :/timeout bob 60 too loud")
    await a.expect("NOTICE", lambda m: m.tags.get("msg-id") == "timeout_success")
    clear = await b.expect("CLEARCHAT")
    assert clear.params == ("#alice", "bob") and clear.tags["ban-duration"] == "60"
    b.send("PRIVMSG #alice :let me talk")
    refused = await b.expect("NOTICE", lambda m: m.tags.get("msg-id") == "msg_timedout")
    assert "more seconds" in refused.params[1]
    a.send("PRIVMSG #alice :/untimeout bob")
    await a.expect("NOTICE", lambda m: m.tags.get("msg-id") == "untimeout_success")

    a.send("PRIVMSG #alice :/slow 10")
    rs = await b.expect("ROOMSTATE", lambda m: "slow" in m.tags and m.tags["slow"] == "10")
    assert set(rs.tags) == {"slow", "room-id"}
    await a.expect("NOTICE", lambda m: m.tags.get("msg-id") == "slow_on")
    b.send("PRIVMSG #alice :first")
    await a.expect("PRIVMSG", lambda m: m.params[1] == "first")
    b.send("PRIVMSG #alice :second")
    await b.expect("NOTICE", lambda m: m.tags.get("msg-id") == "msg_slowmode")
    a.send("PRIVMSG #alice :/slowoff", "PRIVMSG #alice :/emoteonly")
    await b.expect("ROOMSTATE", lambda m: m.tags.get("emote-only") == "1")
    b.send("PRIVMSG #alice :words only")
    await b.expect("NOTICE", lambda m: m.tags.get("msg-id") == "msg_emoteonly")
    b.send("PRIVMSG #alice :LiveGG LiveHype")
    await a.expect("PRIVMSG", lambda m: m.params[1] == "LiveGG LiveHype")
    a.send("PRIVMSG #alice :/emoteonlyoff", "PRIVMSG #alice :/subscribers")
    await b.expect("ROOMSTATE", lambda m: m.tags.get("subs-only") == "1")
    b.send("PRIVMSG #alice :am I sub")
    await b.expect("NOTICE", lambda m: m.tags.get("msg-id") == "msg_subsonly")
    a.send("PRIVMSG #alice :/subscribersoff", "PRIVMSG #alice :/followers 10m")
    await b.expect("ROOMSTATE", lambda m: m.tags.get("followers-only") == "10")
    b.send("PRIVMSG #alice :follow?")
    await b.expect("NOTICE", lambda m: m.tags.get("msg-id") == "msg_followersonly")
    a.send("PRIVMSG #alice :/followersoff", "PRIVMSG #alice :/uniquechat")
    await b.expect("ROOMSTATE", lambda m: m.tags.get("r9k") == "1")
    a.send("PRIVMSG #alice :same words here")
    await b.expect("PRIVMSG", lambda m: m.params[1] == "same words here")
    b.send("PRIVMSG #alice :Same  words here")
    await b.expect("NOTICE", lambda m: m.tags.get("msg-id") == "msg_r9k")
    a.send("PRIVMSG #alice :/uniquechatoff")
    await b.expect("ROOMSTATE", lambda m: m.tags.get("r9k") == "0")

    # duplicate, too long, blocked term, AutoMod
    b.lines.clear()
    b.send("PRIVMSG #alice :once")
    await a.expect("PRIVMSG", lambda m: m.params[1] == "once")
    b.send("PRIVMSG #alice :once")
    await b.expect("NOTICE", lambda m: m.tags.get("msg-id") == "msg_duplicate")
    b.send("PRIVMSG #alice :" + "x" * 501)
    await b.expect("NOTICE", lambda m: m.tags.get("msg-id") == "msg_too_long")
    actor = Chatter(alice["user_id"], "alice", "alice")
    await service.add_blocked_term(server.platform, "alice", actor, "forbiddenword")
    b.send("PRIVMSG #alice :a forbiddenword here")
    await b.expect("NOTICE", lambda m: m.tags.get("msg-id") == "msg_rejected_mandatory")
    await service.update_settings(server.platform, "alice", actor, automod_level=2)
    b.send("PRIVMSG #alice :you are a fucking idiot")
    await b.expect("NOTICE", lambda m: m.tags.get("msg-id") == "msg_rejected")
    b.send("PRIVMSG #alice :what a lovely stream")
    await a.expect("PRIVMSG", lambda m: m.params[1] == "what a lovely stream")

    # delete, announce, ban, clear
    target = await a.expect("PRIVMSG", lambda m: m.params[1] == "once")
    a.send(f"PRIVMSG #alice :/delete {target.tags['id']}")
    await a.expect("NOTICE", lambda m: m.tags.get("msg-id") == "delete_message_success")
    cleared = await b.expect("CLEARMSG")
    assert cleared.tags["target-msg-id"] == target.tags["id"] and cleared.params[1] == "once"
    a.send("PRIVMSG #alice :/announce hello everyone")
    ann = await b.expect("USERNOTICE")
    assert ann.tags["msg-id"] == "announcement" and ann.params[1] == "hello everyone"
    a.send("PRIVMSG #alice :/vip bob")
    await a.expect("NOTICE", lambda m: m.tags.get("msg-id") == "vip_success")
    b.send("PRIVMSG #alice :vip now")
    vip = await a.expect("PRIVMSG", lambda m: m.params[1] == "vip now")
    assert vip.tags["vip"] == "1" and "vip/1" in vip.tags["badges"]
    a.send("PRIVMSG #alice :/ban bob spam")
    await a.expect("NOTICE", lambda m: m.tags.get("msg-id") == "ban_success")
    b.send("PRIVMSG #alice :still here?")
    await b.expect("NOTICE", lambda m: m.tags.get("msg-id") == "msg_banned")
    a.send("PRIVMSG #alice :/clear")
    await b.expect("CLEARCHAT", lambda m: len(m.params) == 1)
    a.send("PRIVMSG #alice :/nosuch")
    await a.expect("NOTICE", lambda m: m.tags.get("msg-id") == "unrecognized_cmd")
    await a.close()
    await b.close()


async def test_rate_limit(server: Server) -> None:
    alice = await server.create_user("alice")
    bob = await server.create_user("bob")
    b = await Client.in_room(server.irc_port, "bob", bob["token"], "alice")
    b.send(*[f"PRIVMSG #alice :message number {i}" for i in range(25)])
    await b.expect("NOTICE", lambda m: m.tags.get("msg-id") == "msg_ratelimit")
    accepted = [m for m in b.lines if m.command == "USERSTATE" and "id" in m.tags]
    assert len(accepted) == 20
    assert alice["user_id"]
    await b.close()


async def test_bad_input_keeps_serving_others(server: Server) -> None:
    alice = await server.create_user("alice")
    good = await Client.in_room(server.irc_port, "alice", alice["token"], "alice")

    big = await Client.connect(server.irc_port)
    big.writer.write(b"PRIVMSG #alice :" + b"x" * 10_240 + b"\r\n")
    await big.expect("NOTICE", lambda m: "too long" in m.params[-1])
    await wait_for(lambda: big.eof)

    utf = await Client.connect(server.irc_port)
    utf.writer.write(b"PRIVMSG #alice :\xff\xfe bad\r\n")
    await utf.expect("NOTICE", lambda m: "UTF-8" in m.params[-1])

    bomb = await Client.connect(server.irc_port)
    bomb.send("@" + ";".join(f"t{i}=v" for i in range(1000)) + " PING :x")
    await bomb.expect("NOTICE", lambda m: "Malformed" in m.params[-1] or "too long" in m.params[-1])

    early = await Client.connect(server.irc_port)
    early.send("PRIVMSG #alice :hello")
    reply = await early.expect("451")
    assert reply.params[1] == "PRIVMSG"

    joiner = await Client.connect(server.irc_port)
    await joiner.login("justinfan999", None)
    joiner.writer.write(b"".join(b"JOIN #chan%d\r\n" % i for i in range(10_000)))
    await wait_for(lambda: joiner.eof, timeout=30)
    assert any(m.tags.get("msg-id") == "msg_ratelimit" for m in joiner.lines)

    good.send("PING :still-alive")
    await good.expect("PONG", lambda m: m.params[-1] == "still-alive")
    for c in (good, big, utf, bomb, early, joiner):
        await c.close()


async def test_slow_consumer_is_dropped_without_hurting_the_room(server: Server, monkeypatch: object) -> None:
    import socket

    from livecast import metrics
    from livecast.chat import connection

    monkeypatch.setattr(connection, "MAX_BUFFERED_BYTES", 256 * 1024)  # type: ignore[attr-defined]
    await server.create_user("alice")
    good = await Client.in_room(server.irc_port, "justinfan1", None, "alice")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.irc_port))
    sock.sendall(b"CAP REQ :twitch.tv/tags twitch.tv/commands\r\nNICK justinfan2\r\nJOIN #alice\r\n")
    hub = server.platform.state["chat.hub"]
    await wait_for(lambda: "alice" in hub.rooms and any(m.login == "justinfan2" for m in hub.rooms["alice"].members))
    before = metrics.chat_slow_disconnects._value.get()
    line = b"@tmi-sent-ts=1 :x!x@x.tmi.twitch.tv PRIVMSG #alice :" + b"y" * 8000 + b"\r\n"
    for _ in range(400):  # 3.2 MB; the stalled reader never takes any of it
        await service.publish_room(server.platform.bus, "alice", line)
        await asyncio.sleep(0)
    await wait_for(lambda: metrics.chat_slow_disconnects._value.get() > before, timeout=20)
    assert {m.login for m in hub.rooms["alice"].members} == {"justinfan1"}
    await wait_for(lambda: sum(1 for m in good.lines if m.command == "PRIVMSG") == 400, timeout=20)
    sock.close()
    await good.close()


async def test_auth_failures_are_limited(server: Server) -> None:
    alice = await server.create_user("alice")
    for _ in range(20):
        c = await Client.connect(server.irc_port)
        c.send("PASS oauth:bad", "NICK alice")
        await c.expect("NOTICE")
        await c.close()
    c = await Client.connect(server.irc_port)
    c.send(f"PASS oauth:{alice['token']}", "NICK alice")
    notice = await c.expect("NOTICE", lambda m: "too many failed" in m.params[-1])
    assert notice.params[0] == "*"
    await c.close()


async def test_websocket_frames_emote_images_and_events(server: Server) -> None:
    import httpx
    import websockets

    alice = await server.create_user("alice")
    sub = await server.platform.bus.subscribe("event.channel.*")
    irc_proto = websockets.Subprotocol("irc")
    async with websockets.connect(f"ws://127.0.0.1:{server.platform.ports['http']}/", subprotocols=[irc_proto]) as ws:
        assert ws.subprotocol == "irc"
        await ws.send(f"CAP REQ :twitch.tv/tags twitch.tv/commands\r\nPASS oauth:{alice['token']}\r\n"
                      "NICK alice\r\nJOIN #alice\r\nPRIVMSG #alice :/ban nobodyhere\r\n")
        received = ""
        while "invalid_user" not in received:
            received += str(await asyncio.wait_for(ws.recv(), 5))
        assert ":tmi.twitch.tv ROOMSTATE #alice" in received
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        img = await http.get("/emotes/1/2.0.png")
        assert img.status_code == 200 and img.headers["content-type"] == "image/png"
        assert img.content[16:24] == (56).to_bytes(4, "big") * 2  # IHDR width, height
        assert (await http.get("/emotes/999/1.0.png")).status_code == 404
    bob = await server.create_user("bob")
    await service.ban_user(server.platform, "alice", Chatter(alice["user_id"], "alice", "alice"), "bob",
                           duration=30, reason="spam")
    async for topic, data in sub:
        if topic == "event.channel.ban":
            import json

            payload = json.loads(data)
            assert payload["user_id"] == bob["user_id"] and payload["is_permanent"] is False
            assert payload["broadcaster_user_login"] == "alice" and payload["reason"] == "spam"
            break
    await sub.close()


async def test_reconnect_sent_before_drain(tmp_path: object) -> None:
    from tests.conftest import start_server

    srv = await start_server(tmp_path)  # type: ignore[arg-type]
    c = await Client.connect(srv.irc_port)
    await c.login("justinfan7", None)
    await srv.runner.stop()
    await c.expect("RECONNECT")
    await wait_for(lambda: c.eof)
    await c.close()


async def test_subscribers_emotes_usernotices_whispers_and_expiry(server: Server) -> None:
    alice = await server.create_user("alice")
    bob = await server.create_user("bob")
    carol = await server.create_user("carol")
    owner = Chatter(alice["user_id"], "alice", "alice")
    await service.add_emote(server.platform, "alice", owner, "aliceHeart", tier=1000)
    await service.add_emote(server.platform, "alice", owner, "aliceGold", tier=3000)
    await service.set_subscriber(server.platform, "alice", owner, "bob", months=14, tier=2000)
    a = await Client.in_room(server.irc_port, "alice", alice["token"], "alice")
    b = await Client.in_room(server.irc_port, "bob", bob["token"], "alice")
    c = await Client.in_room(server.irc_port, "carol", carol["token"], "alice")

    b.send("PRIVMSG #alice :aliceHeart aliceGold")
    msg = await a.expect("PRIVMSG", lambda m: m.params[1] == "aliceHeart aliceGold")
    assert msg.tags["badges"] == "subscriber/2012" and msg.tags["badge-info"] == "subscriber/14"
    assert msg.tags["subscriber"] == "1"
    heart_id = msg.tags["emotes"].split(":")[0]
    assert msg.tags["emotes"] == f"{heart_id}:0-9"  # tier 2 unlocks the tier-1 emote, not the tier-3 one
    c.send("PRIVMSG #alice :aliceHeart LiveLove")
    msg = await a.expect("PRIVMSG", lambda m: m.params[1] == "aliceHeart LiveLove")
    assert msg.tags["emotes"] == "2:11-18"  # a non-subscriber gets only the global emote

    bob_chatter = Chatter(bob["user_id"], "bob", "bob")
    await service.notify_subscription(server.platform, "alice", bob_chatter, tier=2000, months=14, message="hi")
    sub = await c.expect("USERNOTICE")
    assert sub.tags["msg-id"] == "resub" and sub.tags["msg-param-cumulative-months"] == "14"
    assert sub.tags["system-msg"].startswith("bob subscribed at Tier 2.") and sub.params[1] == "hi"
    await service.notify_raid(server.platform, "alice", Chatter(carol["user_id"], "carol", "carol"), 42)
    raid = await b.expect("USERNOTICE", lambda m: m.tags["msg-id"] == "raid")
    assert raid.tags["msg-param-viewerCount"] == "42"

    a.send("PRIVMSG #alice :/w carol psst")
    whisper = await c.expect("WHISPER")
    assert whisper.params == ("carol", "psst") and whisper.source == "alice!alice@alice.tmi.twitch.tv"

    a.send("PRIVMSG #alice :/timeout carol 1")
    await a.expect("NOTICE", lambda m: m.tags.get("msg-id") == "timeout_success")
    c.send("PRIVMSG #alice :muted?")
    await c.expect("NOTICE", lambda m: m.tags.get("msg-id") == "msg_timedout")
    await asyncio.sleep(1.2)
    c.send("PRIVMSG #alice :free again")
    await a.expect("PRIVMSG", lambda m: m.params[1] == "free again")
    for client in (a, b, c):
        await client.close()


async def test_slow_websocket_consumer_is_dropped(server: Server) -> None:
    import websockets

    from livecast import metrics

    await server.create_user("alice")
    url = f"ws://127.0.0.1:{server.platform.ports['http']}/"
    async with websockets.connect(url, max_queue=1, max_size=1 << 20, close_timeout=1) as ws:
        await ws.send("CAP REQ :twitch.tv/tags twitch.tv/commands\r\nNICK justinfan3\r\nJOIN #alice\r\n")
        hub = server.platform.state["chat.hub"]
        await wait_for(lambda: "alice" in hub.rooms and any(m.login == "justinfan3" for m in hub.rooms["alice"].members))
        before = metrics.chat_slow_disconnects._value.get()
        line = b"@tmi-sent-ts=1 :x!x@x.tmi.twitch.tv PRIVMSG #alice :" + b"y" * 8000 + b"\r\n"
        for _ in range(600):  # the client stops reading after one queued frame
            await service.publish_room(server.platform.bus, "alice", line)
            await asyncio.sleep(0)
        await wait_for(lambda: metrics.chat_slow_disconnects._value.get() > before, timeout=20)
        assert "alice" not in hub.rooms or not hub.rooms["alice"].members
