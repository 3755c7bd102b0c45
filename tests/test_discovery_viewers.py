"""Viewer counting: the bus's distinct counters, playback tokens, heartbeats over HTTP, Redis
across processes, and the discovery endpoints of a running platform."""

from __future__ import annotations

import asyncio
import secrets
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from livecast.bus import Bus, create_bus, publish_event
from livecast.discovery import analytics, viewers
from livecast.discovery.models import StreamStats
from livecast.discovery.worker import DiscoveryWorker
from livecast.identity.credentials import sha256
from livecast.identity.models import WebSession
from livecast.ingest.models import Stream
from livecast.store.base import utcnow
from tests.conftest import REDIS_URL, Server, create_pg_database, drop_pg_database, start_server, wait_for


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    b = create_bus("memory://" if request.param == "memory" else REDIS_URL)
    await b.start()
    try:
        yield b
    finally:
        await b.close()


async def test_distinct_counters_union_and_expiry(bus: Bus) -> None:
    ns = uuid.uuid4().hex
    assert await bus.hll_add(f"{ns}:a", "s1", ttl=10)
    assert not await bus.hll_add(f"{ns}:a", "s1", ttl=10)
    assert await bus.hll_add(f"{ns}:a", "s2", ttl=10)
    await bus.hll_add(f"{ns}:b", "s2", ttl=10)
    await bus.hll_add(f"{ns}:b", "s3", ttl=10)
    assert await bus.hll_count(f"{ns}:a") == 2
    assert await bus.hll_count(f"{ns}:a", f"{ns}:b") == 3
    assert await bus.hll_count(f"{ns}:missing") == 0
    assert await bus.hll_counts([(f"{ns}:a",), (f"{ns}:a", f"{ns}:b"), (f"{ns}:missing",)]) == [2, 3, 0]
    assert await bus.hll_counts([]) == []
    await bus.hll_add(f"{ns}:short", "s1", ttl=1)
    await asyncio.sleep(1.3)
    assert await bus.hll_count(f"{ns}:short") == 0


def test_playback_tokens_are_bound_and_unforgeable() -> None:
    secret = secrets.token_bytes(32)
    token = viewers.issue_token(secret, "c1", "a:viewer", now=1000)
    grant = viewers.verify_token(secret, token, now=1001)
    assert grant == viewers.PlaybackGrant("c1", "a:viewer", 1000 + viewers.TOKEN_LIFETIME)
    assert viewers.verify_token(secrets.token_bytes(32), token, now=1001) is None  # other server's secret
    body, mac = token.split(".")
    other = viewers.issue_token(secret, "c2", "a:viewer", now=1000)
    assert viewers.verify_token(secret, f"{other.split('.')[0]}.{mac}", now=1001) is None  # swapped body
    assert viewers.verify_token(secret, token, now=1000 + viewers.TOKEN_LIFETIME + 1) is None  # expired
    for junk in ["", ".", "a.b.c", "x" * 600, f"{body}.", "%%%.%%%"]:
        assert viewers.verify_token(secret, junk) is None


async def test_one_address_cannot_mint_anonymous_viewers(bus: Bus) -> None:
    channel = "chan-" + uuid.uuid4().hex
    for i in range(viewers.ANON_PER_ADDRESS + 15):
        await viewers.heartbeat(bus, viewers.PlaybackGrant(channel, f"a:bot{i}", 0), address="203.0.113.9")
    await viewers.heartbeat(bus, viewers.PlaybackGrant(channel, "a:neighbour", 0), address="198.51.100.7")
    for i in range(30):  # signed-in users are not capped by address: each is a real account
        await viewers.heartbeat(bus, viewers.PlaybackGrant(channel, f"u:{i}", 0), address="203.0.113.9")
    assert await viewers.count(bus, channel) == viewers.ANON_PER_ADDRESS + 1 + 30


_OTHER_PROCESS = """
import asyncio, sys
from livecast.bus import create_bus
from livecast.discovery import analytics, viewers
from livecast.discovery.models import StreamStats
async def main():
    bus = create_bus(sys.argv[1]); await bus.start()
    for session in sys.argv[3:]:
        await viewers.heartbeat(bus, viewers.PlaybackGrant(sys.argv[2], session, 0))
    await bus.close()
asyncio.run(main())
"""


