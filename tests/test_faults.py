"""Fault injection with real processes and real backends: what users see when something
breaks, that the platform recovers without a restart, and that nothing it accepted is lost.

The backends are never stopped (other tests share the machine's PostgreSQL and Redis): the
platform under test reaches them through :class:`TcpProxy`, which the test cuts (listener
closed, so new connections are refused, and every open connection reset) and restores on the
same port, which is what a database restart or a network partition looks like from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.conftest import REDIS_URL, Server, create_pg_database, drop_pg_database, start_server, wait_for
from tests.test_chat_tcp import Client
from tests.test_ingest_e2e import (
    RawPublisher,
    _status,
    bus_events,
    ffmpeg_publish,
    finish,
    streams_of,
    topics,
)


class TcpProxy:
    """A TCP forwarder to a backend that a test can cut and restore on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.StreamWriter] = set()
        self.accepted = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        assert self.server is not None
        self.server.close()
        for writer in list(self.pipes):
            writer.transport.abort()
        self.pipes.clear()
        await self.server.wait_closed()
        self.server = None

    async def restore(self) -> None:
        await self.start()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.pipes |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort() if dst in self.pipes else dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self.pipes -= {writer, up_writer}

    def url_for(self, url: str) -> str:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))

    async def close(self) -> None:
        if self.server is not None:
            await self.cut()


def _proxy_for(url: str) -> TcpProxy:
    parts = urlsplit(url)
    return TcpProxy(parts.hostname or "127.0.0.1", parts.port or {"redis": 6379}.get(parts.scheme, 5432))


def helix(token: str, client_id: str) -> dict[str, str]:
    return {"Client-Id": client_id, "Authorization": f"Bearer {token}"}


