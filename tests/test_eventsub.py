"""EventSub: subscription rules, webhook delivery (signed, durable, ordered, retried, revoked), WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from livecast.api.eventsub import catalog
from livecast.api.eventsub.models import EventSubMessage
from livecast.api.eventsub.signing import sign, verify
from livecast.api.eventsub.websocket import WsManager
from livecast.api.eventsub.worker import EventSubWorker
from livecast.bus import publish_event
from tests.conftest import Server, start_server, wait_for
from tests.helix_support import Receiver, app_with_tokens, headers


def worker_of(server: Server) -> EventSubWorker:
    return next(s for s in server.runner.services if isinstance(s, EventSubWorker))


def online(user: dict[str, Any], n: int = 0) -> dict[str, Any]:
    return {"id": f"stream-{n}", "broadcaster_user_id": user["user_id"], "broadcaster_user_login": user["login"],
            "broadcaster_user_name": user["login"], "type": "live", "started_at": f"2026-01-01T00:00:{n:02d}Z"}


def test_timestamps_and_signatures() -> None:
    stamp = catalog.timestamp(dt.datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=dt.UTC))
    assert stamp == "2026-01-02T03:04:05.12Z"
    assert catalog.timestamp(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)) == "2026-01-02T03:04:05Z"
    sig = sign("s3cretsecret", "id", stamp, b"{}")
    assert re.fullmatch(r"sha256=[0-9a-f]{64}", sig)
    assert verify("s3cretsecret", "id", stamp, b"{}", sig)
    assert not verify("s3cretsecret", "id", stamp, b"{ }", sig)


async def webhook_server(tmp_path: Path, **overrides: Any) -> Server:
    srv = await start_server(tmp_path, eventsub_allow_private_callbacks=True, **overrides)
    worker_of(srv).retry_base = 0.1
    return srv


async def subscribe_webhook(c: httpx.AsyncClient, h: dict[str, str], user_id: str, callback: str,
                            type_: str = "stream.online", version: str = "1") -> httpx.Response:
    return await c.post("/helix/eventsub/subscriptions", headers=h, json={
        "type": type_, "version": version, "condition": {"broadcaster_user_id": user_id},
        "transport": {"method": "webhook", "callback": callback, "secret": "0123456789abcdef"}})


async def test_subscription_rules(tmp_path: Path) -> None:
    srv = await start_server(tmp_path)  # private callbacks not allowed here
    try:
        alice = await srv.create_user("alice")
        client_id, _s, app_token, tokens = await app_with_tokens(srv, [alice["user_id"]], scopes=["chat:read"])
        h = headers(client_id, app_token)
        async with httpx.AsyncClient(base_url=srv.http_url) as c:
            r = await subscribe_webhook(c, h, alice["user_id"], "https://127.0.0.1/callback")
            assert r.status_code == 400 and "private or loopback" in r.json()["message"]
            r = await subscribe_webhook(c, h, alice["user_id"], "http://example.com/callback")
            assert r.status_code == 400 and "https" in r.json()["message"]
            r = await subscribe_webhook(c, h, alice["user_id"], "https://93.184.216.34/cb", type_="stream.bogus")
            assert r.status_code == 400
            r = await subscribe_webhook(c, h, alice["user_id"], "https://93.184.216.34/cb", type_="channel.update")
            assert r.status_code == 400 and "version" in r.json()["message"]
            # channel.ban needs the broadcaster's channel:moderate grant to this client
            r = await subscribe_webhook(c, h, alice["user_id"], "https://93.184.216.34/cb", type_="channel.ban")
            assert r.status_code == 403
            # a user token cannot create webhooks; websockets need a live session
            uh = headers(client_id, tokens[alice["user_id"]][0])
            r = await subscribe_webhook(c, uh, alice["user_id"], "https://93.184.216.34/cb")
            assert r.status_code == 400
            r = await c.post("/helix/eventsub/subscriptions", headers=uh, json={
                "type": "stream.online", "version": "1", "condition": {"broadcaster_user_id": alice["user_id"]},
                "transport": {"method": "websocket", "session_id": "nope"}})
            assert r.status_code == 400 and "session" in r.json()["message"]
            r = await c.post("/helix/eventsub/subscriptions", headers=h, content=b"{not json")
            assert r.status_code == 400
            r = await c.delete("/helix/eventsub/subscriptions", params={"id": "missing"}, headers=h)
            assert r.status_code == 404
    finally:
        await srv.runner.stop()


async def test_webhook_delivery_signed_and_ordered(tmp_path: Path) -> None:
    receiver = Receiver()
    await receiver.start()
    srv = await webhook_server(tmp_path)
    try:
        alice = await srv.create_user("alice")
        client_id, _s, app_token, _ = await app_with_tokens(srv, [alice["user_id"]])
        h = headers(client_id, app_token)
        async with httpx.AsyncClient(base_url=srv.http_url) as c:
            r = await subscribe_webhook(c, h, alice["user_id"], receiver.url)
            assert r.status_code == 202, r.text
            body = r.json()
            sub = body["data"][0]
            assert sub["status"] == "webhook_callback_verification_pending" and sub["cost"] == 0
            assert body["max_total_cost"] == 10000
            r = await subscribe_webhook(c, h, alice["user_id"], receiver.url)
            assert r.status_code == 409

            async def enabled() -> bool:
                r = await c.get("/helix/eventsub/subscriptions", params={"status": "enabled"}, headers=h)
                return bool(r.json()["data"])

            await wait_for(enabled)
            for n in range(5):
                await publish_event(srv.platform.bus, "stream.online", online(alice, n))
            await publish_event(srv.platform.bus, "stream.online",
                                {**online(alice, 9), "broadcaster_user_id": "someone-else"})
            await wait_for(lambda: len(receiver.notifications()) >= 5)
            await asyncio.sleep(0.3)
        notes = receiver.notifications()
        assert [n["event"]["id"] for _, n in notes] == [f"stream-{n}" for n in range(5)]
        for hdrs, doc in notes:
            assert hdrs["Twitch-Eventsub-Subscription-Type"] == "stream.online"
            assert doc["subscription"]["id"] == sub["id"]
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z",
                                hdrs["Twitch-Eventsub-Message-Timestamp"])
        hdrs, raw = next((h_, b) for h_, b in receiver.received)
        assert verify("0123456789abcdef", hdrs["Twitch-Eventsub-Message-Id"],
                      hdrs["Twitch-Eventsub-Message-Timestamp"], raw, hdrs["Twitch-Eventsub-Message-Signature"])
    finally:
        await srv.runner.stop()
        await receiver.stop()


async def test_webhook_durable_across_restart(tmp_path: Path) -> None:
    receiver = Receiver()
    await receiver.start()
    srv = await webhook_server(tmp_path)
    try:
        alice = await _alice_subscribed_to_online(srv, receiver)
        receiver.up = False
        worker_of(srv).retry_base = 30  # the retry would come long after the restart
        for n in range(3):
            await publish_event(srv.platform.bus, "stream.online", online(alice, n))
        await wait_for(lambda: len(receiver.received) >= 1)
        first_id = receiver.received[0][0]["Twitch-Eventsub-Message-Id"]
        # What is durable across the restart is the outbox: stop once all three are in it (with
        # memory:// the event stream itself lives and dies with the process).
        await wait_for(lambda: _outbox_count(srv, 3))
    finally:
        await srv.runner.stop()
    receiver.up = True
    srv = await webhook_server(tmp_path)
    try:
        async with srv.platform.db.session() as db:  # make the postponed retry due now
            from sqlalchemy import update

            await db.execute(update(EventSubMessage).values(next_attempt_at=dt.datetime.now(dt.UTC)))
        worker_of(srv).wake.set()
        await wait_for(lambda: len({h["Twitch-Eventsub-Message-Id"] for h, _ in receiver.received}) >= 3)
        await asyncio.sleep(0.3)
        ids = [h["Twitch-Eventsub-Message-Id"] for h, _ in receiver.received]
        assert ids[0] == ids[1] == first_id, "the retry after restart reuses the message id"
        assert len(set(ids)) == 3, "exactly one message id per event"
        events = [json.loads(b)["event"]["id"] for _, b in receiver.received]
        assert events == ["stream-0", "stream-0", "stream-1", "stream-2"]
        assert receiver.received[1][0]["Twitch-Eventsub-Message-Retry"] == "1"
    finally:
        await srv.runner.stop()
        await receiver.stop()


async def test_sigterm_with_the_in_process_bus_dispatches_what_the_stream_holds(tmp_path: Path) -> None:
    """memory://: the event stream dies with the process, so a stop dispatches what it still
    holds into the (durable) outbox before the worker lets go; a restart then delivers it."""
    receiver = Receiver()
    await receiver.start()
    srv = await webhook_server(tmp_path)
    try:
        alice = await _alice_subscribed_to_online(srv, receiver)
        receiver.up = False  # nothing is delivered before the stop: all 80 must be in the outbox
        for n in range(80):
            await publish_event(srv.platform.bus, "stream.online", online(alice, n % 60))
    finally:
        await srv.runner.stop()  # what SIGTERM runs
    receiver.up = True
    srv = await webhook_server(tmp_path)
    try:
        assert await _outbox_count(srv, 80)
        worker_of(srv).wake.set()
        await wait_for(lambda: len({h["Twitch-Eventsub-Message-Id"] for h, _ in receiver.received}) >= 80,
                       timeout=30)
    finally:
        await srv.runner.stop()
        await receiver.stop()


async def test_stream_offline_of_a_stop_with_the_in_process_bus_is_delivered_after_restart(tmp_path: Path) -> None:
    """memory://: stopping while alice is live ends her stream, and the ingest publishes
    ``stream.offline`` after the EventSub worker has stopped. It still reaches the outbox, and
    the subscriber gets it from the next start."""
    from tests.test_ingest_e2e import ffmpeg_publish

    receiver = Receiver()
    await receiver.start()
    srv = await webhook_server(tmp_path)
    publisher = None
    try:
        alice = await srv.create_user("alice")
        client_id, _s, app_token, _ = await app_with_tokens(srv, [alice["user_id"]])
        async with httpx.AsyncClient(base_url=srv.http_url) as c:
            r = await subscribe_webhook(c, headers(client_id, app_token), alice["user_id"], receiver.url,
                                        type_="stream.offline")
            sub_id = r.json()["data"][0]["id"]
        await wait_for(lambda: receiver.port and _status(srv, sub_id))
        publisher = await ffmpeg_publish(srv.rtmp_port, alice["stream_key"], 60, size="320x180")

        async def live() -> bool:
            async with httpx.AsyncClient(base_url=srv.http_url) as c:
                r = await c.get("/helix/streams", params={"user_login": "alice"}, headers=headers(client_id, app_token))
                return bool(r.json()["data"])

        await wait_for(live, timeout=30, interval=0.3)
    finally:
        await srv.runner.stop()  # what SIGTERM runs
        if publisher is not None:
            with contextlib.suppress(ProcessLookupError):  # gone already when the server closed on it
                publisher.kill()
            await publisher.wait()

    def offline_sent() -> bool:
        return any(h.get("Twitch-Eventsub-Subscription-Type") == "stream.offline" for h, _ in receiver.received)

    srv = await webhook_server(tmp_path)
    try:
        worker_of(srv).wake.set()
        await wait_for(offline_sent, timeout=30)
        body = next(b for h, b in receiver.received if h.get("Twitch-Eventsub-Subscription-Type") == "stream.offline")
        assert json.loads(body)["event"]["broadcaster_user_login"] == "alice"
    finally:
        await srv.runner.stop()
        await receiver.stop()


async def _alice_subscribed_to_online(srv: Server, receiver: Receiver) -> dict[str, Any]:
    """A user alice with an enabled stream.online webhook subscription to ``receiver``."""
    alice = await srv.create_user("alice")
    client_id, _s, app_token, _ = await app_with_tokens(srv, [alice["user_id"]])
    async with httpx.AsyncClient(base_url=srv.http_url) as c:
        r = await subscribe_webhook(c, headers(client_id, app_token), alice["user_id"], receiver.url)
        sub_id = r.json()["data"][0]["id"]
    await wait_for(lambda: receiver.port and _status(srv, sub_id))
    return alice


async def _outbox_count(srv: Server, at_least: int) -> bool:
    from sqlalchemy import func, select

    async with srv.platform.db.session() as db:
        return (await db.scalar(select(func.count()).select_from(EventSubMessage)) or 0) >= at_least


async def _status(srv: Server, sub_id: str, want: str = "enabled") -> bool:
    from livecast.api.eventsub.models import EventSubSubscription

    async with srv.platform.db.session() as db:
        row = await db.get(EventSubSubscription, sub_id)
    return row is not None and row.status == want


async def test_webhook_failures_revoke(tmp_path: Path) -> None:
    receiver = Receiver(up=False)
    await receiver.start()
    srv = await webhook_server(tmp_path)
    worker_of(srv).max_attempts = 3
    worker_of(srv).retry_base = 0.05
    try:
        alice = await srv.create_user("alice")
        client_id, _s, app_token, _ = await app_with_tokens(srv, [alice["user_id"]])
        async with httpx.AsyncClient(base_url=srv.http_url) as c:
            r = await subscribe_webhook(c, headers(client_id, app_token), alice["user_id"], receiver.url)
            sub_id = r.json()["data"][0]["id"]
            await wait_for(lambda: _status(srv, sub_id))
            await publish_event(srv.platform.bus, "stream.online", online(alice))
            await wait_for(lambda: _status(srv, sub_id, "notification_failures_exceeded"))
            await wait_for(lambda: any(h.get("Twitch-Eventsub-Message-Type") == "revocation"
                                       for h, _ in receiver.received))
            revocation = next(json.loads(b) for h, b in receiver.received
                              if h.get("Twitch-Eventsub-Message-Type") == "revocation")
            assert revocation["subscription"]["status"] == "notification_failures_exceeded"
            assert len(receiver.notifications()) == 3
            r = await c.get("/helix/eventsub/subscriptions", headers=headers(client_id, app_token))
            assert r.json()["data"][0]["status"] == "notification_failures_exceeded"
            assert r.json()["total_cost"] == 0
    finally:
        await srv.runner.stop()
        await receiver.stop()


async def test_websocket_transport(server: Server) -> None:
    alice = await server.create_user("alice")
    client_id, _s, _app, tokens = await app_with_tokens(server, [alice["user_id"]])
    h = headers(client_id, tokens[alice["user_id"]][0])
    ws_url = server.http_url.replace("http", "ws") + "/ws"
    manager: WsManager = server.platform.state["eventsub.ws"]
    async with httpx.AsyncClient(base_url=server.http_url) as c, websockets.connect(ws_url) as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["metadata"]["message_type"] == "session_welcome"
        session = welcome["payload"]["session"]
        assert session["status"] == "connected" and session["keepalive_timeout_seconds"] == 10
        r = await c.post("/helix/eventsub/subscriptions", headers=h, json={
            "type": "channel.update", "version": "2", "condition": {"broadcaster_user_id": alice["user_id"]},
            "transport": {"method": "websocket", "session_id": session["id"]}})
        assert r.status_code == 202, r.text
        assert r.json()["max_total_cost"] == 10
        r = await c.patch("/helix/channels", params={"broadcaster_id": alice["user_id"]}, headers=h,
                          json={"title": "via websocket"})
        assert r.status_code == 204
        note = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert note["metadata"]["message_type"] == "notification"
        assert note["metadata"]["subscription_type"] == "channel.update"
        assert note["payload"]["event"]["title"] == "via websocket"

        # the node drains: session_reconnect, the client moves, the subscription follows
        assert await manager.drain() == 1
        reconnect = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reconnect["metadata"]["message_type"] == "session_reconnect"
        url = reconnect["payload"]["session"]["reconnect_url"]
        async with websockets.connect(url) as ws2:
            welcome2 = json.loads(await ws2.recv())
            assert welcome2["payload"]["session"]["id"] == session["id"]
            await asyncio.wait_for(ws.wait_closed(), 5)
            r = await c.patch("/helix/channels", params={"broadcaster_id": alice["user_id"]}, headers=h,
                              json={"title": "after reconnect"})
            note = json.loads(await asyncio.wait_for(ws2.recv(), 5))
            assert note["payload"]["event"]["title"] == "after reconnect"
            # a client that sends anything is closed with 4001 and its subscriptions end
            await ws2.send("hello")
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws2.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
        r = await c.get("/helix/eventsub/subscriptions", headers=h)
        assert await wait_for(lambda: _ws_status(c, h, "websocket_received_inbound_traffic"))


async def _ws_status(c: httpx.AsyncClient, h: dict[str, str], want: str) -> bool:
    r = await c.get("/helix/eventsub/subscriptions", headers=h)
    return [s["status"] for s in r.json()["data"]] == [want]


async def test_websocket_unused_and_bad_keepalive(server: Server) -> None:
    manager: WsManager = server.platform.state["eventsub.ws"]
    manager.unused_timeout = 0.3
    ws_url = server.http_url.replace("http", "ws") + "/ws"
    async with websockets.connect(ws_url + "?keepalive_timeout_seconds=30") as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["payload"]["session"]["keepalive_timeout_seconds"] == 30
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4003
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(ws_url + "?keepalive_timeout_seconds=5"):
            pass
    async with websockets.connect(ws_url + "?reconnect_id=bogus") as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4007


async def test_websocket_keepalive(server: Server) -> None:
    ws_url = server.http_url.replace("http", "ws") + "/ws?keepalive_timeout_seconds=10"
    alice = await server.create_user("alice")
    client_id, _s, _app, tokens = await app_with_tokens(server, [alice["user_id"]])
    async with httpx.AsyncClient(base_url=server.http_url) as c, websockets.connect(ws_url) as ws:
        session = json.loads(await ws.recv())["payload"]["session"]
        await c.post("/helix/eventsub/subscriptions", headers=headers(client_id, tokens[alice["user_id"]][0]), json={
            "type": "stream.offline", "version": "1", "condition": {"broadcaster_user_id": alice["user_id"]},
            "transport": {"method": "websocket", "session_id": session["id"]}})
        msg = json.loads(await asyncio.wait_for(ws.recv(), 12))
        assert msg["metadata"]["message_type"] == "session_keepalive" and msg["payload"] == {}


async def test_identical_events_and_two_workers(tmp_path: Path) -> None:
    """Two worker processes on one Redis and database: every event is delivered exactly once,
    including two events whose payloads happen to be identical."""
    from tests.conftest import REDIS_URL

    receiver = Receiver()
    await receiver.start()
    first = await webhook_server(tmp_path / "a", bus_url=REDIS_URL)
    db_url = f"sqlite:///{tmp_path / 'a' / 'var' / 'livecast.db'}"
    second = await webhook_server(tmp_path / "b", bus_url=REDIS_URL, database_url=db_url)
    try:
        assert [worker_of(first).leader, worker_of(second).leader].count(True) == 1
        alice = await first.create_user("alice")
        client_id, _s, app_token, _ = await app_with_tokens(first, [alice["user_id"]])
        async with httpx.AsyncClient(base_url=second.http_url) as c:
            r = await subscribe_webhook(c, headers(client_id, app_token), alice["user_id"], receiver.url,
                                        type_="channel.chat.clear")
            assert r.status_code == 400  # channel.chat.clear needs a user_id in the condition
            r = await subscribe_webhook(c, headers(client_id, app_token), alice["user_id"], receiver.url)
            sub_id = r.json()["data"][0]["id"]
        await wait_for(lambda: _status(first, sub_id))
        same = online(alice, 1)
        for event in (online(alice, 0), same, same, online(alice, 2)):
            await publish_event(first.platform.bus, "stream.online", event)
        await wait_for(lambda: len(receiver.notifications()) >= 4)
        await asyncio.sleep(0.5)
        notes = receiver.notifications()
        assert [n["event"]["id"] for _, n in notes] == ["stream-0", "stream-1", "stream-1", "stream-2"]
        assert len({h["Twitch-Eventsub-Message-Id"] for h, _ in notes}) == 4
    finally:
        await second.runner.stop()
        await first.runner.stop()
        await receiver.stop()