async def test_one_session_counts_once_across_processes_on_redis() -> None:
    channel = "chan-" + uuid.uuid4().hex
    a, b = create_bus(REDIS_URL), create_bus(REDIS_URL)
    await a.start()
    await b.start()
    try:
        phone = viewers.PlaybackGrant(channel, "u:alice", 0)
        await asyncio.gather(*[viewers.heartbeat(bus, phone) for bus in (a, b) for _ in range(5)])
        assert await viewers.count(a, channel) == 1
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _OTHER_PROCESS, REDIS_URL, channel, "u:alice", "u:bob", "a:anon1"
        )
        assert await proc.wait() == 0
        assert await viewers.count(a, channel) == 3
        assert await viewers.count(b, channel) == 3
    finally:
        await a.close()
        await b.close()


async def _signed_in(server: Server, user_id: str) -> tuple[dict[str, str], str]:
    raw, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
    async with server.platform.db.session() as db:
        db.add(WebSession(id_hash=sha256(raw), user_id=user_id, csrf=csrf,
                          expires_at=utcnow().replace(year=utcnow().year + 1)))
    return {"livecast_session": raw}, csrf


def _worker(server: Server) -> DiscoveryWorker:
    return next(s for s in server.runner.services if isinstance(s, DiscoveryWorker))


async def _helix_viewers(client: httpx.AsyncClient, caster: dict[str, Any]) -> int:
    headers = {"Authorization": f"Bearer {caster['token']}", "Client-Id": caster["client_id"]}
    r = await client.get("/helix/streams", params={"user_login": caster["login"]}, headers=headers)
    assert r.status_code == 200, r.text
    return int(r.json()["data"][0]["viewer_count"])


async def test_heartbeats_drive_helix_viewer_count(server: Server) -> None:
    caster = await server.create_user("caster")
    fan = await server.create_user("fan")
    async with server.platform.db.session() as db:
        row = Stream(user_id=caster["user_id"], status="live")
        db.add(row)
        await db.flush()
        stream_id = row.id
    cookies, _ = await _signed_in(server, fan["user_id"])
    async with httpx.AsyncClient(base_url=server.http_url) as anon, \
            httpx.AsyncClient(base_url=server.http_url) as anon2, \
            httpx.AsyncClient(base_url=server.http_url, cookies=cookies) as phone, \
            httpx.AsyncClient(base_url=server.http_url, cookies=cookies) as laptop:
        tokens = []
        for client in (anon, anon, anon2, phone, laptop):
            r = await client.post("/api/playback/caster/token")
            assert r.status_code == 200, r.text
            tokens.append((client, r.json()["token"]))
        for client, token in tokens * 3:  # replays and extra tabs add nothing
            r = await client.post("/api/heartbeat", json={"token": token})
            assert r.status_code == 200
        await _worker(server).tick(claim=False)
        assert await _helix_viewers(anon, caster) == 3  # two browsers and one signed-in user on two devices

        # The same tick records creator analytics: viewers and the chat messages it saw.
        await publish_event(server.platform.bus, "channel.chat.message", {
            "broadcaster_user_id": caster["user_id"], "broadcaster_user_login": "caster", "message_id": "m1"})

        async def chat_recorded() -> Any:
            await _worker(server).tick(claim=False)
            async with server.platform.db.session() as db:
                stats = await db.get(StreamStats, stream_id)
            return stats if stats is not None and stats.chat_messages == 1 else None

        stats = await wait_for(chat_recorded, timeout=10)
        assert stats.peak_viewers == 3
        async with server.platform.db.session() as db:
            summary = await analytics.stream_summary(db, stream_id)
        assert summary is not None and summary.peak_viewers == 3 and summary.chat_messages == 1

        assert (await anon.post("/api/playback/nobody_here/token")).status_code == 404
        forged = tokens[0][1][:-2] + ("AA" if not tokens[0][1].endswith("AA") else "BB")
        bad = await anon.post("/api/heartbeat", json={"token": forged})
        assert bad.status_code == 401 and bad.json()["status"] == 401
        assert (await anon.post("/api/heartbeat", content=b"{nope")).status_code == 400
        assert (await anon.post("/api/heartbeat", json=["token"])).status_code == 400
        limited = [(await anon2.post("/api/playback/caster/token")).status_code for _ in range(25)]
        assert 429 in limited  # one address cannot mint viewers without limit


