"""Fault injection, continued: what a client that stops reading can hold, what survives a
database outage and a SIGTERM on the EventSub path and in the archive, and a full disk.

Real servers, real sockets, real backends (PostgreSQL reached through ``TcpProxy`` from
``tests/test_faults.py``); no assertion depends on how long something took.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from sqlalchemy import select

from livecast import metrics
from livecast.api.eventsub import websocket as eventsub_ws
from livecast.api.eventsub.models import EventSubMessage
from livecast.bus import publish_event
from livecast.vod import archive
from tests.archive_support import (
    QUEUE,
    SECONDS,
    finish_after_the_fault,
    only_video,
    source_rows,
    start_archiving,
)
from tests.conftest import start_server, wait_for
from tests.helix_support import Receiver, app_with_tokens, headers
from tests.test_eventsub import _status, online, subscribe_webhook, webhook_server
from tests.test_faults import TcpProxy, _playlist_segments, _run, pg_proxy  # noqa: F401  (pytest fixture)
from tests.test_ingest_e2e import ffmpeg_publish
from tests.vod_support import make_flv


@pytest.fixture(scope="module")
def cbr_flv(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    # 3 Mbit/s: segments big enough to overflow the smallest (1 MiB) archive queue
    return make_flv(tmp_path_factory.mktemp("flv") / "cbr.flv", SECONDS, bitrate="3M")


def _errors(component: str) -> float:
    value = metrics.REGISTRY.get_sample_value("livecast_errors_total", {"component": component})
    return value or 0.0


async def _read_to_end(sock: socket.socket) -> bytes:
    """Read until the server has closed (EOF) or reset the connection."""
    loop = asyncio.get_running_loop()
    got = bytearray()
    with contextlib.suppress(ConnectionResetError):
        while chunk := await loop.sock_recv(sock, 1 << 16):
            got += chunk
    return bytes(got)


# A stalled HTTP reader ------------------------------------------------------------------------


async def test_stalled_http_reader_is_cut_and_others_are_served(tmp_path: Path) -> None:
    """A viewer that pipelines requests for a large response and never reads is disconnected
    once our writes have made no progress for ``HTTP_WRITE_TIMEOUT``; other clients are served
    throughout."""
    srv = await start_server(tmp_path, http_write_timeout=1.0)
    before = _errors("http_write_timeout")
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", srv.platform.ports["http"]))
        sock.setblocking(False)
        # ~16 KiB each, 400 of them: megabytes of answers, far past what the kernel buffers.
        pending = b"GET /static/css/app.css HTTP/1.1\r\nHost: x\r\n\r\n" * 400
        with contextlib.suppress(BlockingIOError):
            while pending:
                pending = pending[sock.send(pending):]
        async with httpx.AsyncClient(base_url=srv.http_url, timeout=30) as http:
            while _errors("http_write_timeout") == before:  # served while the stalled one waits
                r = await http.get("/static/css/app.css")
                assert r.status_code == 200 and len(r.content) > 10_000
                await asyncio.sleep(0.1)
            # The stalled connection is gone: reading now finds the end, not an endless stream.
            data = await asyncio.wait_for(_read_to_end(sock), 30)
            assert data.startswith(b"HTTP/1.1 200")
            assert data.count(b"HTTP/1.1 200") < 400  # it was cut, not served to the end
            assert (await http.get("/healthz")).status_code == 200
    finally:
        sock.close()
        await srv.runner.stop()


# EventSub WebSocket slow client ---------------------------------------------------------------


@pytest.mark.parametrize("reads_again", [True, False], ids=["reads-again", "never-reads"])
async def test_eventsub_websocket_slow_client_is_closed_4005(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            reads_again: bool) -> None:
    """A session that does not read its notifications is closed with 4005 (Twitch's transient
    network timeout, so clients reconnect) once its queue is full, instead of silently losing
    the notifications past the limit; its subscriptions end with that status. The close frame
    waits behind what the client has not read: a client that reads again gets it, one that
    never does is cut by the HTTP write timeout."""
    monkeypatch.setattr(eventsub_ws, "MAX_QUEUED", 20)  # the real limit is 10,000; same code path
    srv = await start_server(tmp_path, http_write_timeout=1.0 if not reads_again else 60.0)
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    try:
        alice = await srv.create_user("alice")
        client_id, _s, _app, tokens = await app_with_tokens(srv, [alice["user_id"]])
        h = headers(client_id, tokens[alice["user_id"]][0])
        # A raw client, so that "not reading" really leaves the bytes in the kernel.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", srv.platform.ports["http"]))
        sock.setblocking(False)
        key = base64.b64encode(os.urandom(16)).decode()
        await loop.sock_sendall(sock, (
            f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        reader = _WsFrames(sock)
        welcome = json.loads(await reader.next_text())
        session = welcome["payload"]["session"]["id"]
        async with httpx.AsyncClient(base_url=srv.http_url) as c:
            r = await c.post("/helix/eventsub/subscriptions", headers=h, json={
                "type": "channel.update", "version": "2", "condition": {"broadcaster_user_id": alice["user_id"]},
                "transport": {"method": "websocket", "session_id": session}})
            assert r.status_code == 202, r.text
            before = _errors("eventsub_ws_slow_client")
            big = json.dumps({"metadata": {"message_type": "notification"}, "pad": "x" * 200_000}).encode()
            while _errors("eventsub_ws_slow_client") == before:  # the client reads nothing meanwhile
                await srv.platform.bus.publish(f"eventsub.session.{session}", big)
                await asyncio.sleep(0.01)
            if reads_again:  # what was already sent, then the close frame with 4005
                code = await asyncio.wait_for(reader.close_code(), 30)
                assert code == 4005
            else:  # the connection is aborted; the session is over all the same
                manager = srv.platform.state["eventsub.ws"]
                await wait_for(lambda: session not in manager.connections, timeout=30)
            await wait_for(lambda: _ws_sub_status(c, h, "websocket_network_timeout"), timeout=20)
    finally:
        sock.close()
        await srv.runner.stop()


class _WsFrames:
    """Just enough of RFC 6455 to read a server's (unmasked) frames from a raw socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.upgraded = False

    async def _need(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        while len(self.buf) < n:
            chunk = await loop.sock_recv(self.sock, 1 << 16)
            if not chunk:
                raise EOFError("connection closed without a close frame")
            self.buf += chunk

    async def frame(self) -> tuple[int, bytes]:
        if not self.upgraded:
            while b"\r\n\r\n" not in self.buf:
                await self._need(len(self.buf) + 1)
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 101"), head
            self.upgraded = True
        await self._need(2)
        opcode, size, at = self.buf[0] & 0x0F, self.buf[1] & 0x7F, 2
        if size == 126:
            await self._need(4)
            size, at = int.from_bytes(self.buf[2:4], "big"), 4
        elif size == 127:
            await self._need(10)
            size, at = int.from_bytes(self.buf[2:10], "big"), 10
        await self._need(at + size)
        payload, self.buf = self.buf[at:at + size], self.buf[at + size:]
        return opcode, payload

    async def next_text(self) -> bytes:
        while True:
            opcode, payload = await self.frame()
            if opcode == 1:
                return payload

    async def close_code(self) -> int:
        while True:
            opcode, payload = await self.frame()
            if opcode == 8:
                return int.from_bytes(payload[:2], "big")


async def _ws_sub_status(c: httpx.AsyncClient, h: dict[str, str], want: str) -> bool:
    r = await c.get("/helix/eventsub/subscriptions", headers=h)
    return any(s["status"] == want for s in r.json()["data"])


# EventSub under a database outage -------------------------------------------------------------


async def test_eventsub_event_accepted_during_database_outage_is_delivered(
        tmp_path: Path, pg_proxy: tuple[TcpProxy, str]) -> None:  # noqa: F811
    """An event published while PostgreSQL is cut waits for it and is delivered once it is
    back, exactly once, with the event before it and the one after it, in order."""
    proxy, url = pg_proxy
    receiver = Receiver()
    await receiver.start()
    srv = await webhook_server(tmp_path, database_url=url)
    try:
        alice = await srv.create_user("alice")
        client_id, _s, app_token, _ = await app_with_tokens(srv, [alice["user_id"]])
        async with httpx.AsyncClient(base_url=srv.http_url) as c:
            r = await subscribe_webhook(c, headers(client_id, app_token), alice["user_id"], receiver.url)
            assert r.status_code == 202, r.text
            sub_id = r.json()["data"][0]["id"]
        await wait_for(lambda: _status(srv, sub_id), timeout=20)
        await publish_event(srv.platform.bus, "stream.online", online(alice, 0))
        await wait_for(lambda: len(receiver.notifications()) == 1, timeout=20)
        # Its row must say so before the cut, or it is (rightly) sent again with the same id.
        await wait_for(lambda: _delivered(srv, 1), timeout=20)

        await proxy.cut()
        waiting = _errors("eventsub_dispatch")
        await publish_event(srv.platform.bus, "stream.online", online(alice, 1))  # accepted now
        await wait_for(lambda: _errors("eventsub_dispatch") > waiting, timeout=20)  # it met the outage
        await publish_event(srv.platform.bus, "stream.online", online(alice, 2))
        await proxy.restore()

        await wait_for(lambda: len(receiver.notifications()) >= 3, timeout=30)
        await wait_for(lambda: _delivered(srv, 3), timeout=20)
        notes = receiver.notifications()
        assert [n["event"]["id"] for _, n in notes] == ["stream-0", "stream-1", "stream-2"]
        assert len({h_["Twitch-Eventsub-Message-Id"] for h_, _ in notes}) == 3
    finally:
        await srv.runner.stop()
        await receiver.stop()


async def _delivered(srv: Any, count: int) -> bool:
    async with srv.platform.db.session() as db:
        rows = (await db.execute(select(EventSubMessage.status))).scalars().all()
    return len(rows) == count and set(rows) == {"delivered"}


# A full disk in the data directory ------------------------------------------------------------


@contextlib.contextmanager
def small_disk(where: Path, size: str = "48m") -> Iterator[Path]:
    """A real, small file system (tmpfs) for the data directory, so ``ENOSPC`` comes from the
    kernel as on a full disk. Needs root; a sandbox that cannot mount fails the test."""
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk`` with one file (removing it frees the disk again)."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:  # unbuffered: nothing left over to fail at close
        for chunk in (1 << 20, 1 << 12):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * chunk)
    assert shutil.disk_usage(disk).free < 64 * 1024
    return filler


