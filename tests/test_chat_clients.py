"""Real third-party Twitch chat clients against Livecast: tmi.js and twurple (npm), pyTwitchAPI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from livecast.identity.models import User
from tests.conftest import Server, start_server, wait_for
from tests.test_chat_tcp import Client

ROOT = Path(__file__).resolve().parent.parent


class NodeScript:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                self.events.append(json.loads(line))
            except ValueError:  # a library printing on stdout must not end the reading
                self.events.append({"event": "stdout", "line": line.decode(errors="replace")})

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())

    async def expect(self, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for ev in self.events:
                if all(ev.get(k) == v for k, v in match.items()):
                    return ev
            return None
        try:
            return await wait_for(find, timeout=timeout)
        except TimeoutError:
            raise AssertionError(f"no event matching {match}; seen: {self.events[-20:]}") from None

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        self.task.cancel()


async def test_tmi_js(server: Server) -> None:
    alice = await server.create_user("alice")
    bob = await server.create_user("bob")
    proc = await asyncio.create_subprocess_exec(
        "/usr/bin/node", str(ROOT / "tests/js/chat_tmi.js"), str(server.platform.ports["http"]),
        "alice", alice["token"], "alice",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    node = NodeScript(proc)
    try:
        await node.expect(event="connected")
        await node.expect(event="joined", channel="#alice")
        full = await node.expect(event="roomstate")
        assert full["state"]["room-id"] == alice["user_id"]

        b = await Client.in_room(server.irc_port, "bob", bob["token"], "alice")
        b.send("PRIVMSG #alice :hi from bob LiveHype")
        msg = await node.expect(event="message", message="hi from bob LiveHype")
        tags = msg["tags"]
        assert msg["self"] is False
        assert tags["username"] == "bob" and tags["user-id"] == bob["user_id"]
        assert tags["emotes"] == {"1": ["12-19"]}  # tmi.js parses the emotes tag
        assert tags["room-id"] == alice["user_id"] and tags["message-type"] == "chat"

        node.send(op="say", text="hello from tmi.js")
        await node.expect(event="result", op="say", ok=True)
        got = await b.expect("PRIVMSG", lambda m: m.params[1] == "hello from tmi.js")
        assert got.tags["badges"] == "broadcaster/1"

        node.send(op="timeout", user="bob", seconds=45, reason="calm down")
        result = await node.expect(event="result", op="timeout")
        assert result["ok"] is True, result
        assert result["result"] == ["#alice", "bob", 45, "calm down"]
        await node.expect(event="timeout", user="bob", duration=45)
        b.send("PRIVMSG #alice :can I talk")
        await b.expect("NOTICE", lambda m: m.tags.get("msg-id") == "msg_timedout")

        node.send(op="slow", seconds=7)
        result = await node.expect(event="result", op="slow")
        assert result["ok"] is True and result["result"] == ["#alice", 7], result
        await b.expect("ROOMSTATE", lambda m: m.tags.get("slow") == "7")
        await b.close()
    finally:
        await node.close()


async def test_pytwitchapi_chat(server: Server) -> None:
    """pyTwitchAPI's Chat runs its own thread and loop; we watch what its callbacks record."""
    from twitchAPI.chat import Chat, ChatMessage, EventData, RoomStateChangeEvent
    from twitchAPI.twitch import Twitch
    from twitchAPI.type import AuthScope, ChatEvent

    alice = await server.create_user("alice")
    bob = await server.create_user("bob", scopes=["chat:read", "chat:edit", "user:read:email"])
    twitch = await Twitch(bob["client_id"], authenticate_app=False, base_url=f"{server.http_url}/helix/",
                          auth_base_url=f"{server.http_url}/oauth2/")
    twitch.auto_refresh_auth = False
    await twitch.set_user_authentication(bob["token"], [AuthScope.CHAT_READ, AuthScope.CHAT_EDIT])
    chat = await Chat(twitch, connection_url=f"ws://127.0.0.1:{server.platform.ports['http']}/")
    assert chat.username == "bob"
    seen: list[tuple[str, Any]] = []

    async def on_ready(ev: EventData) -> None:
        await ev.chat.join_room("alice")
        seen.append(("joined", None))

    async def on_message(msg: ChatMessage) -> None:
        seen.append(("message", msg))

    async def on_state(ev: RoomStateChangeEvent) -> None:
        seen.append(("roomstate", ev))

    chat.register_event(ChatEvent.READY, on_ready)
    chat.register_event(ChatEvent.MESSAGE, on_message)
    chat.register_event(ChatEvent.ROOM_STATE_CHANGE, on_state)
    await asyncio.to_thread(chat.start)  # start() blocks until its thread is connected
    try:
        await wait_for(lambda: ("joined", None) in seen, timeout=20)
        a = await Client.in_room(server.irc_port, "alice", alice["token"], "alice")
        a.send("PRIVMSG #alice :welcome bob LiveGG")
        got = await wait_for(lambda: next((m for k, m in seen if k == "message"), None))
        assert got.text == "welcome bob LiveGG"
        assert got.user.name == "alice" and got.room.room_id == alice["user_id"]
        assert got.emotes == {"4": [{"start_position": "12", "end_position": "17"}]}
        fut = asyncio.run_coroutine_threadsafe(chat.send_message("alice", "thanks alice"),
                                               chat._Chat__socket_loop)
        await asyncio.wrap_future(fut)
        echoed = await a.expect("PRIVMSG", lambda m: m.params[1] == "thanks alice")
        assert echoed.tags["user-id"] == bob["user_id"]
        a.send("PRIVMSG #alice :/slow 9")
        state = await wait_for(lambda: next((e for k, e in seen if k == "roomstate" and e.new.slow), None))
        assert state.new.slow == 9 and state.old.slow == 0
        await a.close()
    finally:
        await asyncio.to_thread(chat.stop)
        await twitch.close()


