"""Secrets never reach the logs, and paths built from user input never reach the file system.

Every credential a client presents (stream key, access and refresh tokens, client secret,
password), right or wrong, goes through the code paths that log: RTMP publish, chat login
over TCP, Helix, the OAuth token endpoint and web sign-in, with the server at DEBUG. Then no
log record may contain any of them.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from tests.conftest import Server, start_server
from tests.test_chat_tcp import Client
from tests.test_ingest_e2e import RawPublisher
from tests.test_web_auth import login as web_login
from tests.test_web_auth import signup

PASSWORD = "correct horse battery staple"


async def test_credentials_are_never_logged(tmp_path: object, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    srv = await start_server(tmp_path, log_level="DEBUG")  # type: ignore[arg-type]
    try:
        alice = await srv.create_user("alice")
        client_id, client_secret = await srv.create_app("log test")
        secrets = [alice["stream_key"], alice["token"], client_secret]
        wrong = ["live_wrong_" + "k" * 20, "wrongtoken" * 3, "wrongsecret" * 3, "not the password 123"]

        for key in (alice["stream_key"], wrong[0]):
            pub = await RawPublisher.connect(srv.rtmp_port)
            await pub.publish(key)
            pub.writer.close()
        for token in (alice["token"], wrong[1]):
            c = await Client.connect(srv.irc_port)
            c.send(f"PASS oauth:{token}", "NICK alice")
            await c.expect("NOTICE" if token == wrong[1] else "376")
            await c.close()
        async with httpx.AsyncClient(base_url=srv.http_url) as http:
            for token in (alice["token"], wrong[1]):
                await http.get("/helix/users", headers={"Client-Id": alice["client_id"],
                                                        "Authorization": f"Bearer {token}"})
            for secret in (client_secret, wrong[2]):
                r = await http.post("/oauth2/token", data={"client_id": client_id, "client_secret": secret,
                                                           "grant_type": "client_credentials"})
                if secret == client_secret:
                    secrets.append(r.json()["access_token"])
            r = await signup(http, "bobby", password=PASSWORD)
            assert r.status_code in {200, 303}, r.text
        for password in (PASSWORD, wrong[3]):
            async with httpx.AsyncClient(base_url=srv.http_url) as http:
                await web_login(http, "bobby", password)
        secrets.append(PASSWORD)
    finally:
        await srv.runner.stop()
    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'kv', '')} {r.args!r}" for r in caplog.records)
    assert len(caplog.records) > 20  # the paths above did log
    for secret in secrets + wrong:
        assert secret not in logged, f"a credential was logged: {secret[:6]}..."


TRAVERSALS = [
    "/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/static/..%2f..%2f..%2fetc/passwd",
    "/hls/..%2f..%2fetc/passwd/playlist.m3u8", "/hls/alice/..%2f..%2f..%2fetc%2fpasswd",
    "/hls/alice/source/..%2f..%2fpasswd", "/emotes/..%2f..%2fetc/1.0.png", "/web/vendor/..%2f..%2f..%2fetc/passwd",
    "/videos/..%2f..%2fetc%2fpasswd", "/%2e%2e/%2e%2e/etc/passwd",
]


async def test_paths_from_user_input_do_not_reach_the_file_system(server: Server) -> None:
    """Sent byte for byte (an HTTP client library would normalise the dot segments away)."""
    for path in TRAVERSALS:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.platform.ports["http"])
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = await reader.read()
        writer.close()
        status = int(answer.split(b" ", 2)[1])
        assert status in {400, 404, 405}, (path, status)
        assert b"root:" not in answer


XSS = "</script><script>alert(1)</script><img src=x onerror=alert(2)>"


async def test_user_text_is_escaped_on_pages(server: Server) -> None:
    """A title, a description and a chat-visible display of user text never reach a page as
    markup: not in HTML, and not out of the JSON a page embeds in a script tag."""
    alice = await server.create_user("alice", partner=True)
    auth = {"Client-Id": alice["client_id"], "Authorization": f"Bearer {alice['token']}"}
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        r = await http.patch(f"/helix/channels?broadcaster_id={alice['user_id']}", headers=auth,
                             json={"title": XSS[:140]})
        assert r.status_code == 204, r.text
        r = await http.put("/helix/users", params={"description": XSS}, headers=auth)
        assert r.status_code == 200, r.text
        for path in ("/alice", "/", "/directory", "/search?term=alice", f"/search?term={XSS}"):
            page = await http.get(path)
            assert page.status_code in {200, 404}, (path, page.status_code)
            for raw in ("<script>alert(1)", "<img src=x", "</script><script>"):
                assert raw not in page.text, (path, raw)
            if path == "/alice":
                assert "alert(1)" in page.text  # the title is on the page, escaped
