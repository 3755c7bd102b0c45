"""EventSub delivery guarantees under a node drain and a worker stop.

WebSocket: two API nodes share a Redis bus and one database; a client holds a session on one
node while a producer publishes numbered events continuously; the node is stopped gracefully
(what SIGTERM runs), the client follows ``session_reconnect`` to the other node the way
Twitch's documentation tells clients to (keep reading the old connection until the new one is
welcomed, then close it), and every event must arrive at least once, each with one stable
``message_id``. Webhooks: a worker stopped while a POST is in flight leaves the message in the
durable outbox, and the next worker delivers it with the same ``message_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
from aiohttp import web

from livecast.api.eventsub.models import EventSubSubscription
from livecast.api.eventsub.worker import EventSubWorker
from livecast.bus import publish_event
from tests.conftest import REDIS_URL, Server, start_server, wait_for
from tests.helix_support import Receiver, app_with_tokens, headers

N_EVENTS = 400
EVENT_INTERVAL_S = 0.004


def worker_of(server: Server) -> EventSubWorker:
    return next(s for s in server.runner.services if isinstance(s, EventSubWorker))


def update(user: dict[str, Any], n: int) -> dict[str, Any]:
    return {"broadcaster_user_id": user["user_id"], "broadcaster_user_login": user["login"],
            "broadcaster_user_name": user["login"], "title": f"event {n}", "language": "en",
            "category_id": "", "category_name": "", "content_classification_labels": []}


class Client:
    """A Twitch-conformant EventSub WebSocket client that records every notification."""

    def __init__(self) -> None:
        self.notes: list[dict[str, Any]] = []
        self.reconnects = 0
        self.welcomed = asyncio.Event()

    def seen(self) -> set[str]:
        return {n["payload"]["event"]["title"] for n in self.notes}

    async def read(self, ws: Any, until: asyncio.Event | None = None) -> dict[str, Any] | None:
        """Record notifications from ``ws``; return the first session message (reconnect,
        welcome), or None once ``until`` is set (the old connection after the new welcome)."""
        while True:
            recv = asyncio.ensure_future(ws.recv())
            waits: set[asyncio.Future[Any]] = {recv}
            stop = asyncio.ensure_future(until.wait()) if until is not None else None
            if stop is not None:
                waits.add(stop)
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if stop is not None and not stop.done():
                stop.cancel()
            if recv not in done:
                recv.cancel()
                with contextlib.suppress(BaseException):
                    await recv
                return None
            doc: dict[str, Any] = json.loads(recv.result())
            kind = doc["metadata"]["message_type"]
            if kind == "notification":
                self.notes.append(doc)
            elif kind != "session_keepalive":
                return doc

    async def follow(self, ws: Any, other_node: str) -> None:
        """Read ``ws``; on ``session_reconnect`` connect to the new URL (sent to ``other_node``,
        as a balancer would), keep reading the old connection until the new one is welcomed,
        then close the old one and carry on with the new one."""
        while True:
            try:
                doc = await self.read(ws)
            except websockets.ConnectionClosed:
                return
            assert doc is not None and doc["metadata"]["message_type"] == "session_reconnect", doc
            url = urlsplit(doc["payload"]["session"]["reconnect_url"])
            new = await websockets.connect(f"ws://{other_node}{url.path}?{url.query}")
            welcomed = asyncio.Event()
            old_reader = asyncio.create_task(self.read(ws, until=welcomed))
            welcome = await self.read(new)
            assert welcome is not None and welcome["metadata"]["message_type"] == "session_welcome", welcome
            self.reconnects += 1
            welcomed.set()
            with contextlib.suppress(websockets.ConnectionClosed):
                await old_reader
            await ws.close()
            ws = new


class Lagging:
    """A bus subscription that hands each message on ``lag`` seconds late, in order: a busy
    node, or a congested link between it and Redis."""

    def __init__(self, sub: Any, lag: float) -> None:
        self.sub, self.lag = sub, lag
        self.queue: asyncio.Queue[tuple[float, tuple[str, bytes]] | None] = asyncio.Queue()
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        async for item in self.sub:
            self.queue.put_nowait((asyncio.get_running_loop().time() + self.lag, item))
        self.queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]:
        while (entry := await self.queue.get()) is not None:
            await asyncio.sleep(max(0.0, entry[0] - asyncio.get_running_loop().time()))
            yield entry[1]

    async def close(self) -> None:
        await self.sub.close()
        self.task.cancel()
        self.queue.put_nowait(None)


def lag_sessions(server: Server, lag: float) -> None:
    """Deliver EventSub session messages to this node ``lag`` seconds late."""
    bus = server.platform.bus
    subscribe = bus.subscribe

    async def lagging(*channels: str) -> Any:
        sub = await subscribe(*channels)
        return Lagging(sub, lag) if "eventsub.session.*" in channels else sub

    bus.subscribe = lagging  # type: ignore[method-assign]


async def two_nodes(tmp_path: Path, **overrides: Any) -> tuple[Server, Server]:
    """Two all-role nodes on one Redis bus and one database (either may hold the dispatch lease)."""
    first = await start_server(tmp_path / "a", bus_url=REDIS_URL, **overrides)
    db_url = f"sqlite:///{tmp_path / 'a' / 'var' / 'livecast.db'}"
    second = await start_server(tmp_path / "b", bus_url=REDIS_URL, database_url=db_url, **overrides)
    return first, second


@pytest.mark.parametrize("holder_dispatches,lag", [(False, 0.0), (False, 0.25), (True, 0.0)],
                         ids=["plain", "old-node-lagging", "old-node-dispatching"])
async def test_eventsub_websocket_lossless_across_node_drain(tmp_path: Path, holder_dispatches: bool,
                                                             lag: float) -> None:
    """``old-node-lagging``: the old node gets its session messages late, so it is still
    writing notifications to the old socket after the client was welcomed on the new one and
    closed it. ``old-node-dispatching``: the stopping node also held the dispatch lease, so the
    events published while it stops are dispatched by the other node's worker."""
    first, second = await two_nodes(tmp_path)
    first_leads = worker_of(first).leader
    holder, survivor = (first, second) if first_leads == holder_dispatches else (second, first)
    if lag:
        lag_sessions(holder, lag)
    stopped = False
    reader: asyncio.Task[None] | None = None
    try:
        alice = await holder.create_user("alice")
        client_id, _s, _app, tokens = await app_with_tokens(holder, [alice["user_id"]])
        h = headers(client_id, tokens[alice["user_id"]][0])
        client = Client()
        ws = await websockets.connect(holder.http_url.replace("http", "ws") + "/ws")
        session = json.loads(await ws.recv())["payload"]["session"]
        async with httpx.AsyncClient(base_url=holder.http_url) as c:
            r = await c.post("/helix/eventsub/subscriptions", headers=h, json={
                "type": "channel.update", "version": "2", "condition": {"broadcaster_user_id": alice["user_id"]},
                "transport": {"method": "websocket", "session_id": session["id"]}})
            assert r.status_code == 202, r.text
        reader = asyncio.create_task(client.follow(ws, survivor.http_url.removeprefix("http://")))

        async def produce() -> None:
            for n in range(N_EVENTS):
                await publish_event(survivor.platform.bus, "channel.update", update(alice, n))
                await asyncio.sleep(EVENT_INTERVAL_S)

        producer = asyncio.create_task(produce())
        await wait_for(lambda: len(client.notes) >= N_EVENTS // 4, timeout=20)
        assert not producer.done(), "the move must happen while events flow"
        await holder.runner.stop()  # what SIGTERM runs: drain (session_reconnect), then stop
        stopped = True
        await producer
        want = {f"event {n}" for n in range(N_EVENTS)}
        with contextlib.suppress(TimeoutError):
            await wait_for(lambda: client.seen() >= want, timeout=10)
        assert client.reconnects == 1
        missing = sorted(want - client.seen(), key=lambda t: int(t.split()[1]))
        assert not missing, f"{len(missing)} of {N_EVENTS} events lost: {missing[:20]}"
        ids: dict[str, set[str]] = {}
        for note in client.notes:
            ids.setdefault(note["payload"]["event"]["title"], set()).add(note["metadata"]["message_id"])
        assert all(len(v) == 1 for v in ids.values()), "a redelivered notification keeps its message_id"
    finally:
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
        await survivor.runner.stop()
        if not stopped:
            await holder.runner.stop()


class HoldingReceiver(Receiver):
    """A webhook callback that holds the first delivery of one event open (never answers it):
    the worker that sent it is stopped mid-delivery."""

    def __init__(self, hold: str) -> None:
        super().__init__()
        self.hold = hold
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if (request.headers.get("Twitch-Eventsub-Message-Type") == "notification" and not self.holding.is_set()
                and json.loads(body)["event"]["id"] == self.hold):
            self.received.append((dict(request.headers.items()), body))
            self.holding.set()
            await self.release.wait()
            return web.Response(status=503)
        return await super()._handle(request)


async def test_eventsub_webhooks_lossless_across_worker_stop(tmp_path: Path) -> None:
    """The dispatching worker is stopped (what SIGTERM runs) while a webhook POST is in flight
    and events keep coming: the interrupted message is sent again by the other worker with the
    same message id, and every event published before, during and after the stop arrives."""
    receiver = HoldingReceiver(hold="stream-5")
    await receiver.start()
    first, second = await two_nodes(tmp_path, eventsub_allow_private_callbacks=True)
    holder, survivor = (first, second) if worker_of(first).leader else (second, first)
    stopped = False
    holder_stopped = asyncio.Event()
    deliver = worker_of(survivor)._deliver

    async def after_the_stop(msg: Any, sub: Any) -> None:  # the holder's worker has the in-flight POST
        await holder_stopped.wait()
        await deliver(msg, sub)

    worker_of(survivor)._deliver = after_the_stop  # type: ignore[method-assign]
    n_events = 400
    try:
        alice = await holder.create_user("alice")
        client_id, _s, app_token, _ = await app_with_tokens(holder, [alice["user_id"]])
        async with httpx.AsyncClient(base_url=holder.http_url) as c:
            r = await c.post("/helix/eventsub/subscriptions", headers=headers(client_id, app_token), json={
                "type": "stream.online", "version": "1", "condition": {"broadcaster_user_id": alice["user_id"]},
                "transport": {"method": "webhook", "callback": receiver.url, "secret": "0123456789abcdef"}})
            assert r.status_code == 202, r.text
            sub_id = r.json()["data"][0]["id"]
        worker_of(holder).wake.set()

        async def enabled() -> bool:
            async with holder.platform.db.session() as db:
                row = await db.get(EventSubSubscription, sub_id)
            return row is not None and row.status == "enabled"

        await wait_for(enabled)

        async def produce() -> None:
            for n in range(n_events):
                await publish_event(survivor.platform.bus, "stream.online", {
                    "id": f"stream-{n}", "broadcaster_user_id": alice["user_id"],
                    "broadcaster_user_login": alice["login"], "broadcaster_user_name": alice["login"],
                    "type": "live", "started_at": "2026-01-01T00:00:00Z"})
                await asyncio.sleep(EVENT_INTERVAL_S)

        producer = asyncio.create_task(produce())
        await asyncio.wait_for(receiver.holding.wait(), 20)
        assert not producer.done(), "the stop must happen while events flow"
        await holder.runner.stop()
        stopped = True
        holder_stopped.set()
        await producer
        want = {f"stream-{n}" for n in range(n_events)}

        def seen() -> set[str]:
            return {note["event"]["id"] for _, note in receiver.notifications()}

        with contextlib.suppress(TimeoutError):
            await wait_for(lambda: seen() >= want, timeout=30)
        missing = sorted(want - seen(), key=lambda t: int(t.split("-")[1]))
        assert not missing, f"{len(missing)} of {n_events} events lost: {missing[:20]}"
        ids: dict[str, set[str]] = {}
        for hdrs, note in receiver.notifications():
            ids.setdefault(note["event"]["id"], set()).add(hdrs["Twitch-Eventsub-Message-Id"])
        assert all(len(v) == 1 for v in ids.values()), "one message id per event, kept by the resend"
        held = [h for h, note in receiver.notifications() if note["event"]["id"] == "stream-5"]
        assert len(held) == 2, "the interrupted delivery is sent again"
    finally:
        receiver.release.set()
        await survivor.runner.stop()
        if not stopped:
            await holder.runner.stop()
        await receiver.stop()
