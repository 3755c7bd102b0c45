"""Web sign-up, sign-in and sign-out: cookies, CSRF, open redirects, rate limits, nothing written on error."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from livecast.identity.models import User, WebSession
from livecast.web.auth import safe_next
from livecast.web.session import COOKIE
from tests.conftest import REDIS_URL, Server, start_server

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


async def signup(http: httpx.AsyncClient, login: str, **fields: str) -> httpx.Response:
    page = await http.get("/signup")
    assert page.status_code == 200
    data = {"login": login, "email": f"{login}@example.com", "password": PASSWORD,
            "csrf_token": csrf_of(page.text)}
    data.update(fields)
    return await http.post("/signup", data=data)


async def login(http: httpx.AsyncClient, name: str, password: str = PASSWORD, next_path: str = "") -> httpx.Response:
    page = await http.get("/login")
    assert page.status_code == 200
    return await http.post("/login", data={"login": name, "password": password, "next": next_path,
                                           "csrf_token": csrf_of(page.text)})


async def count(server: Server, model: Any) -> int:
    async with server.platform.db.session() as db:
        return int((await db.execute(select(func.count()).select_from(model))).scalar() or 0)


async def test_signup_signin_signout(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        r = await signup(http, "alice", display_name="Alice")
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(COOKIE + "="))
        assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Secure" not in cookie
        # Signed in: the layout names the user and the sign-in page sends them on.
        page = await http.get("/activate")
        assert page.status_code == 200 and 'id="site-user"' in page.text and ">Alice<" in page.text
        assert (await http.get("/login?next=/directory")).headers["location"] == "/directory"
        r = await http.post("/logout", data={"csrf_token": csrf_of(page.text)})
        assert r.status_code == 303
        assert await count(server, WebSession) == 0
        page = await http.get("/activate")
        assert page.status_code == 302 and page.headers["location"].startswith("/login?next=")
        r = await login(http, "ALICE", next_path="/alice?tab=videos")
        assert r.status_code == 303 and r.headers["location"] == "/alice?tab=videos"
        assert await count(server, WebSession) == 1
        page = await http.get("/oauth2/authorize")  # any page with the layout
        assert "Log Out" in page.text
    async with server.platform.db.session() as db:
        user = (await db.execute(select(User).where(User.login == "alice"))).scalar_one()
    assert user.display_name == "Alice" and user.email == "alice@example.com"
    assert user.password_hash.startswith("$argon2") and PASSWORD not in user.password_hash


async def test_signup_errors_shown_and_nothing_written(server: Server) -> None:
    await server.create_user("taken", password=PASSWORD)
    users = await count(server, User)
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        cases = [
            ({"password": "short"}, "at least 8 characters"),
            ({"email": "not-an-email"}, "valid email"),
            ({"login": "no spaces allowed"}, "3-25 characters"),
            ({"display_name": "SomeoneElse"}, "capitalisation"),
            ({"login": "taken"}, "That username is taken."),
            ({"csrf_token": "forged"}, "expired"),
        ]
        for fields, message in cases:
            name = fields.pop("login", "bob")
            r = await signup(http, name, **fields)
            assert r.status_code in {400, 403}, fields
            assert message in r.text, (fields, r.text)
            assert COOKIE + "=" not in r.headers.get("set-cookie", "")
        # The form keeps what was typed (but never the password).
        r = await signup(http, "bob", email="bob@example.com", password="short")
        assert 'value="bob@example.com"' in r.text and "short" not in r.text.split("form-errors")[0]
        r = await http.post("/signup", content=b"\xff\xfe", headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 400
    assert await count(server, User) == users
    assert await count(server, WebSession) == 0


async def test_login_errors_csrf_and_open_redirects(server: Server) -> None:
    await server.create_user("carol", password=PASSWORD)
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        r = await login(http, "carol", password="wrong password")
        assert r.status_code == 400 and "Incorrect username or password." in r.text
        r = await login(http, "nobody")
        assert r.status_code == 400 and "Incorrect username or password." in r.text
        r = await http.post("/login", data={"login": "carol", "password": PASSWORD})  # no CSRF token
        assert r.status_code == 403
        assert await count(server, WebSession) == 0
        for evil in ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)",
                     "/\t/evil.example", "evil"]:
            r = await login(http, "carol", next_path=evil)
            assert r.status_code == 303 and r.headers["location"] == "/", evil
            await http.post("/logout", data={"csrf_token": csrf_of((await http.get("/activate")).text)})
        page = await http.get("/login?next=//evil.example/")
        assert 'name="next" value="/"' in page.text


async def test_logout_needs_csrf(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        await signup(http, "dave")
        r = await http.post("/logout", data={"csrf_token": "forged"})
        assert r.status_code == 403
        r = await http.post("/logout")
        assert r.status_code == 403
        assert await count(server, WebSession) == 1
        assert (await http.get("/activate")).status_code == 200


async def test_login_rate_limited_per_login_and_address(server: Server) -> None:
    await server.create_user("erin", password=PASSWORD)
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        for _ in range(5):
            r = await login(http, "erin", password="guess")
            assert r.status_code == 400
        r = await login(http, "erin")  # even the right password waits now
        assert r.status_code == 429
        match = re.search(r"Too many attempts, try again in (\d+) s", r.text)
        assert match and 1 <= int(match.group(1)) <= 60
        assert int(r.headers["retry-after"]) == int(match.group(1))
        assert await count(server, WebSession) == 0
        # Another login from the same address still has tries left, until the address runs out.
        statuses = [(await login(http, f"user{i}", password="guess")).status_code for i in range(20)]
        assert statuses[:14] == [400] * 14 and statuses[-1] == 429


async def test_secure_cookie_behind_https_proxy(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.http_url, headers={"x-forwarded-proto": "https"}) as http:
        page = await http.get("/login")
        form_cookie = page.headers["set-cookie"]
        assert "Secure" in form_cookie and "HttpOnly" in form_cookie
        # httpx keeps Secure cookies for https only; send the form cookie by hand.
        token = csrf_of(page.text)
        await server.create_user("frank", password=PASSWORD)
        r = await http.post("/login", data={"login": "frank", "password": PASSWORD, "csrf_token": token},
                            headers={"cookie": f"livecast_form={token}"})
        assert r.status_code == 303
        assert "Secure" in r.headers["set-cookie"]


async def test_layout_and_static(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        page = await http.get("/login")
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-store"
        for needle in ['href="/directory"', 'action="/search"', 'href="/login"', 'href="/signup"',
                       "/static/css/site.css", ">Livecast<"]:
            assert needle in page.text
        assert "http://" not in page.text and "https://" not in page.text  # no external CDN
        css = await http.get("/static/css/site.css")
        assert css.status_code == 200 and "--accent" in css.text
        schema = (await http.get("/helix/openapi.json")).json()
        assert not {"/login", "/signup", "/logout", "/activate", "/oauth2/authorize"} & set(schema["paths"])


def test_safe_next() -> None:
    assert safe_next("/directory?x=1") == "/directory?x=1"
    assert safe_next("/oauth2/authorize?client_id=a&redirect_uri=http%3A%2F%2Fx") .startswith("/oauth2/")
    for bad in [None, "", "//x", "/\\x", "http://x/", "x", "/\nx", "/" + "a" * 2001]:
        assert safe_next(bad) == "/"


async def test_login_limit_is_shared_between_processes_through_redis(tmp_path: Path) -> None:
    """Two platforms on one Redis bus: failures on one count on the other (as behind a load balancer)."""
    address = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
    name = "u" + secrets.token_hex(6)
    headers = {"x-forwarded-for": address}  # uvicorn trusts the local proxy's forwarded address
    first = await start_server(tmp_path / "a", bus_url=REDIS_URL)
    second = await start_server(tmp_path / "b", bus_url=REDIS_URL)
    try:
        async with httpx.AsyncClient(base_url=first.http_url, headers=headers) as http:
            for _ in range(5):
                assert (await login(http, name, password="guess")).status_code == 400
        async with httpx.AsyncClient(base_url=second.http_url, headers=headers) as http:
            r = await login(http, name, password="guess")
            assert r.status_code == 429 and "Too many attempts" in r.text
            r = await login(http, "someone_else", password="guess")  # same address, other login: allowed
            assert r.status_code == 400
    finally:
        await second.runner.stop()
        await first.runner.stop()


async def test_signing_in_replaces_the_browsers_previous_session(server: Server) -> None:
    await server.create_user("grace", password=PASSWORD)
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        await signup(http, "heidi")
        planted = http.cookies[COOKIE]
        token = "t" * 32
        r = await http.post("/login", data={"login": "grace", "password": PASSWORD, "csrf_token": token},
                            headers={"cookie": f"{COOKIE}={planted}; livecast_form={token}"})
        assert r.status_code == 303
        assert await count(server, WebSession) == 1  # heidi's old session id is dead
        r = await http.get("/activate", headers={"cookie": f"{COOKIE}={planted}"})
        assert r.status_code == 302