async def test_go_live_notifications_and_recommendations_endpoints(server: Server) -> None:
    caster = await server.create_user("caster")
    fan = await server.create_user("fan")
    quiet = await server.create_user("quiet")
    cookies, csrf = await _signed_in(server, fan["user_id"])
    quiet_cookies, quiet_csrf = await _signed_in(server, quiet["user_id"])
    from livecast.discovery import follows

    async with server.platform.db.session() as db:
        await follows.follow(db, fan["user_id"], caster["user_id"])
        await follows.follow(db, quiet["user_id"], caster["user_id"])
        live = Stream(user_id=caster["user_id"], status="live", viewer_count=7, language="en")
        db.add(live)
        await db.flush()
        stream_id = live.id
    async with httpx.AsyncClient(base_url=server.http_url, cookies=cookies) as web, \
            httpx.AsyncClient(base_url=server.http_url, cookies=quiet_cookies) as quiet_web, \
            httpx.AsyncClient(base_url=server.http_url) as anon:
        assert (await anon.get("/api/notifications")).status_code == 401
        r = await quiet_web.put("/api/notifications/preferences/caster", json={"enabled": False})
        assert r.status_code == 403  # no CSRF header
        r = await quiet_web.put("/api/notifications/preferences/caster", json={"enabled": False},
                                headers={"X-CSRF-Token": quiet_csrf})
        assert r.status_code == 200 and r.json()["enabled"] is False

        await publish_event(server.platform.bus, "stream.online", {
            "id": stream_id, "broadcaster_user_id": caster["user_id"], "broadcaster_user_login": "caster",
            "broadcaster_user_name": "caster", "type": "live", "started_at": "2026-01-01T00:00:00Z",
        })

        async def delivered() -> Any:
            body = (await web.get("/api/notifications")).json()
            return body if body["data"] else None

        body = await wait_for(delivered, timeout=10)
        assert body["unread"] == 1
        assert body["data"][0]["channel_login"] == "caster" and body["data"][0]["stream_id"] == stream_id
        assert (await quiet_web.get("/api/notifications")).json()["data"] == []
        r = await web.post("/api/notifications/read", json={}, headers={"X-CSRF-Token": csrf})
        assert r.json() == {"marked": 1}
        assert (await web.get("/api/notifications")).json()["unread"] == 0
        assert (await web.get("/api/notifications", params={"after": "garbage"})).status_code == 400

        live_now = (await web.get("/api/following/live")).json()["data"]
        assert [s["user_login"] for s in live_now] == ["caster"]
        popular = (await anon.get("/api/recommendations", headers={"Accept-Language": "en-US,en;q=0.9"})).json()
        assert [r["broadcaster_login"] for r in popular["data"]] == ["caster"]
        assert popular["data"][0]["reason"] == "popular in your language (en)"
        mine = (await web.get("/api/recommendations")).json()["data"]
        assert "caster" not in [r["broadcaster_login"] for r in mine]  # already followed

        # A second stream.online for the same stream (another worker, a replay) notifies nobody twice.
        await publish_event(server.platform.bus, "stream.online", {"id": stream_id,
                                                                   "broadcaster_user_id": caster["user_id"]})
        await asyncio.sleep(0.5)
        assert len((await web.get("/api/notifications")).json()["data"]) == 1
    async with server.platform.db.session() as db:
        assert (await db.execute(select(Stream.id))).scalars().all() == [stream_id]


