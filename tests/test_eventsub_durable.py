"""EventSub intake survives its dispatcher being away: real worker processes on Redis and PostgreSQL.

Producers append events to the bus's event stream; worker processes (``livecast serve`` with
role ``worker``) dispatch them through a consumer group. An API node runs in this process (it
holds the EventSub WebSocket session and is where events are published, as a Helix call or a
chat line would), a webhook receiver records deliveries, and the workers are started, stopped
and killed around them: (1) events published while no worker runs at all are delivered once
one starts; (2) a worker SIGKILLed while it is dispatching (held up by a table lock, so the
event it read is pending in the group for certain) leaves nothing behind:
the next worker delivers every event, each under one stable ``message_id``.

The tests use their own Redis database (14) and reset the event stream and the dispatch lease
there first: other tests' leftover events on the shared database would only be slower to get
through, but a leftover lease of a killed run would hold dispatching up for its lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis
import websockets

from livecast.api.eventsub.dispatch import dispatch
from livecast.api.eventsub.models import EventSubMessage, EventSubSubscription
from livecast.api.eventsub.worker import GROUP, LEASE_KEY
from livecast.bus import EVENT_STREAM, publish_event
from tests.conftest import REDIS_URL, Server, create_pg_database, drop_pg_database, start_server, wait_for
from tests.helix_support import Receiver, app_with_tokens, headers

BUS_URL = REDIS_URL.rsplit("/", 1)[0] + "/14"


def update(user: dict[str, Any], n: int) -> dict[str, Any]:
    return {"broadcaster_user_id": user["user_id"], "broadcaster_user_login": user["login"],
            "broadcaster_user_name": user["login"], "title": f"event {n}", "language": "en",
            "category_id": "", "category_name": "", "content_classification_labels": []}


@dataclass
class Worker:
    """A ``livecast serve --role worker`` process."""

    proc: asyncio.subprocess.Process
    log: Path

    @classmethod
    async def start(cls, tmp_path: Path, name: str, db_url: str) -> Worker:
        data = tmp_path / name
        data.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "LIVECAST_DATA_DIR": str(data), "LIVECAST_ROLES": "worker",
               "LIVECAST_BUS_URL": BUS_URL, "LIVECAST_DATABASE_URL": db_url, "LIVECAST_HTTP_PORT": "0",
               "LIVECAST_RTMP_PORT": "0", "LIVECAST_IRC_PORT": "0",
               "LIVECAST_EVENTSUB_ALLOW_PRIVATE_CALLBACKS": "true"}
        log = tmp_path / f"{name}.log"
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "livecast", "serve", env=env,
                                                        stdout=out, stderr=asyncio.subprocess.STDOUT)
        ports = data / "ports.json"
        await wait_for(lambda: ports.exists() and ports.read_text().strip().endswith("}"), timeout=30)
        return cls(proc, log)

    async def stop(self) -> None:
        """SIGTERM, as an orchestrator stops it."""
        self.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(self.proc.wait(), 30) == 0

    async def kill(self) -> None:
        self.proc.kill()
        await self.proc.wait()

    def assert_clean(self) -> None:
        text = self.log.read_text()
        assert "Traceback" not in text and "did not stop in time" not in text, text[-3000:]


@dataclass
class Session:
    """An EventSub WebSocket client that records every notification."""

    ws: Any
    session_id: str
    notes: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                doc = json.loads(raw)
                if doc["metadata"]["message_type"] == "notification":
                    self.notes.append(doc)

    def titles(self) -> list[str]:
        return [n["payload"]["event"]["title"] for n in self.notes]

    def ids(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for n in self.notes:
            out.setdefault(n["payload"]["event"]["title"], set()).add(n["metadata"]["message_id"])
        return out


@dataclass
class Cluster:
    api: Server
    db_url: str
    receiver: Receiver
    session: Session
    alice: dict[str, Any]
    workers: list[Worker] = field(default_factory=list)

    async def worker(self, tmp_path: Path, name: str) -> Worker:
        w = await Worker.start(tmp_path, name, self.db_url)
        self.workers.append(w)
        return w

    def hook_titles(self) -> list[str]:
        return [note["event"]["title"] for _, note in self.receiver.notifications()]

    def hook_ids(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for hdrs, note in self.receiver.notifications():
            out.setdefault(note["event"]["title"], set()).add(hdrs["Twitch-Eventsub-Message-Id"])
        return out

    async def publish(self, n: int) -> None:
        await publish_event(self.api.platform.bus, "channel.update", update(self.alice, n))

    def assert_all_once_each(self, want: set[str]) -> None:
        """Every event reached both transports, at least once, each under one message id,
        the webhook's and the WebSocket's ids distinct (two subscriptions)."""
        for name, seen, ids in (("webhook", self.hook_titles(), self.hook_ids()),
                                ("websocket", self.session.titles(), self.session.ids())):
            missing = sorted(want - set(seen), key=lambda t: int(t.split()[1]))
            assert not missing, f"{name}: {len(missing)} of {len(want)} events lost: {missing[:20]}"
            assert all(len(v) == 1 for v in ids.values()), f"{name}: a redelivery changed its message_id"
        hook, ws = self.hook_ids(), self.session.ids()
        assert not any(hook[t] & ws[t] for t in want)


async def _reset_bus() -> None:
    r = aioredis.from_url(BUS_URL)
    try:
        await r.delete(EVENT_STREAM, LEASE_KEY)
    finally:
        await r.aclose()


async def _pending() -> int:
    r = aioredis.from_url(BUS_URL)
    try:
        return int((await r.xpending(EVENT_STREAM, GROUP))["pending"])
    finally:
        await r.aclose()


@contextlib.asynccontextmanager
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """An API node here, one worker process, a webhook and a WebSocket subscription to
    ``channel.update``, both enabled (the worker answered the webhook's challenge)."""
    await _reset_bus()
    db_url = await create_pg_database()
    receiver = Receiver()
    await receiver.start()
    api = await start_server(tmp_path / "api", bus_url=BUS_URL, database_url=db_url, roles=("api",),
                             eventsub_allow_private_callbacks=True)
    c: Cluster | None = None
    try:
        first = await Worker.start(tmp_path, "worker-1", db_url)
        alice = await api.create_user("alice")
        client_id, _s, app_token, tokens = await app_with_tokens(api, [alice["user_id"]])
        ws = await websockets.connect(api.http_url.replace("http", "ws") + "/ws")
        session = Session(ws, json.loads(await ws.recv())["payload"]["session"]["id"])
        session.task = asyncio.create_task(session._read())
        c = Cluster(api, db_url, receiver, session, alice, [first])
        condition = {"broadcaster_user_id": alice["user_id"]}
        async with httpx.AsyncClient(base_url=api.http_url) as http:
            r = await http.post("/helix/eventsub/subscriptions", headers=headers(client_id, app_token), json={
                "type": "channel.update", "version": "2", "condition": condition,
                "transport": {"method": "webhook", "callback": receiver.url, "secret": "0123456789abcdef"}})
            assert r.status_code == 202, r.text
            hook_id = r.json()["data"][0]["id"]
            r = await http.post("/helix/eventsub/subscriptions", headers=headers(client_id, tokens[alice["user_id"]][0]),
                                json={"type": "channel.update", "version": "2", "condition": condition,
                                      "transport": {"method": "websocket", "session_id": session.session_id}})
            assert r.status_code == 202, r.text

        async def enabled() -> bool:
            async with api.platform.db.session() as db:
                row = await db.get(EventSubSubscription, hook_id)
            return row is not None and row.status == "enabled"

        await wait_for(enabled, timeout=20)
        yield c
        for w in c.workers:
            w.assert_clean()
    finally:
        if c is not None:
            for w in c.workers:
                if w.proc.returncode is None:
                    await w.kill()
            if c.session.task is not None:
                c.session.task.cancel()
                with contextlib.suppress(BaseException):
                    await c.session.task
            await c.session.ws.close()
        await api.runner.stop()
        await receiver.stop()
        await drop_pg_database(db_url)


async def test_events_published_while_no_worker_runs_are_delivered_when_one_starts(tmp_path: Path) -> None:
    """Every worker is stopped; events keep being published (pub/sub alone would drop them all);
    a worker started afterwards delivers them all, to the webhook and the WebSocket session,
    in order."""
    n_events = 60
    async with cluster(tmp_path) as c:
        await c.workers[0].stop()
        for n in range(n_events):
            await c.publish(n)
        await asyncio.sleep(0.5)
        assert c.hook_titles() == [] and c.session.titles() == []  # nobody dispatches now
        await c.worker(tmp_path, "worker-2")
        want = [f"event {n}" for n in range(n_events)]
        with contextlib.suppress(TimeoutError):
            await wait_for(lambda: set(c.hook_titles()) >= set(want) and set(c.session.titles()) >= set(want),
                           timeout=20)
        c.assert_all_once_each(set(want))
        assert c.hook_titles() == want and c.session.titles() == want  # one dispatcher, stream order
        await c.workers[1].stop()


async def test_worker_killed_mid_dispatch_loses_nothing(tmp_path: Path) -> None:
    """The dispatching worker is SIGKILLed while it holds an event it read but has not
    dispatched (its query for the event's subscriptions waits on a table lock), with events
    flowing; a second worker,
    started beforehand as a standby, takes the lease over once it lapses, claims what the dead
    one held and delivers every event, each under one message id per subscription."""
    n_events = 300
    async with cluster(tmp_path) as c:
        await c.worker(tmp_path, "worker-2")  # a standby: the first one holds the lease

        async def produce() -> None:
            for n in range(n_events):
                await c.publish(n)
                await asyncio.sleep(0.005)

        producer = asyncio.create_task(produce())
        await wait_for(lambda: len(c.hook_titles()) >= 30, timeout=20)
        lock = await asyncpg.connect(c.db_url)
        try:
            tx = lock.transaction()
            await tx.start()
            # Dispatching reads the subscriptions first; deliveries already under way do not
            # (they finish and let go of their per-message locks, which would otherwise hold
            # the next worker's deliveries up for their 15 s lifetime).
            await lock.execute(f"LOCK TABLE {EventSubSubscription.__tablename__} IN ACCESS EXCLUSIVE MODE")
            await wait_for(lambda: _pending(), timeout=10)  # read, not dispatched, not acknowledged
            assert not producer.done(), "the kill must happen while events flow"
            await c.workers[0].kill()
            await tx.rollback()
        finally:
            await lock.close()
        await producer
        want = {f"event {n}" for n in range(n_events)}
        with contextlib.suppress(TimeoutError):
            await wait_for(lambda: set(c.hook_titles()) >= want and set(c.session.titles()) >= want, timeout=20)
        c.assert_all_once_each(want)
        assert await _pending() == 0
        await c.workers[1].stop()


async def test_a_redispatched_event_keeps_its_notifications(tmp_path: Path) -> None:
    """The same stream entry dispatched twice (a dispatcher died between dispatching it and
    acknowledging it): one outbox row, and the WebSocket session gets the same message id."""
    from tests.test_eventsub import online, webhook_server

    srv = await webhook_server(tmp_path)
    try:
        alice = await srv.create_user("alice")
        async with srv.platform.db.session() as db:
            for method in ("webhook", "websocket"):
                db.add(EventSubSubscription(
                    id=f"sub-{method}", type="stream.online", version="1",
                    condition={"broadcaster_user_id": alice["user_id"]}, condition_key=alice["user_id"],
                    client_id="c", user_id=alice["user_id"], method=method, callback="http://127.0.0.1:9/",
                    secret="0123456789", session_id="s1" if method == "websocket" else "", status="enabled",
                    cost=0))
        data = json.dumps(online(alice, 0)).encode()
        sent = await srv.platform.bus.subscribe("eventsub.session.s1")
        await asyncio.sleep(0.05)
        for _ in range(2):
            assert await dispatch(srv.platform, "event.stream.online", data, "1700000000000-0/x") == 2
        async with srv.platform.db.session() as db:
            rows = (await db.execute(
                EventSubMessage.__table__.select().where(EventSubMessage.subscription_id == "sub-webhook"))).all()
        assert len(rows) == 1
        ws_ids = []
        async for _channel, payload in sent:
            ws_ids.append(json.loads(payload.partition(b"\n")[2])["metadata"]["message_id"])
            if len(ws_ids) == 2:
                break
        await sent.close()
        assert ws_ids[0] == ws_ids[1] != rows[0].message_id
        assert await dispatch(srv.platform, "event.stream.online", data, "1700000000000-1/x") == 2  # another event
        async with srv.platform.db.session() as db:
            count = len((await db.execute(EventSubMessage.__table__.select().where(
                EventSubMessage.kind == "notification"))).all())
        assert count == 2
    finally:
        await srv.runner.stop()

