"""OAuth2 endpoints with Twitch's shapes, and a real third-party client (pyTwitchAPI)."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select
from twitchAPI.twitch import Twitch

from livecast.identity.models import Token
from tests.conftest import Server


async def _count_tokens(server: Server) -> int:
    async with server.platform.db.session() as db:
        return int((await db.execute(select(func.count()).select_from(Token))).scalar() or 0)


async def test_twitchapi_obtains_app_token(server: Server) -> None:
    client_id, secret = await server.create_app()
    twitch = await Twitch(client_id, secret, base_url=f"{server.http_url}/helix/",
                          auth_base_url=f"{server.http_url}/oauth2/")
    try:
        token = twitch.get_app_token()
        assert token and len(token) == 30
        async with httpx.AsyncClient() as http:
            r = await http.get(f"{server.http_url}/oauth2/validate", headers={"Authorization": f"OAuth {token}"})
        assert r.status_code == 200
        assert r.json()["client_id"] == client_id
        assert "user_id" not in r.json()
    finally:
        await twitch.close()


async def test_client_credentials_errors_write_nothing(server: Server) -> None:
    client_id, secret = await server.create_app()
    before = await _count_tokens(server)
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        r = await http.post("/oauth2/token", data={"client_id": client_id, "client_secret": "nope",
                                                   "grant_type": "client_credentials"})
        assert r.status_code == 403 and r.json() == {"status": 403, "message": "invalid client secret"}
        r = await http.post("/oauth2/token", data={"client_id": "unknown", "client_secret": secret,
                                                   "grant_type": "client_credentials"})
        assert r.status_code == 400 and r.json()["message"] == "invalid client"
        r = await http.post("/oauth2/token", data={"client_id": client_id, "client_secret": secret,
                                                   "grant_type": "client_credentials", "scope": "chat:sing"})
        assert r.status_code == 400 and "invalid scope" in r.json()["message"]
        r = await http.post("/oauth2/token", content=b"\xff\xfe%%%", headers={
            "content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 400 and set(r.json()) == {"status", "message"}
        r = await http.post("/oauth2/token", content=b"x" * 70000, headers={
            "content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 400
        r = await http.get("/oauth2/validate", headers={"Authorization": "OAuth not-a-token"})
        assert r.status_code == 401 and r.json() == {"status": 401, "message": "invalid access token"}
    assert await _count_tokens(server) == before


async def test_validate_user_token_and_revoke(server: Server) -> None:
    alice = await server.create_user("alice", scopes=["chat:read"])
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        r = await http.get("/oauth2/validate", headers={"Authorization": f"Bearer {alice['token']}"})
        assert r.status_code == 200
        body = r.json()
        assert body["login"] == "alice" and body["user_id"] == alice["user_id"]
        assert body["scopes"] == ["chat:read"] and body["expires_in"] > 0
        r = await http.post("/oauth2/revoke", data={"client_id": alice["client_id"], "token": alice["token"]})
        assert r.status_code == 200
        r = await http.get("/oauth2/validate", headers={"Authorization": f"OAuth {alice['token']}"})
        assert r.status_code == 401