async def test_disk_full_while_live_and_archiving(tmp_path: Path, cbr_flv: bytes) -> None:
    """The data directory (SQLite and file storage) fills up while a channel is live: viewers
    keep watching from the origin, the process stays up, API writes are answered 503, the
    segments that could not wait are recorded as gaps, and archiving resumes by itself once
    space is freed; the VOD is completed with every segment accounted for."""
    with small_disk(tmp_path / "disk") as disk:
        server = await start_server(disk, archive_queue_bytes=QUEUE)
        try:
            channel = await start_archiving(server, "fullness", cbr_flv)
            user, archiver = channel.user, channel.archiver
            failures = _errors("vod_archive")
            filler = fill(disk)
            channel.feed(4, 10)
            live = channel.live()
            await wait_for(lambda: live.segmenters["source"].next_msn >= 5, 20)
            rec = next(iter(archiver.recordings))
            await wait_for(lambda: rec.gaps >= 1, 20)  # the queue overflowed while nothing could be written
            assert _errors("vod_archive") > failures and archiver.pending_bytes <= QUEUE
            headers = {"Client-Id": user["client_id"], "Authorization": f"Bearer {user['token']}"}
            async with httpx.AsyncClient(base_url=server.http_url, timeout=10, headers=headers) as http:
                r = await http.get("/hls/fullness/source/playlist.m3u8")  # the origin serves from memory
                assert r.status_code == 200 and "seg3.m4s" in r.text
                assert (await http.get("/hls/fullness/source/seg3.m4s")).status_code == 200
                r = await http.patch(f"/helix/channels?broadcaster_id={user['user_id']}",
                                     json={"title": "written on a full disk"})
                # 503 + Retry-After ("database or disk is full"); 204 if SQLite found room in its WAL
                assert r.status_code in (204, 503), r.text
                filler.unlink()  # the operator frees space; no restart

                async def written() -> bool:
                    r = await http.patch(f"/helix/channels?broadcaster_id={user['user_id']}",
                                         json={"title": "written after the disk was freed"})
                    return r.status_code == 204

                await wait_for(written, 20, 0.2)
            video = await finish_after_the_fault(channel, rec)
            rows = await source_rows(server)
            assert [r.seq for r in rows] == list(range(live.segmenters["source"].next_msn))
            gaps = [r for r in rows if r.status == "gap"]
            assert gaps and video.gap_seconds == pytest.approx(sum(r.duration for r in gaps))
            assert rows[-1].status == "stored"  # archiving resumed after the space came back
            names = set(await server.platform.storage.list(f"vods/{video.id}/source/"))
            assert {f"vods/{video.id}/source/{r.seq}.m4s" for r in rows if r.status == "stored"} <= names
            async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
                body = (await http.get(f"/vods/{video.id}/source/playlist.m3u8")).text
                assert body.count("#EXT-X-GAP") == len(gaps) and body.rstrip().endswith("#EXT-X-ENDLIST")
                assert (await http.get("/healthz")).status_code == 200
        finally:
            await server.runner.stop()