def assert_outage(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    body = response.json()
    assert body["error"] == "Service Unavailable" and body["status"] == 503


@pytest.fixture
async def pg_proxy() -> AsyncIterator[tuple[TcpProxy, str]]:
    url = await create_pg_database()
    proxy = _proxy_for(url)
    await proxy.start()
    try:
        yield proxy, proxy.url_for(url)
    finally:
        await proxy.close()
        await drop_pg_database(url)


# Backends -------------------------------------------------------------------------------------


async def test_postgres_outage_under_api_load_is_503_then_recovers(
        tmp_path: Path, pg_proxy: tuple[TcpProxy, str]) -> None:
    proxy, url = pg_proxy
    srv = await start_server(tmp_path, database_url=url, roles="api,web,chat,ingest")
    try:
        alice = await srv.create_user("alice")
        auth = helix(alice["token"], alice["client_id"])
        async with httpx.AsyncClient(base_url=srv.http_url, timeout=30) as http:
            ok = await http.patch(f"/helix/channels?broadcaster_id={alice['user_id']}", headers=auth,
                                  json={"title": "accepted before the outage"})
            assert ok.status_code == 204, ok.text
            await proxy.cut()
            # Reads, writes and the health check, 30 at once: each a prompt 503 + Retry-After.
            calls = [http.get("/helix/users", headers=auth) for _ in range(20)]
            calls += [http.patch(f"/helix/channels?broadcaster_id={alice['user_id']}", headers=auth,
                                 json={"title": f"during the outage {i}"}) for i in range(9)]
            results = await asyncio.gather(*calls)
            for r in results:
                assert_outage(r)
            health = await http.get("/healthz")
            assert health.status_code == 503 and health.json()["checks"]["database"].startswith("error")
            assert "Retry-After" in health.headers
            # A chat login cannot be checked: the client is told to come back, not sent a traceback.
            chat = await Client.connect(srv.irc_port)
            chat.send(f"PASS oauth:{alice['token']}", "NICK alice")
            notice = await chat.expect("NOTICE", timeout=20)
            assert notice.tags.get("msg-id") == "msg_service_unavailable"
            await wait_for(lambda: chat.eof, timeout=20)
            await chat.close()
            # An encoder's stream key cannot be checked: it is told to retry, as OBS then does.
            pub = await RawPublisher.connect(srv.rtmp_port)
            status = await pub.publish(alice["stream_key"])
            assert (status["code"], status["description"]) == ("NetStream.Publish.Rejected",
                                                               "service unavailable, try again later")
            pub.writer.close()

            await proxy.restore()  # the same process, no restart

            async def recovered() -> bool:
                return (await http.get("/helix/users", headers=auth)).status_code == 200

            await wait_for(recovered, timeout=20, interval=0.2)
            assert (await http.get("/healthz")).status_code == 200
            chat = await Client.connect(srv.irc_port)
            await chat.login("alice", alice["token"])
            await chat.close()
            channel = (await http.get(f"/helix/channels?broadcaster_id={alice['user_id']}", headers=auth)).json()
            # What was accepted is there; what was refused with 503 was not half-applied.
            assert channel["data"][0]["title"] == "accepted before the outage"
    finally:
        await srv.runner.stop()


async def test_redis_outage_under_chat_is_survived(tmp_path: Path) -> None:
    proxy = _proxy_for(REDIS_URL)
    await proxy.start()
    srv = await start_server(tmp_path, bus_url=proxy.url_for(REDIS_URL))
    try:
        alice = await srv.create_user("alice")
        speaker = await Client.in_room(srv.irc_port, "alice", alice["token"], "alice")
        reader = await Client.in_room(srv.irc_port, "justinfan1", None, "alice")
        speaker.send("PRIVMSG #alice :before the outage")
        await reader.expect("PRIVMSG", lambda m: m.params[-1] == "before the outage")

        await proxy.cut()
        async with httpx.AsyncClient(base_url=srv.http_url, timeout=30) as http:
            health = await http.get("/healthz")
            assert health.status_code == 503 and health.json()["checks"]["bus"].startswith("error")
            speaker.send("PRIVMSG #alice :during the outage")
            # The sender is told its message did not go out, and keeps its connection.
            notice = await speaker.expect("NOTICE", lambda m: m.params[0] == "#alice", timeout=20)
            assert notice.tags.get("msg-id") == "msg_service_unavailable", notice
            speaker.send("PING :still here")
            await speaker.expect("PONG", lambda m: m.params[-1] == "still here", timeout=20)

            await proxy.restore()
            await wait_for(lambda: _healthy(http), timeout=20, interval=0.2)

        async def delivered() -> bool:  # the room's subscription came back by itself
            speaker.send("PRIVMSG #alice :after the outage")
            await asyncio.sleep(0.3)
            return any(m.command == "PRIVMSG" and m.params[-1] == "after the outage" for m in reader.lines)

        await wait_for(delivered, timeout=30, interval=0.5)
        texts = [m.params[-1] for m in reader.lines if m.command == "PRIVMSG"]
        assert texts[0] == "before the outage" and "during the outage" not in texts
        assert not speaker.eof and not reader.eof
        await speaker.close()
        await reader.close()
    finally:
        await srv.runner.stop()
        await proxy.close()


async def _healthy(http: httpx.AsyncClient) -> bool:
    return (await http.get("/healthz")).status_code == 200


async def test_redis_outage_under_a_live_stream(tmp_path: Path) -> None:
    """The publisher keeps publishing and viewers keep watching through a bus outage; a new
    publisher is told to retry; afterwards it is the same stream."""
    proxy = _proxy_for(REDIS_URL)
    await proxy.start()
    srv = await start_server(tmp_path, bus_url=proxy.url_for(REDIS_URL))
    proc: asyncio.subprocess.Process | None = None
    try:
        caster, other = await srv.create_user("steady"), await srv.create_user("latecomer")
        proc = await ffmpeg_publish(srv.rtmp_port, caster["stream_key"], 60, size="320x180")
        async with httpx.AsyncClient(base_url=srv.http_url, timeout=30) as http:
            await wait_for(lambda: _playlist_segments(http, "steady"), timeout=20, interval=0.3)
            first = (await streams_of(srv, caster["user_id"]))[0].id
            await proxy.cut()
            before = await _playlist_segments(http, "steady")
            assert before is not None
            newest = before[-1]

            async def advanced() -> bool:  # new segments while Redis is away
                now = await _playlist_segments(http, "steady")
                return bool(now) and now is not None and now[-1] != newest

            await wait_for(advanced, timeout=20, interval=0.5)
            pub = await RawPublisher.connect(srv.rtmp_port)
            status = await pub.publish(other["stream_key"])
            assert status["code"] == "NetStream.Publish.Rejected"
            pub.writer.close()
            assert proc.returncode is None  # the publisher was not dropped
            await proxy.restore()
            await wait_for(lambda: _healthy(http), timeout=20, interval=0.2)
        rows = await streams_of(srv, caster["user_id"])
        assert [(r.id, r.status) for r in rows] == [(first, "live")]
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        await srv.runner.stop()
        await proxy.close()


async def test_stream_goes_offline_after_a_database_outage_in_its_window(
        tmp_path: Path, pg_proxy: tuple[TcpProxy, str], caplog: pytest.LogCaptureFixture) -> None:
    """Going offline is retried until the database answers: no stream is left live for ever."""
    proxy, url = pg_proxy
    srv = await start_server(tmp_path, database_url=url, reconnect_window=1)
    try:
        user = await srv.create_user("gone")
        async with bus_events(srv) as seen:
            proc = await ffmpeg_publish(srv.rtmp_port, user["stream_key"], 30, size="320x180")
            await wait_for(lambda: _status(srv, user["user_id"], "live"), timeout=15)
            proc.kill()
            await proc.wait()
            await wait_for(lambda: _status(srv, user["user_id"], "reconnecting"), timeout=10)
            await proxy.cut()
            await wait_for(lambda: "stream offline not recorded yet; retrying" in caplog.text, timeout=20)
            await proxy.restore()
            await wait_for(lambda: "event.stream.offline" in topics(seen), timeout=30)
        rows = await streams_of(srv, user["user_id"])
        assert len(rows) == 1 and rows[0].status == "offline" and rows[0].ended_at is not None
    finally:
        await srv.runner.stop()


# The publisher ----------------------------------------------------------------------------------


async def test_publisher_killed_mid_stream_reconnecting_then_offline(server: Server) -> None:
    user = await server.create_user("crashy")
    async with bus_events(server) as seen, httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        proc = await ffmpeg_publish(server.rtmp_port, user["stream_key"], 30, size="320x180")
        await wait_for(lambda: _status(server, user["user_id"], "live"), timeout=15)
        await wait_for(lambda: _playlist_segments(http, "crashy"), timeout=20, interval=0.3)
        before = await _playlist_segments(http, "crashy")
        proc.kill()  # no FCUnpublish, no deleteStream: the socket just goes
        await proc.wait()
        await wait_for(lambda: _status(server, user["user_id"], "reconnecting"), timeout=10)
        assert "event.stream.offline" not in topics(seen)
        # Viewers keep what was published: the segments they could fetch are still served.
        during = await _playlist_segments(http, "crashy")
        assert during is not None and set(before or []) <= set(during)
        for uri in (before or [])[-1:]:
            assert (await http.get(f"/hls/crashy/source/{uri}")).status_code == 200
        await wait_for(lambda: _status(server, user["user_id"], "offline"), timeout=15)
        await wait_for(lambda: "event.stream.offline" in topics(seen))
        # The server took no harm: the same channel goes live again as a new stream.
        again = await ffmpeg_publish(server.rtmp_port, user["stream_key"], 2, size="320x180")
        await wait_for(lambda: _status(server, user["user_id"], "live"), timeout=15)
        code, err = await finish(again)
        assert code == 0, err
    assert len(await streams_of(server, user["user_id"])) == 2


async def _playlist_segments(http: httpx.AsyncClient, login: str) -> list[str] | None:
    r = await http.get(f"/hls/{login}/source/playlist.m3u8")
    if r.status_code != 200:
        return None
    segments = [line for line in r.text.splitlines() if line.startswith("seg")]
    return segments or None


async def test_publisher_tcp_dropped_and_resumed_within_the_window(server: Server) -> None:
    """The network, not the encoder, fails: same stream, and a discontinuity for players."""
    user = await server.create_user("wobbly")
    proxy = TcpProxy("127.0.0.1", server.rtmp_port)
    await proxy.start()
    try:
        async with bus_events(server) as seen, httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
            proc = await ffmpeg_publish(proxy.port, user["stream_key"], 30, size="320x180")
            await wait_for(lambda: _status(server, user["user_id"], "live"), timeout=15)
            await wait_for(lambda: _playlist_segments(http, "wobbly"), timeout=20, interval=0.3)
            first = (await streams_of(server, user["user_id"]))[0].id
            await proxy.cut()  # both directions reset, as a dropped uplink looks to each side
            await wait_for(lambda: _status(server, user["user_id"], "reconnecting"), timeout=10)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            await proxy.restore()
            again = await ffmpeg_publish(proxy.port, user["stream_key"], 30, size="320x180")
            await wait_for(lambda: _status(server, user["user_id"], "live"), timeout=15)

            async def discontinuity() -> bool:
                r = await http.get("/hls/wobbly/source/playlist.m3u8")
                return r.status_code == 200 and "#EXT-X-DISCONTINUITY" in r.text and "init2.mp4" in r.text

            await wait_for(discontinuity, timeout=30, interval=0.5)
            assert [r.id for r in await streams_of(server, user["user_id"])] == [first]
            assert topics(seen).count("event.stream.online") == 1 and "event.stream.offline" not in topics(seen)
            again.kill()
            await again.wait()
    finally:
        await proxy.close()


# SIGTERM ----------------------------------------------------------------------------------------


async def _run(*args: str, env: dict[str, str]) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "livecast", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return dict(json.loads(out))


async def test_sigterm_during_a_live_stream_and_chat(tmp_path: Path) -> None:
    """A real ``livecast serve`` process: chat clients get RECONNECT, the publisher is hung up
    on, the stream is ended rather than left live, and the process exits 0."""
    data = tmp_path / "var"
    env = {**os.environ, "LIVECAST_DATA_DIR": str(data), "LIVECAST_HTTP_PORT": "0", "LIVECAST_RTMP_PORT": "0",
           "LIVECAST_IRC_PORT": "0", "LIVECAST_RECONNECT_WINDOW": "30"}
    alice = await _run("admin", "create-user", "alice", "--json", env=env)
    log = (tmp_path / "serve.log").open("wb")
    serve = await asyncio.create_subprocess_exec(sys.executable, "-m", "livecast", "serve", env=env,
                                                 stdout=log, stderr=asyncio.subprocess.STDOUT)
    publisher: asyncio.subprocess.Process | None = None
    try:
        ports_file = data / "ports.json"
        await wait_for(lambda: ports_file.exists() and ports_file.read_text().strip().endswith("}"), timeout=60)
        ports = json.loads(ports_file.read_text())
        speaker = await Client.in_room(ports["irc"], "alice", alice["token"], "alice")
        reader = await Client.in_room(ports["irc"], "justinfan1", None, "alice")
        publisher = await ffmpeg_publish(ports["rtmp"], alice["stream_key"], 60, size="320x180")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['http']}", timeout=30) as http:
            await wait_for(lambda: _playlist_segments(http, "alice"), timeout=30, interval=0.3)
        speaker.send("PRIVMSG #alice :accepted before SIGTERM")
        await reader.expect("PRIVMSG", lambda m: m.params[-1] == "accepted before SIGTERM")

        serve.send_signal(signal.SIGTERM)
        await speaker.expect("RECONNECT", timeout=20)
        await reader.expect("RECONNECT", timeout=20)
        await wait_for(lambda: reader.eof and speaker.eof, timeout=20)
        assert await asyncio.wait_for(serve.wait(), 30) == 0
        assert await asyncio.wait_for(publisher.wait(), 30) is not None  # hung up on, not left hanging
    finally:
        for proc in (serve, publisher):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
        log.close()
    text = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in text and "did not stop in time" not in text, text[-3000:]
    assert "stopped" in text
    import sqlite3

    with contextlib.closing(sqlite3.connect(data / "livecast.db")) as db:
        rows = db.execute("SELECT status, ended_at FROM streams").fetchall()
    assert len(rows) == 1 and rows[0][0] == "offline" and rows[0][1] is not None


