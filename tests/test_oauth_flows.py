"""OAuth2 user flows end to end: authorization code, implicit, device code; pyTwitchAPI as a real client.

Every refused request is checked against a full dump of the identity tables: nothing written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import func, select, update
from twitchAPI.oauth import CodeFlow, UserAuthenticator, refresh_access_token, revoke_token, validate_token
from twitchAPI.twitch import Twitch
from twitchAPI.type import AuthScope, InvalidRefreshTokenException

from livecast.identity import grants, service
from livecast.identity.models import Channel, Grant, OAuthApp, Token, User, WebSession
from livecast.store.db import Database
from tests.conftest import Server
from tests.test_web_auth import csrf_of, signup

REDIRECT = "http://127.0.0.1:9/callback"


async def dump(server: Server) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the identity tables, so a test can prove a refused request changed nothing."""
    tables: dict[str, list[tuple[Any, ...]]] = {}
    async with server.platform.db.session() as db:
        for model in (User, Channel, OAuthApp, Token, Grant, WebSession):
            rows = (await db.execute(select(model))).scalars().all()
            columns = [c.key for c in model.__table__.columns]
            tables[model.__tablename__] = sorted(
                (tuple(str(getattr(row, c)) for c in columns) for row in rows), key=str)
    return tables


@asynccontextmanager
async def signed_in(server: Server, login: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client with a new account, signed in through the sign-up form."""
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        r = await signup(http, login)
        assert r.status_code == 303
        yield http


def authorize_url(client_id: str, scope: str, *, response_type: str = "code", state: str = "s-123",
                  redirect_uri: str = REDIRECT) -> str:
    return "/oauth2/authorize?" + urlencode({"client_id": client_id, "redirect_uri": redirect_uri,
                                             "response_type": response_type, "scope": scope, "state": state})


async def consent(http: httpx.AsyncClient, url: str, decision: str = "authorize") -> httpx.Response:
    """Open the consent page and press a button; returns the redirect back to the app."""
    page = await http.get(url)
    assert page.status_code == 200, page.text
    fields = dict(_hidden_fields(page.text))
    fields["decision"] = decision
    return await http.post(urlsplit(url).path, data=fields)


def _hidden_fields(html: str) -> list[tuple[str, str]]:
    import re

    return re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html.replace("&#39;", "'"))


def query_of(location: str, *, fragment: bool = False) -> dict[str, str]:
    parts = urlsplit(location)
    return {k: v[0] for k, v in parse_qs(parts.fragment if fragment else parts.query).items()}


async def code_flow(server: Server) -> None:
    client_id, secret = await server.create_app("Chat Bot", [REDIRECT, "http://localhost/other"])
    async with httpx.AsyncClient(base_url=server.http_url) as anonymous:
        r = await anonymous.get(authorize_url(client_id, "chat:read chat:edit"))
        assert r.status_code == 302 and r.headers["location"].startswith("/login?next=%2Foauth2%2Fauthorize")
    async with signed_in(server, "alice") as http:
        page = await http.get(authorize_url(client_id, "chat:read chat:edit"))
        assert "Chat Bot" in page.text and 'data-scope="chat:edit"' in page.text
        assert "Send live stream chat messages" in page.text
        r = await consent(http, authorize_url(client_id, "chat:read chat:edit"))
        assert r.status_code == 302
        location = r.headers["location"]
        assert location.startswith(REDIRECT + "?")
        answer = query_of(location)
        assert answer["scope"] == "chat:read chat:edit" and answer["state"] == "s-123"
        code = answer["code"]
        form = {"client_id": client_id, "client_secret": secret, "code": code, "grant_type": "authorization_code",
                "redirect_uri": REDIRECT}
        r = await http.post("/oauth2/token", data=form)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"access_token", "expires_in", "refresh_token", "scope", "token_type"}
        assert body["scope"] == ["chat:read", "chat:edit"] and body["token_type"] == "bearer"
        assert 0 < body["expires_in"] <= server.platform.settings.token_lifetime
        for scheme in ("OAuth", "Bearer"):
            v = await http.get("/oauth2/validate", headers={"Authorization": f"{scheme} {body['access_token']}"})
            assert v.status_code == 200
            assert v.json()["login"] == "alice" and v.json()["client_id"] == client_id
            assert v.json()["scopes"] == ["chat:read", "chat:edit"]
        r = await http.post("/oauth2/token", data={"client_id": client_id, "client_secret": secret,
                                                   "grant_type": "refresh_token",
                                                   "refresh_token": body["refresh_token"]})
        assert r.status_code == 200
        refreshed = r.json()
        assert refreshed["access_token"] != body["access_token"] and refreshed["scope"] == body["scope"]
        v = await http.get("/oauth2/validate", headers={"Authorization": f"OAuth {body['access_token']}"})
        assert v.status_code == 401  # rotated away
        r = await http.post("/oauth2/revoke", data={"client_id": client_id, "token": refreshed["access_token"]})
        assert r.status_code == 200
        v = await http.get("/oauth2/validate", headers={"Authorization": f"OAuth {refreshed['access_token']}"})
        assert v.status_code == 401 and v.json() == {"status": 401, "message": "invalid access token"}

        # A second code, redeemed twice: the replay fails and revokes what the first use issued.
        r = await consent(http, authorize_url(client_id, "chat:read"))
        form["code"] = query_of(r.headers["location"])["code"]
        first = (await http.post("/oauth2/token", data=form)).json()
        before = await dump(server)
        r = await http.post("/oauth2/token", data=form)
        assert r.status_code == 400 and r.json() == {"status": 400, "message": "Invalid authorization code"}
        after = await dump(server)
        assert len(after["oauth_tokens"]) == len(before["oauth_tokens"])  # nothing new issued
        v = await http.get("/oauth2/validate", headers={"Authorization": f"OAuth {first['access_token']}"})
        assert v.status_code == 401
        r = await http.post("/oauth2/token", data={"client_id": client_id, "client_secret": secret,
                                                   "grant_type": "refresh_token",
                                                   "refresh_token": first["refresh_token"]})
        assert r.status_code == 400 and r.json()["message"] == "Invalid refresh token"


async def test_authorization_code_flow(server: Server) -> None:
    await code_flow(server)


async def test_authorization_code_flow_postgres(pg_server: Server) -> None:
    await code_flow(pg_server)


async def test_cancel_unknown_scope_and_bad_redirects(server: Server) -> None:
    client_id, _ = await server.create_app("Viewer Tool", [REDIRECT, "https://app.example/cb?keep=1"])
    async with signed_in(server, "bob") as http:
        before = await dump(server)
        r = await consent(http, authorize_url(client_id, "user:read:email", state="xyz"), decision="cancel")
        assert r.status_code == 302
        assert r.headers["location"] == (
            f"{REDIRECT}?error=access_denied&error_description=The+user+denied+you+access&state=xyz")
        r = await http.get(authorize_url(client_id, "chat:read chat:sing", state="q"))
        assert r.status_code == 302
        answer = query_of(r.headers["location"])
        assert answer["error"] == "invalid_scope" and "chat:sing" in answer["error_description"]
        assert answer["state"] == "q"
        r = await http.get(authorize_url(client_id, "chat:read", redirect_uri="https://app.example/cb?keep=1"))
        assert r.status_code == 200  # registered URIs with a query are fine...
        for uri in ["https://evil.example/cb", REDIRECT + "/", "http://127.0.0.1:9/callback?x=1", ""]:
            r = await http.get(authorize_url(client_id, "chat:read", redirect_uri=uri))
            assert r.status_code == 400 and "location" not in r.headers, uri  # ...others never get a redirect
            assert "redirect_mismatch" in r.text
        r = await http.get(authorize_url("no-such-client", "chat:read"))
        assert r.status_code == 400 and "location" not in r.headers and "invalid client" in r.text
        r = await http.get(authorize_url(client_id, "chat:read", response_type="password"))
        assert query_of(r.headers["location"])["error"] == "unsupported_response_type"
        # The consent POST re-checks everything: a forged CSRF token or a swapped redirect is refused.
        page = await http.get(authorize_url(client_id, "chat:read"))
        fields = dict(_hidden_fields(page.text), decision="authorize")
        r = await http.post("/oauth2/authorize", data={**fields, "csrf_token": "forged"})
        assert r.status_code == 403 and "location" not in r.headers
        r = await http.post("/oauth2/authorize", data={**fields, "redirect_uri": "https://evil.example/cb"})
        assert r.status_code == 400 and "location" not in r.headers
        r = await consent(http, authorize_url(client_id, "chat:read", redirect_uri="https://app.example/cb?keep=1"),
                          decision="cancel")
        assert r.headers["location"].startswith("https://app.example/cb?keep=1&error=access_denied")
        assert await dump(server) == before


async def test_implicit_flow(server: Server) -> None:
    client_id, _ = await server.create_app("Overlay", [REDIRECT])
    async with signed_in(server, "carol") as http:
        r = await consent(http, authorize_url(client_id, "user:read:email", response_type="token", state="st"))
        assert r.status_code == 302
        location = r.headers["location"]
        assert location.startswith(REDIRECT + "#") and "?" not in location
        answer = query_of(location, fragment=True)
        assert answer["token_type"] == "bearer" and answer["state"] == "st" and answer["scope"] == "user:read:email"
        assert "refresh_token" not in answer
        v = await http.get("/oauth2/validate", headers={"Authorization": f"Bearer {answer['access_token']}"})
        assert v.status_code == 200 and v.json()["login"] == "carol"
        r = await consent(http, authorize_url(client_id, "chat:read", response_type="token", state="st"), "cancel")
        assert query_of(r.headers["location"], fragment=True)["error"] == "access_denied"
        # Already allowed: no prompt unless force_verify, as on Twitch; a new token each time.
        r = await http.get(authorize_url(client_id, "user:read:email", response_type="token", state="again"))
        assert r.status_code == 302
        again = query_of(r.headers["location"], fragment=True)
        assert again["state"] == "again" and again["access_token"] != answer["access_token"]
        r = await http.get(authorize_url(client_id, "user:read:email", response_type="token") + "&force_verify=true")
        assert r.status_code == 200 and 'id="consent-authorize"' in r.text
        await http.post("/oauth2/revoke", data={"client_id": client_id, "token": answer["access_token"]})
        await http.post("/oauth2/revoke", data={"client_id": client_id, "token": again["access_token"]})
        r = await http.get(authorize_url(client_id, "user:read:email", response_type="token"))
        assert r.status_code == 200  # every grant revoked: ask again


async def test_device_flow(server: Server) -> None:
    client_id, _ = await server.create_app("TV App")
    async with signed_in(server, "dave") as http:
        r = await http.post("/oauth2/device", data={"client_id": client_id, "scopes": "chat:read user:read:email"})
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"device_code", "expires_in", "interval", "user_code", "verification_uri"}
        assert body["expires_in"] == 1800 and body["interval"] == 5 and len(body["user_code"]) == 8
        assert body["verification_uri"] == f"{server.http_url}/activate?device-code={body['user_code']}"
        poll = {"client_id": client_id, "device_code": body["device_code"], "scopes": "chat:read user:read:email",
                "grant_type": "urn:ietf:params:oauth:grant-type:device_code"}
        before = await dump(server)
        r = await http.post("/oauth2/token", data=poll)
        assert r.status_code == 400 and r.json() == {"status": 400, "message": "authorization_pending"}
        assert await dump(server) == before
        # The user types the code (lower case, with a dash) on the activation page.
        code = body["user_code"]
        page = await http.get("/activate?device-code=" + f"{code[:4]}-{code[4:]}".lower())
        assert page.status_code == 200 and "TV App" in page.text and 'data-scope="user:read:email"' in page.text
        r = await http.post("/activate", data={"csrf_token": csrf_of(page.text), "user_code": code,
                                               "decision": "authorize"})
        assert r.status_code == 200 and "TV App is now connected" in r.text
        r = await http.post("/oauth2/token", data=poll)
        assert r.status_code == 200, r.text
        tokens = r.json()
        assert tokens["scope"] == ["chat:read", "user:read:email"] and tokens["refresh_token"]
        v = await http.get("/oauth2/validate", headers={"Authorization": f"OAuth {tokens['access_token']}"})
        assert v.json()["login"] == "dave"
        before = await dump(server)
        for device_code in (body["device_code"], "unknown-device-code"):  # used, then unknown
            r = await http.post("/oauth2/token", data={**poll, "device_code": device_code})
            assert r.status_code == 400 and r.json() == {"status": 400, "message": "invalid device code"}
        page = await http.get("/activate?device-code=" + code)  # a spent code cannot be approved again
        assert page.status_code == 400 and "not valid" in page.text
        assert await dump(server) == before
        # Denying a device makes its code invalid.
        r = await http.post("/oauth2/device", data={"client_id": client_id, "scopes": "chat:read"})
        denied = r.json()
        page = await http.get("/activate?device-code=" + denied["user_code"])
        await http.post("/activate", data={"csrf_token": csrf_of(page.text), "user_code": denied["user_code"],
                                           "decision": "cancel"})
        r = await http.post("/oauth2/token", data={**poll, "device_code": denied["device_code"]})
        assert r.json()["message"] == "invalid device code"


async def test_bad_inputs_get_twitch_errors_and_write_nothing(server: Server) -> None:
    client_id, secret = await server.create_app("Careful App", [REDIRECT])
    user = await server.create_user("erin", scopes=["chat:read"])
    async with signed_in(server, "frank") as http:
        r = await consent(http, authorize_url(client_id, "chat:read"))
        code = query_of(r.headers["location"])["code"]
        r = await consent(http, authorize_url(client_id, "chat:read"))
        stale_code = query_of(r.headers["location"])["code"]
        async with server.platform.db.session() as db:  # an expired token and an expired code
            await db.execute(update(Token).where(Token.user_id == user["user_id"])
                             .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
            await db.execute(update(Grant).where(Grant.id == (await db.execute(select(func.max(Grant.id)))).scalar())
                             .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
        good = {"client_id": client_id, "client_secret": secret, "code": code, "grant_type": "authorization_code",
                "redirect_uri": REDIRECT}
        form_type = {"content-type": "application/x-www-form-urlencoded"}
        before = await dump(server)
        cases: list[tuple[str, str, dict[str, Any], int, str]] = [
            ("wrong client secret", "/oauth2/token", {"data": {**good, "client_secret": "wrong"}},
             403, "invalid client secret"),
            ("unknown client", "/oauth2/token", {"data": {**good, "client_id": "nope"}}, 400, "invalid client"),
            ("redirect mismatch", "/oauth2/token", {"data": {**good, "redirect_uri": "http://evil.example/"}},
             400, "Parameter redirect_uri does not match registered URI"),
            ("expired code", "/oauth2/token", {"data": {**good, "code": stale_code}}, 400,
             "Invalid authorization code"),
            ("unknown code", "/oauth2/token", {"data": {**good, "code": "x" * 30}}, 400, "Invalid authorization code"),
            ("missing code", "/oauth2/token", {"data": {**good, "code": ""}}, 400, "missing code"),
            ("unknown scope", "/oauth2/token", {"data": {"client_id": client_id, "client_secret": secret,
                                                         "grant_type": "client_credentials", "scope": "chat:sing"}},
             400, "invalid scope requested: 'chat:sing'"),
            ("unknown scope, device", "/oauth2/device", {"data": {"client_id": client_id, "scopes": "chat:sing"}},
             400, "invalid scope requested: 'chat:sing'"),
            ("unknown client, device", "/oauth2/device", {"data": {"client_id": "nope"}}, 400, "invalid client"),
            ("malformed body", "/oauth2/token", {"content": b"\xff\xfe=%%", "headers": form_type},
             400, "malformed request body"),
            ("malformed json", "/oauth2/token", {"content": b"[1,", "headers": {"content-type": "application/json"}},
             400, "malformed request body"),
            ("malformed body, device", "/oauth2/device", {"content": b"\xff", "headers": form_type},
             400, "malformed request body"),
            ("oversized body", "/oauth2/token", {"content": b"a=" + b"x" * 20000, "headers": form_type},
             400, "malformed request body"),
            ("unknown grant", "/oauth2/token", {"data": {**good, "grant_type": "password"}}, 400,
             "invalid grant type"),
            ("unknown refresh token", "/oauth2/token", {"data": {"client_id": client_id, "client_secret": secret,
                                                           "grant_type": "refresh_token", "refresh_token": "x"}},
             400, "Invalid refresh token"),
        ]
        for name, path, kwargs, status, message in cases:
            r = await http.post(path, **kwargs)
            assert (r.status_code, r.json()) == (status, {"status": status, "message": message}), name
        r = await http.get("/oauth2/validate", headers={"Authorization": f"OAuth {user['token']}"})
        assert (r.status_code, r.json()) == (401, {"status": 401, "message": "invalid access token"})
        r = await http.get(authorize_url(client_id, "chat:read chat:sing"))
        assert query_of(r.headers["location"])["error"] == "invalid_scope"
        r = await http.get(authorize_url(client_id, "chat:read", redirect_uri="http://evil.example/"))
        assert r.status_code == 400 and "location" not in r.headers
        r = await http.post("/oauth2/authorize", content=b"\xff\xfe", headers=form_type)
        assert r.status_code == 400 and "location" not in r.headers
        assert await dump(server) == before
        # And the good request still works afterwards (the refusals did not spend the code).
        r = await http.post("/oauth2/token", data=good)
        assert r.status_code == 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_pytwitchapi_user_authenticator_and_helpers(server: Server) -> None:
    """pyTwitchAPI's own code-flow client, validate, refresh and revoke helpers against our server."""
    port = free_port()
    callback = f"http://127.0.0.1:{port}"
    client_id, secret = await server.create_app("pyTwitchAPI bot", [callback])
    auth_base = f"{server.http_url}/oauth2/"
    twitch = await Twitch(client_id, secret, base_url=f"{server.http_url}/helix/", auth_base_url=auth_base)
    async with signed_in(server, "grace") as http:
        try:
            scopes = [AuthScope.CHAT_READ, AuthScope.USER_READ_EMAIL]
            authenticator = UserAuthenticator(twitch, scopes, force_verify=True, url=callback, host="127.0.0.1",
                                              port=port, auth_base_url=auth_base)

            async def browser(url: str) -> None:
                # What the user's browser does: open the URL, press Authorize, follow the redirect
                # back to pyTwitchAPI's own callback server, which picks the code up.
                assert url.startswith(auth_base + "authorize?")
                r = await consent(http, url.removeprefix(server.http_url))
                assert r.status_code == 302 and r.headers["location"].startswith(callback + "?code=")
                done = await http.get(r.headers["location"])
                assert done.status_code == 200

            token, refresh = await asyncio.wait_for(
                authenticator.authenticate(use_browser=False, auth_url_callback=browser), timeout=30)
            info = await validate_token(token, auth_base_url=auth_base)
            assert info["login"] == "grace" and info["client_id"] == client_id
            assert set(info["scopes"]) == {AuthScope.CHAT_READ, AuthScope.USER_READ_EMAIL}
            new_token, new_refresh = await refresh_access_token(refresh, client_id, secret, auth_base_url=auth_base)
            assert new_token != token and new_refresh != refresh
            assert (await validate_token(token, auth_base_url=auth_base)).get("status") == 401
            try:
                await refresh_access_token(refresh, client_id, secret, auth_base_url=auth_base)
                raise AssertionError("a rotated refresh token must not work twice")
            except InvalidRefreshTokenException:
                pass
            assert await revoke_token(client_id, new_token, auth_base_url=auth_base)
            assert (await validate_token(new_token, auth_base_url=auth_base)).get("status") == 401
        finally:
            await twitch.close()


async def test_pytwitchapi_device_code_flow(server: Server) -> None:
    """pyTwitchAPI's CodeFlow (Twitch's device flow) polls while the user approves in a browser."""
    client_id, secret = await server.create_app("pyTwitchAPI device")
    auth_base = f"{server.http_url}/oauth2/"
    twitch = await Twitch(client_id, secret, base_url=f"{server.http_url}/helix/", auth_base_url=auth_base)
    async with signed_in(server, "heidi") as http:
        try:
            flow = CodeFlow(twitch, [AuthScope.CHAT_READ, AuthScope.CHAT_EDIT], auth_base_url=auth_base)
            user_code, url = await flow.get_code()
            waiting = asyncio.create_task(flow.wait_for_auth_complete())
            await asyncio.sleep(1.2)  # at least one poll answered authorization_pending
            assert not waiting.done()
            page = await http.get(url.removeprefix(server.http_url))
            assert page.status_code == 200 and user_code in page.text
            r = await http.post("/activate", data={"csrf_token": csrf_of(page.text), "user_code": user_code,
                                                   "decision": "authorize"})
            assert r.status_code == 200
            token, refresh = await asyncio.wait_for(waiting, timeout=15)
            info = await validate_token(token, auth_base_url=auth_base)
            assert info["login"] == "heidi" and set(info["scopes"]) == {AuthScope.CHAT_READ, AuthScope.CHAT_EDIT}
            assert refresh
        finally:
            await twitch.close()


async def test_update_and_delete_user_on_both_databases(database: Database) -> None:
    """Deleting an account ends its tokens and grants; a refused profile update changes nothing."""
    async with database.session() as db:
        user, _ = await service.create_user(db, "ivan", password="a long password")
        other, _ = await service.create_user(db, "judy")
        app_row, _ = await service.create_app(db, "Bot", [REDIRECT])
        issued = await service.issue_token(db, app_row.client_id, user.id, ["chat:read"])
        await grants.create_code(db, app_row, user.id, ["chat:read"], REDIRECT)
        kept = await service.issue_token(db, app_row.client_id, other.id, ["chat:read"])
    async with database.session() as db:
        updated = await service.update_user(db, user.id, description="hello", display_name="Ivan", color="#9147ff")
        assert (updated.description, updated.display_name, updated.color) == ("hello", "Ivan", "#9147FF")
    for bad in ({"description": "x" * 301}, {"display_name": "Someone"}, {"color": "purple"},
                {"email": "nope"}, {"profile_image_url": "javascript:alert(1)", "description": "changed"}):
        with pytest.raises(service.IdentityError):
            async with database.session() as db:
                await service.update_user(db, user.id, **bad)
    async with database.session() as db:
        row = await service.get_user(db, user.id)
        assert row is not None and row.description == "hello" and row.display_name == "Ivan"
        assert await service.delete_user(db, user.id)
        assert not await service.delete_user(db, user.id)
    async with database.session() as db:
        assert await service.validate_token(db, issued.access_token) is None
        assert await service.validate_token(db, kept.access_token) is not None
        assert (await db.execute(select(Grant))).scalars().all() == []
        assert await db.get(Channel, user.id) is None
        with pytest.raises(service.IdentityError):
            await service.update_user(db, user.id, description="gone")


def test_registered_redirect_uris_are_checked() -> None:
    for good in [REDIRECT, "https://app.example/cb?x=1", "myapp://callback", "http://localhost"]:
        service.check_redirect_uri(good)
    for bad in ["javascript:alert(1)", "data:text/html,hi", "/relative", "https://app.example/cb#frag",
                "http:///nohost", "https://app.example/a b", "https://x/" + "a" * 600]:
        with pytest.raises(service.IdentityError):
            service.check_redirect_uri(bad)