# SIGTERM while archiving and while a webhook is being delivered -------------------------------


class HoldingReceiver:
    """A real webhook receiver that answers challenges and acknowledges notifications, except
    that it holds the first notification's request open (no answer at all), so the sender is
    stopped in the middle of delivering it."""

    def __init__(self) -> None:
        self.arrived: list[tuple[str, str, dict[str, Any]]] = []  # (message id, retry, body)
        self.acknowledged: list[str] = []
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/callback", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        kind = request.headers["Twitch-Eventsub-Message-Type"]
        if kind == "webhook_callback_verification":
            return web.Response(text=body["challenge"])
        message_id = request.headers["Twitch-Eventsub-Message-Id"]
        self.arrived.append((message_id, request.headers["Twitch-Eventsub-Message-Retry"], body))
        if len(self.arrived) == 1:
            await self.release.wait()  # the sender goes away before this is answered
        self.acknowledged.append(message_id)
        return web.Response(status=204)

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()


async def _serve(env: dict[str, str], log: Path) -> tuple[asyncio.subprocess.Process, dict[str, int]]:
    ports_file = Path(env["LIVECAST_DATA_DIR"]) / "ports.json"
    ports_file.unlink(missing_ok=True)
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "livecast", "serve", env=env,
                                                    stdout=out, stderr=asyncio.subprocess.STDOUT)
    await wait_for(lambda: ports_file.exists() and ports_file.read_text().strip().endswith("}"), timeout=60)
    return proc, json.loads(ports_file.read_text())


