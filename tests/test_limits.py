"""Abuse limits as a client meets them: connections per address on HTTP and chat (TCP and
WebSocket together), request body size, IRC line length over WebSocket, and the cap on LL-HLS
requests held waiting. Every refusal is the protocol's own error, and the server goes on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import websockets

from livecast.limits import BodySizeLimit, Gate, PerIpLimiter
from livecast.media.ladder import PlannedRendition
from livecast.media.service import media_of
from livecast.packager.live import LiveStream
from tests.conftest import Server, start_server, wait_for
from tests.test_chat_tcp import Client


@pytest.fixture
async def tight(tmp_path: Path) -> AsyncIterator[Server]:
    """A server whose limits are small enough to reach, with loopback counted like anyone."""
    srv = await start_server(tmp_path, limit_exempt_ips="", http_max_connections_per_ip=3,
                             chat_max_connections_per_ip=2, http_max_body_bytes=4096,
                             hls_max_blocking_requests=1)
    try:
        yield srv
    finally:
        await srv.runner.stop()


def test_limiter_counts_keys_once_and_exempts() -> None:
    lim = PerIpLimiter(2, exempt=["10.0.0.9"])
    a, b, c = object(), object(), object()
    assert lim.acquire("1.2.3.4", a) and lim.acquire("1.2.3.4", a)  # same key: one slot
    assert lim.acquire("1.2.3.4", b)
    assert not lim.acquire("1.2.3.4", c)
    assert lim.acquire("5.6.7.8", c)  # another address has its own budget
    lim.release(a)
    lim.release(a)  # a second release is harmless
    assert lim.count("1.2.3.4") == 1 and lim.acquire("1.2.3.4", object())
    assert all(lim.acquire("10.0.0.9", object()) for _ in range(10))
    gate = Gate(1)
    assert gate.try_enter() and not gate.try_enter()
    gate.leave()
    assert gate.try_enter()


async def _raw_get(port: int, path: str = "/healthz") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_http_connections_per_ip(tight: Server) -> None:
    port = tight.platform.ports["http"]
    limiter: PerIpLimiter = tight.platform.state["limits.http"]
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    await wait_for(lambda: limiter.count("127.0.0.1") == 3)
    status, body = await _raw_get(port)
    assert status == 429
    assert json.loads(body) == {"error": "Too Many Requests", "status": 429,
                                "message": "Too many connections from your address"}
    assert limiter.count("127.0.0.1") == 3  # the refused one never took a slot
    idle[0][1].close()
    await wait_for(lambda: limiter.count("127.0.0.1") == 2)
    assert (await _raw_get(port))[0] == 200
    # An upgraded WebSocket keeps the slot its HTTP request took, and gives it back on close.
    async with websockets.connect(f"ws://127.0.0.1:{port}/", subprotocols=[websockets.Subprotocol("irc")]):
        await wait_for(lambda: limiter.count("127.0.0.1") == 3)
        assert (await _raw_get(port))[0] == 429
    await wait_for(lambda: limiter.count("127.0.0.1") == 2)
    for _, writer in idle[1:]:
        writer.close()
    await wait_for(lambda: limiter.count("127.0.0.1") == 0)


async def test_request_body_cap(tight: Server) -> None:
    async with httpx.AsyncClient(base_url=tight.http_url) as http:
        big = await http.post("/oauth2/token", content=b"grant_type=x&" + b"a" * 5000,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert big.status_code == 413
        assert big.json() == {"error": "Payload Too Large", "status": 413,
                              "message": "Request body larger than 4096 bytes"}

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
            for _ in range(10):
                yield b"b" * 1000

        chunked = await http.post("/oauth2/token", content=chunks(),
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert chunked.status_code == 413 and chunked.json()["status"] == 413
        small = await http.post("/oauth2/token", data={"grant_type": "client_credentials"})
        assert small.status_code in {400, 401}  # refused on its merits, not its size
        assert (await http.get("/healthz")).status_code == 200


async def test_body_cap_after_response_started_is_not_rewritten() -> None:
    """An app that answered before reading the whole body keeps its answer."""
    sent: list[dict[str, object]] = []

    async def app(scope: object, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        while True:
            msg = await receive()  # type: ignore[operator]
            if msg["type"] == "http.disconnect" or not msg.get("more_body"):
                break
        await send({"type": "http.response.body", "body": b"early"})  # type: ignore[operator]

    bodies = iter([{"type": "http.request", "body": b"x" * 3000, "more_body": True},
                   {"type": "http.request", "body": b"x" * 3000, "more_body": False}])

    async def receive() -> dict[str, object]:
        return next(bodies)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await BodySizeLimit(app, 4096)({"type": "http", "headers": []}, receive, send)  # type: ignore[arg-type]
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"early"


async def test_chat_connections_per_ip_over_both_transports(tight: Server) -> None:
    limiter: PerIpLimiter = tight.platform.state["chat.limiter"]
    a = await Client.connect(tight.irc_port)
    b = await Client.connect(tight.irc_port)
    await wait_for(lambda: limiter.count("127.0.0.1") == 2)
    c = await Client.connect(tight.irc_port)
    notice = await c.expect("NOTICE")
    assert notice.params == ("*", "Too many connections from your address")
    await wait_for(lambda: c.eof)
    url = f"ws://127.0.0.1:{tight.platform.ports['http']}/"
    async with websockets.connect(url, subprotocols=[websockets.Subprotocol("irc")]) as ws:
        assert "Too many connections" in str(await asyncio.wait_for(ws.recv(), 5))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    await a.login("justinfan1", None)  # the admitted ones are unaffected
    await a.close()
    await wait_for(lambda: limiter.count("127.0.0.1") == 1)
    async with websockets.connect(url, subprotocols=[websockets.Subprotocol("irc")]) as ws:
        await ws.send("NICK justinfan2\r\n")
        welcome = ""
        while " 376 " not in welcome:
            welcome += str(await asyncio.wait_for(ws.recv(), 5))
        assert limiter.count("127.0.0.1") == 2
    await wait_for(lambda: limiter.count("127.0.0.1") == 1)
    await b.close()
    await c.close()


async def test_websocket_line_too_long_gets_a_notice(server: Server) -> None:
    url = f"ws://127.0.0.1:{server.platform.ports['http']}/"
    async with websockets.connect(url, subprotocols=[websockets.Subprotocol("irc")]) as ws:
        await ws.send("NICK justinfan5\r\nPRIVMSG #x :" + "y" * 10_240 + "\r\n")
        received = ""
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                received += str(await asyncio.wait_for(ws.recv(), 5))
        assert ":tmi.twitch.tv NOTICE * :Line too long" in received
    c = await Client.connect(server.irc_port)  # and the server is still there
    await c.login("justinfan6", None)
    await c.close()


async def test_blocking_playlist_requests_are_capped(tight: Server) -> None:
    media = media_of(tight.platform)
    assert media is not None
    live = LiveStream("alice", {"160p30": PlannedRendition("160p30", 160, 30, 400, 160, cost=1)}, 2.0, 0.5, 6)
    media.streams["alice"] = live
    gate = tight.platform.state["limits.hls_blocking"]
    url = "/hls/alice/160p30/playlist.m3u8?_HLS_msn=0&_HLS_part=0"
    async with httpx.AsyncClient(base_url=tight.http_url, timeout=30) as http:
        held = asyncio.create_task(http.get(url))
        await wait_for(lambda: gate.active == 1)
        refused = await http.get(url)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert refused.json()["message"] == "too many blocking playlist requests; retry"
        live.end()  # the held request is answered, and its place is free again
        assert (await held).status_code in {200, 404}
        assert gate.active == 0


async def test_wrong_stream_keys_are_limited_per_address(tight: Server) -> None:
    from livecast.ingest.server import BAD_KEY_LIMIT
    from tests.test_ingest_e2e import RawPublisher

    user = await tight.create_user("caster")
    for _ in range(BAD_KEY_LIMIT):
        bad = await RawPublisher.connect(tight.rtmp_port)
        status = await bad.publish("live_guess")
        assert status["code"] == "NetStream.Publish.BadName"
        assert await bad.closed()
    # Now even the right key from this address is refused without being looked up.
    blocked = await RawPublisher.connect(tight.rtmp_port)
    status = await blocked.publish(user["stream_key"])
    assert (status["level"], status["code"]) == ("error", "NetStream.Publish.Rejected")
    assert status["description"] == "too many failed attempts, try again later"
    assert await blocked.closed()


async def test_idle_and_slow_header_connections_are_closed(tmp_path: Path) -> None:
    """Slowloris: a socket that sends nothing, or never finishes its headers or its login, is
    closed (HTTP 408; IRC NOTICE) while the clients that did are served."""
    srv = await start_server(tmp_path, http_header_timeout=0.5, chat_login_timeout=0.5)
    try:
        port = srv.platform.ports["http"]
        silent_r, silent_w = await asyncio.open_connection("127.0.0.1", port)
        slow_r, slow_w = await asyncio.open_connection("127.0.0.1", port)
        slow_w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        chat_idle = await Client.connect(srv.irc_port)
        chat_ok = await Client.connect(srv.irc_port)
        await chat_ok.login("justinfan1", None)
        async with websockets.connect(f"ws://127.0.0.1:{port}/", subprotocols=[websockets.Subprotocol("irc")]) as ws:
            assert "Login timed out" in str(await asyncio.wait_for(ws.recv(), 10))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
        assert await asyncio.wait_for(silent_r.read(), 10) == b""
        answer = await asyncio.wait_for(slow_r.read(), 10)
        assert answer.startswith(b"HTTP/1.1 408 ") and b'"status": 408' in answer
        notice = await chat_idle.expect("NOTICE", timeout=10)
        assert notice.params[-1] == "Login timed out"
        await wait_for(lambda: chat_idle.eof)
        chat_ok.send("PING :logged-in clients stay")
        await chat_ok.expect("PONG", lambda m: m.params[-1] == "logged-in clients stay")
        async with httpx.AsyncClient(base_url=srv.http_url) as http:
            assert (await http.get("/healthz")).status_code == 200
        for w in (silent_w, slow_w):
            w.close()
        await chat_idle.close()
        await chat_ok.close()
    finally:
        await srv.runner.stop()


async def test_security_headers(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        page = await http.get("/")
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        api = await http.get("/healthz")
        assert api.headers["x-content-type-options"] == "nosniff" and "x-frame-options" not in api.headers


async def test_embed_pages_may_be_framed() -> None:
    from livecast.web.headers import SecurityHeaders

    sent: list[dict[str, object]] = []

    async def page(scope: object, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200,  # type: ignore[operator]
                    "headers": [(b"content-type", b"text/html; charset=utf-8")]})

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    for path in ("/embed/clip/abc", "/alice"):
        await SecurityHeaders(page)({"type": "http", "path": path, "headers": []}, None, send)  # type: ignore[arg-type]
    framed, own = (dict(m["headers"]) for m in sent)  # type: ignore[call-overload]
    assert b"x-frame-options" not in framed and framed[b"x-content-type-options"] == b"nosniff"
    assert own[b"x-frame-options"] == b"DENY"


async def test_oauth_credential_failures_are_limited_per_address(tight: Server) -> None:
    from livecast.api.oauth import FAILURE_LIMIT

    client_id, secret = await tight.create_app("brute")
    async with httpx.AsyncClient(base_url=tight.http_url) as http:
        for i in range(FAILURE_LIMIT):
            r = await http.post("/oauth2/token", data={"client_id": client_id, "client_secret": f"guess{i}",
                                                       "grant_type": "client_credentials"})
            assert r.status_code == 403
        r = await http.post("/oauth2/token", data={"client_id": client_id, "client_secret": secret,
                                                   "grant_type": "client_credentials"})
        assert r.status_code == 429 and r.json() == {"status": 429,
                                                     "message": "too many failed attempts; try again later"}
        assert int(r.headers["Retry-After"]) > 0


def test_lines_held_during_login_are_bounded_in_bytes() -> None:
    """Lines pipelined behind PASS/NICK wait for the login check; 64 KiB of them, not 8 MiB."""
    from livecast.chat.session import MAX_HELD_BYTES, Closed, TmiSession

    session = TmiSession()
    session.receive_data(b"PASS oauth:abc\r\nNICK alice\r\n")
    line = b"PRIVMSG #alice :" + b"x" * 4000 + b"\r\n"
    events = []
    for _ in range(MAX_HELD_BYTES // len(line) + 2):
        events += session.receive_data(line)
    assert any(isinstance(ev, Closed) for ev in events) and session.closed
    assert b"Too many lines before login" in session.data_to_send()