async def test_slow_hls_consumer_does_not_stall_other_viewers(server: Server) -> None:
    """A viewer that pipelines segment requests and never reads the answers holds only its own
    connection (uvicorn stops reading from it once its replies back up); the live edge moves on
    for everyone else."""
    import socket

    user = await server.create_user("slowhls")
    proc = await ffmpeg_publish(server.rtmp_port, user["stream_key"], 30, size="320x180")
    stalled: list[socket.socket] = []
    try:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
            segments = await wait_for(lambda: _playlist_segments(http, "slowhls"), timeout=20, interval=0.3)
            request = f"GET /hls/slowhls/source/{segments[0]} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            for _ in range(3):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", server.platform.ports["http"]))
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    sock.send(request * 200)  # as much as the kernel takes; never read
                stalled.append(sock)
            # Everyone else follows the live edge: blocking reloads for the next segments arrive.
            r = await http.get("/hls/slowhls/source/playlist.m3u8")
            last = max(int(line[3:-4]) for line in r.text.splitlines() if line.startswith("seg"))
            for msn in (last + 1, last + 2):
                r = await http.get("/hls/slowhls/source/playlist.m3u8", params={"_HLS_msn": msn})
                assert r.status_code == 200 and f"seg{msn}.m4s" in r.text
                seg = await http.get(f"/hls/slowhls/source/seg{msn}.m4s")
                assert seg.status_code == 200 and len(seg.content) > 0
    finally:
        for sock in stalled:
            sock.close()
        proc.kill()
        await proc.wait()