async def test_sigterm_while_archiving_and_delivering_a_webhook(tmp_path: Path) -> None:
    """A real ``livecast serve`` is stopped with SIGTERM while a channel is live (archiving) and
    while a webhook notification is in flight: the VOD holds every segment the live playlist
    had listed, and is complete; after a restart the notification accepted before SIGTERM is
    delivered once, with the same message id."""
    data = tmp_path / "var"
    env = {**os.environ, "LIVECAST_DATA_DIR": str(data), "LIVECAST_HTTP_PORT": "0", "LIVECAST_RTMP_PORT": "0",
           "LIVECAST_IRC_PORT": "0", "LIVECAST_EVENTSUB_ALLOW_PRIVATE_CALLBACKS": "true"}
    alice = await _run("admin", "create-user", "alice", "--json", env=env)
    app = await _run("admin", "issue-token", "--app-token", "--json", env=env)
    receiver = HoldingReceiver()
    await receiver.start()
    log = tmp_path / "serve.log"
    serve, ports = await _serve(env, log)
    publisher: asyncio.subprocess.Process | None = None
    try:
        base = f"http://127.0.0.1:{ports['http']}"
        as_app = {"Client-Id": app["client_id"], "Authorization": f"Bearer {app['access_token']}"}
        as_alice = {"Client-Id": alice["client_id"], "Authorization": f"Bearer {alice['token']}"}
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            r = await http.post("/helix/eventsub/subscriptions", headers=as_app, json={
                "type": "channel.update", "version": "2", "condition": {"broadcaster_user_id": alice["user_id"]},
                "transport": {"method": "webhook", "callback": f"http://127.0.0.1:{receiver.port}/callback",
                              "secret": "0123456789abcdef"}})
            assert r.status_code == 202, r.text

            async def enabled() -> bool:
                r = await http.get("/helix/eventsub/subscriptions", headers=as_app, params={"status": "enabled"})
                return bool(r.json()["data"])

            await wait_for(enabled, timeout=30, interval=0.2)
            publisher = await ffmpeg_publish(ports["rtmp"], alice["stream_key"], 60, size="320x180")

            async def listed() -> list[str] | None:
                segments = await _playlist_segments(http, "alice")
                return segments if segments and len(segments) >= 3 else None

            await wait_for(listed, timeout=40, interval=0.3)
            r = await http.patch(f"/helix/channels?broadcaster_id={alice['user_id']}", headers=as_alice,
                                 json={"title": "accepted before SIGTERM"})
            assert r.status_code == 204, r.text
            await wait_for(lambda: receiver.arrived, timeout=30)  # in flight, held by the receiver
            seen = await _playlist_segments(http, "alice")
            assert seen is not None
        serve.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(serve.wait(), 60) == 0
        assert receiver.acknowledged == []  # the sender went away before an answer

        with contextlib.closing(sqlite3.connect(data / "livecast.db")) as db:
            videos = db.execute("SELECT id, status FROM videos").fetchall()
            assert len(videos) == 1 and videos[0][1] == "ready", videos
            video_id = videos[0][0]
            rows = db.execute("SELECT seq, status FROM vod_segments WHERE video_id = ? AND rendition = 'source' "
                              "ORDER BY seq", (video_id,)).fetchall()
            pending = db.execute("SELECT message_id, status, attempts FROM eventsub_messages").fetchall()
        archived = {seq for seq, status in rows if status == "stored"}
        assert [seq for seq, _ in rows] == list(range(len(rows))) and len(archived) == len(rows)
        listed_seqs = {int(name[3:-4]) for name in seen}
        assert listed_seqs <= archived, (sorted(listed_seqs), sorted(archived))  # the last ones too
        for seq in archived:
            assert (data / "storage" / "vods" / video_id / "source" / f"{seq}.m4s").stat().st_size > 0
        first_id = receiver.arrived[0][0]
        assert pending == [(first_id, "pending", 0)]  # durably queued, not marked as tried

        serve, ports = await _serve(env, log)  # the restart
        await wait_for(lambda: receiver.acknowledged, timeout=30)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['http']}", timeout=30) as http:
            assert (await http.get("/healthz")).status_code == 200
        with contextlib.closing(sqlite3.connect(data / "livecast.db")) as db:
            done = db.execute("SELECT message_id, status FROM eventsub_messages").fetchall()
        assert done == [(first_id, "delivered")]
        assert receiver.acknowledged == [first_id]  # exactly once, the same id
        assert [m for m, _r, _b in receiver.arrived] == [first_id, first_id]
        assert receiver.arrived[1][2]["event"]["title"] == "accepted before SIGTERM"
        serve.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(serve.wait(), 60) == 0
    finally:
        for proc in (serve, publisher):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
        await receiver.stop()
    text = log.read_text()
    assert "Traceback" not in text and "did not stop in time" not in text, text[-3000:]


