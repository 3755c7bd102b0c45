"""Two ``livecast serve --role chat`` processes sharing Redis and a database: a client on one
sees messages and moderation from a client on the other."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from livecast.bus import create_bus
from livecast.chat.service import get_chatters
from livecast.config import load_settings
from livecast.identity import service as identity
from livecast.store.db import Database
from tests.conftest import REDIS_URL, wait_for
from tests.test_chat_tcp import Client


async def _start(data_dir: Path, env: dict[str, str]) -> tuple[asyncio.subprocess.Process, dict[str, int]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livecast", "serve", "--role", "chat", "--data-dir", str(data_dir),
        "--http-port", "0", "--irc-port", "0", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    ports_file = data_dir / "ports.json"
    await wait_for(lambda: ports_file.exists() or proc.returncode is not None, timeout=60)
    assert proc.returncode is None, "chat node exited during start-up"
    return proc, json.loads(ports_file.read_text())


async def _chatters(platform: Any) -> list[str]:
    return await get_chatters(platform, "alice")


async def wait_for_async(probe: Callable[[], Awaitable[list[str]]], want: list[str], timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    got: list[str] = []
    while asyncio.get_running_loop().time() < deadline:
        got = await probe()
        if got == want:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"chatters {got}, expected {want}")


async def test_two_chat_nodes_over_redis(tmp_path: Path) -> None:
    db_file = tmp_path / "shared.db"
    env = {**os.environ, "LIVECAST_BUS_URL": REDIS_URL, "LIVECAST_DATABASE_URL": f"sqlite:///{db_file}",
           "LIVECAST_LOG_LEVEL": "WARNING"}
    procs = []
    try:
        proc_a, ports_a = await _start(tmp_path / "a", env)
        procs.append(proc_a)
        proc_b, ports_b = await _start(tmp_path / "b", env)
        procs.append(proc_b)
        settings = load_settings({}, database_url=f"sqlite:///{db_file}", data_dir=str(tmp_path))
        db = Database(settings.resolved_database_url)
        tokens = {}
        async with db.session() as session:
            app = await identity.ensure_admin_app(session)
            for login in ("alice", "bob"):
                user, _ = await identity.create_user(session, login)
                tokens[login] = (await identity.issue_token(session, app.client_id, user.id,
                                                            ["chat:read", "chat:edit"])).access_token
        await db.close()

        a = await Client.in_room(ports_a["irc"], "alice", tokens["alice"], "alice")
        b = await Client.in_room(ports_b["irc"], "bob", tokens["bob"], "alice")
        # twitch.tv/membership: a JOIN from the other node, and both nodes' chatters in presence
        await a.expect("JOIN", lambda m: m.source is not None and m.source.startswith("bob!"), timeout=10)
        bus = create_bus(REDIS_URL)
        await bus.start()
        reader = SimpleNamespace(bus=bus, state={})  # no chat role here: presence is all it reads
        await wait_for_async(lambda: _chatters(reader), ["alice", "bob"], timeout=15)

        b.send("PRIVMSG #alice :hello from node B")
        got = await a.expect("PRIVMSG", lambda m: m.params[1] == "hello from node B")
        assert got.tags["display-name"] == "bob"
        a.send("PRIVMSG #alice :hello from node A")
        await b.expect("PRIVMSG", lambda m: m.params[1] == "hello from node A")

        a.send("PRIVMSG #alice :/timeout bob 120")
        await a.expect("NOTICE", lambda m: m.tags.get("msg-id") == "timeout_success")
        await b.expect("CLEARCHAT", lambda m: m.params[-1] == "bob")
        b.send("PRIVMSG #alice :am I muted")
        await b.expect("NOTICE", lambda m: m.tags.get("msg-id") == "msg_timedout")
        a.send("PRIVMSG #alice :/slow 5")
        await b.expect("ROOMSTATE", lambda m: m.tags.get("slow") == "5")
        b.send("PART #alice")
        await a.expect("PART", lambda m: m.source is not None and m.source.startswith("bob!"), timeout=10)
        await wait_for_async(lambda: _chatters(reader), ["alice"], timeout=15)
        await bus.close()
        await a.close()
        await b.close()
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), timeout=15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