async def test_signed_in_endpoints_refuse_visitors_stale_tokens_and_foreign_cursors(server: Server) -> None:
    """Each read keeps its own 401 message; a change needs the session and its X-CSRF-Token (401, then
    403, before the body is looked at); a cursor we did not issue is a 400 on both paged reads."""
    fan = await server.create_user("pager")
    cookies, csrf = await _signed_in(server, fan["user_id"])
    async with httpx.AsyncClient(base_url=server.http_url, cookies=cookies) as web, \
            httpx.AsyncClient(base_url=server.http_url) as anon:
        for method, path, message in (("GET", "/api/notifications", "Sign in to see notifications"),
                                      ("GET", "/api/following/live", "Sign in first"),
                                      ("POST", "/api/notifications/read", "Sign in first"),
                                      ("PUT", "/api/notifications/preferences/pager", "Sign in first")):
            r = await anon.request(method, path, json={"enabled": True})
            assert (r.status_code, r.json()["message"]) == (401, message), path
        for method, path in (("POST", "/api/notifications/read"), ("PUT", "/api/notifications/preferences/pager")):
            r = await web.request(method, path, json={"enabled": True}, headers={"X-CSRF-Token": "stale"})
            assert (r.status_code, r.json()["message"]) == (403, "Missing or wrong X-CSRF-Token header"), path
        for path in ("/api/notifications", "/api/following/live"):
            r = await web.get(path, params={"after": "garbage"})
            assert (r.status_code, r.json()["message"]) == (400, "The parameter \"after\" was malformed"), path
        r = await web.post("/api/notifications/read", content=b"{nope", headers={"X-CSRF-Token": csrf})
        assert r.json() == {"marked": 0}  # a body that is not JSON marks everything read
        r = await web.put("/api/notifications/preferences/pager", content=b"[]", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 400
        r = await web.put("/api/notifications/preferences/nobody_here", json={"enabled": True},
                          headers={"X-CSRF-Token": csrf})
        assert r.status_code == 404
        assert (await web.get("/api/following/live")).json() == {"data": [], "pagination": {}}


async def test_real_publisher_going_live_notifies_followers_and_counts_viewers(server: Server) -> None:
    """ffmpeg publishes over RTMP; the follower's feed shows it and a player's heartbeats count."""
    caster = await server.create_user("realcaster")
    fan = await server.create_user("realfan")
    from livecast.discovery import follows

    async with server.platform.db.session() as db:
        await follows.follow(db, fan["user_id"], caster["user_id"])
    cookies, _ = await _signed_in(server, fan["user_id"])
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30", "-f", "lavfi", "-i", "sine",
        "-t", "6", "-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-c:a", "aac",
        "-f", "flv", f"rtmp://127.0.0.1:{server.rtmp_port}/app/{caster['stream_key']}",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=server.http_url, cookies=cookies) as web:
            async def notified() -> Any:
                data = (await web.get("/api/notifications")).json()["data"]
                return data or None

            [item] = await wait_for(notified, timeout=20)
            assert item["channel_login"] == "realcaster" and item["type"] == "stream.online"
            async with server.platform.db.session() as db:
                live = (await db.execute(select(Stream).where(Stream.user_id == caster["user_id"]))).scalar_one()
            assert item["stream_id"] == live.id

            token = (await web.post("/api/playback/realcaster/token")).json()["token"]
            assert (await web.post("/api/heartbeat", json={"token": token, "stream": "realcaster"})).status_code == 200
            await _worker(server).tick(claim=False)
            assert await _helix_viewers(web, caster) == 1
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_two_nodes_on_redis_share_tokens_and_counts(tmp_path: Path) -> None:
    """Scale-out: a token minted on one node is honoured by another; one session counts once."""
    url = await create_pg_database()
    a = await start_server(tmp_path / "a", database_url=url, bus_url=REDIS_URL, roles="api,web,worker")
    b = await start_server(tmp_path / "b", database_url=url, bus_url=REDIS_URL, roles="api,web")
    try:
        caster = await a.create_user("scalecaster")
        async with a.platform.db.session() as db:
            db.add(Stream(user_id=caster["user_id"], status="live"))
        async with httpx.AsyncClient(base_url=a.http_url) as on_a, httpx.AsyncClient(base_url=b.http_url) as on_b:
            token = (await on_a.post("/api/playback/scalecaster/token")).json()["token"]
            other = (await on_b.post("/api/playback/scalecaster/token")).json()["token"]
            for client, tok in [(on_a, token), (on_b, token), (on_b, other), (on_a, other)]:
                r = await client.post("/api/heartbeat", json={"token": tok})
                assert r.status_code == 200, r.text
            assert not any(isinstance(s, DiscoveryWorker) for s in b.runner.services)  # no worker role on b
            await _worker(a).tick(claim=False)
            assert await _helix_viewers(on_b, caster) == 2
    finally:
        await b.runner.stop()
        await a.runner.stop()
        await drop_pg_database(url)