async def test_payment_and_its_notification_across_a_database_outage(
        tmp_path: Path, pg_proxy: tuple[TcpProxy, str]) -> None:  # noqa: F811
    """A Stripe payment that arrives while PostgreSQL is cut is refused with 503 (so Stripe
    retries it), not half-booked; its retry after the outage is booked once, the ledger
    balances, and the ``channel.subscribe`` notification reaches the webhook exactly once."""
    from tests.test_subscriptions_stripe import SECRET, Client, checkout_event, meta, snapshot, users

    proxy, url = pg_proxy
    receiver = Receiver()
    await receiver.start()
    srv = await webhook_server(tmp_path, database_url=url, stripe_webhook_secret=SECRET)
    try:
        ids = await users(srv.platform, "chan", "early", "late")
        client_id, _s, app_token, _ = await app_with_tokens(srv, [ids["chan"]])
        async with httpx.AsyncClient(base_url=srv.http_url, timeout=30) as http:
            r = await subscribe_webhook(http, headers(client_id, app_token), ids["chan"], receiver.url,
                                        type_="channel.subscribe")
            assert r.status_code == 202, r.text
            await wait_for(lambda: _status(srv, r.json()["data"][0]["id"]), timeout=20)
            stripe = Client(http)
            first = await stripe.deliver(checkout_event("evt_early", "pi_early", meta("subscribe", ids["chan"],
                                                                                       ids["early"]), 499))
            assert first.status_code == 200 and first.json()["status"] == "processed"
            await wait_for(lambda: _delivered(srv, 1), timeout=20)

            await proxy.cut()
            late = checkout_event("evt_late", "pi_late", meta("subscribe", ids["chan"], ids["late"]), 499)
            refused = await stripe.deliver(late)
            assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0
            await proxy.restore()

            async def retried() -> bool:  # what Stripe does with a 5xx: the same event again
                r = await stripe.deliver(late)
                return r.status_code == 200 and r.json()["status"] == "processed"

            await wait_for(retried, timeout=30, interval=0.3)
            again = await stripe.deliver(late)
            assert again.status_code == 200 and again.json()["status"] == "duplicate"
        await wait_for(lambda: _delivered(srv, 2), timeout=30)
        state = await snapshot(srv.platform)
        assert sorted(s[:2] for s in state["subs"]) == sorted([(ids["early"], "active"), (ids["late"], "active")])
        assert state["charges"] == 2 and state["txns"] == 2 and state["unbalanced"] == []
        assert state["balances"][("cash:stripe", "USD")] == 998
        notes = receiver.notifications()
        assert sorted(n["event"]["user_id"] for _, n in notes) == sorted([ids["early"], ids["late"]])
        assert len({h_["Twitch-Eventsub-Message-Id"] for h_, _ in notes}) == 2
    finally:
        await srv.runner.stop()
        await receiver.stop()