async def test_twurple_chat_reads_anonymously_on_port_6667(tmp_path: Path) -> None:
    """twurple's ChatClient takes a host name but no port, so this server listens on IRC's own
    6667, as a deployment does. It parses Livecast's tags into its own types: user info,
    badges, emote offsets, reply parents, and the moderation events (timeout, delete, slow)."""
    srv = await start_server(tmp_path, irc_port=6667)
    node: NodeScript | None = None
    try:
        alice = await srv.create_user("alice")
        bob = await srv.create_user("bob")
        proc = await asyncio.create_subprocess_exec(
            "/usr/bin/node", str(ROOT / "tests/js/chat_twurple.mjs"), "alice",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT)
        node = NodeScript(proc)
        await node.expect(event="connected")
        await node.expect(event="joined", channel="alice")
        async with srv.platform.db.session() as db:
            (await db.get(User, alice["user_id"])).color = "#1E90FF"  # type: ignore[union-attr]
        a = await Client.in_room(srv.irc_port, "alice", alice["token"], "alice")
        b = await Client.in_room(srv.irc_port, "bob", bob["token"], "alice")
        a.send("PRIVMSG #alice :hello LiveHype and LiveHype")
        first = await node.expect(event="message", text="hello LiveHype and LiveHype")
        assert first["user"] == "alice" and first["userId"] == alice["user_id"]
        assert first["channelId"] == alice["user_id"] and first["isBroadcaster"] is True
        assert first["badges"] == {"broadcaster": "1"} and first["color"] == "#1E90FF"
        assert first["emotes"] == {"1": ["6-13", "19-26"]}
        b.send(f"@reply-parent-msg-id={first['id']} PRIVMSG #alice :@alice hi")
        reply = await node.expect(event="message", text="@alice hi")
        assert reply["isReply"] is True and reply["parentMessageId"] == first["id"]
        assert reply["isBroadcaster"] is False and reply["badges"] == {}
        b.send("PRIVMSG #alice :\x01ACTION waves\x01")
        await node.expect(event="action", user="bob", text="waves")
        a.send(f"PRIVMSG #alice :/delete {reply['id']}")
        await node.expect(event="removed", messageId=reply["id"])
        a.send("PRIVMSG #alice :/timeout bob 30")
        await node.expect(event="timeout", user="bob", duration=30)
        a.send("PRIVMSG #alice :/slow 5")
        await node.expect(event="slow", enabled=True, delay=5)
        await a.close()
        await b.close()
    finally:
        if node is not None:
            await node.close()
        await srv.runner.stop()