async def test_shutdown_with_storage_full_records_the_rest_as_gaps(
        tmp_path: Path, cbr_flv: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the archive's spool (``archive_spool_bytes=0``, or a spool that cannot be
    written), the process is stopped while storage (its own small disk, full) still refuses
    the last segments: after the drain time they are recorded as gaps and the VOD is
    completed, not left ``recording`` with its end silently missing. (With the spool they
    survive the stop: ``tests/test_vod_storage.py``.)"""
    monkeypatch.setattr(archive, "STOP_DRAIN_S", 1.0)  # the same path as the default 8 s
    with small_disk(tmp_path / "storage-disk", "16m") as disk:
        server = await start_server(tmp_path, storage_url=f"file://{disk}", archive_queue_bytes=QUEUE,
                                    archive_spool_bytes=0)
        stopped = False
        try:
            channel = await start_archiving(server, "stopper", cbr_flv)
            fill(disk)
            channel.feed(4, 8)
            live = channel.live()
            await wait_for(lambda: live.segmenters["source"].next_msn >= 3, 20)
            await server.runner.stop()  # what SIGTERM runs
            stopped = True
            produced = live.segmenters["source"].next_msn
        finally:
            if not stopped:
                await server.runner.stop()
    # The database is on another disk: read it back with a fresh process's view.
    server = await start_server(tmp_path)
    try:
        video = await only_video(server)
        segs = await source_rows(server)
        assert video.status == "ready"
        assert [s.seq for s in segs] == list(range(len(segs))) and len(segs) >= produced - 1
        gaps = [s for s in segs if s.status == "gap"]
        assert gaps and segs[0].status == "stored"
        assert video.gap_seconds == pytest.approx(sum(s.duration for s in gaps))
    finally:
        await server.runner.stop()
