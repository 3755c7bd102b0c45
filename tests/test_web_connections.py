"""Settings → Connections: a user sees the apps they authorized and can cut one off, and the
app hears about it through EventSub's ``user.authorization.revoke``."""

from __future__ import annotations

import asyncio
import json

import httpx

from tests.conftest import Server
from tests.test_web_pages import _first, client, signed_in


async def test_user_disconnects_an_app(server: Server) -> None:
    alice = await server.create_user("alice")
    bob = await server.create_user("bob")
    cookie, csrf = await signed_in(server, alice["user_id"])
    async with client(server) as anon:
        assert (await anon.get("/settings/connections")).status_code == 303  # sign in first
    async with client(server, cookie) as http:
        page = await http.get("/settings/connections")
        assert page.status_code == 200
        assert f'data-client-id="{alice["client_id"]}"' in page.text and "chat:read" in page.text

        url = f"/settings/connections/{alice['client_id']}/disconnect"
        assert (await http.post(url, data={"csrf": "forged"})).status_code == 403
        assert (await http.post("/settings/connections/not-an-app/disconnect", data={"csrf": csrf})).status_code == 404

        events = await server.platform.bus.subscribe("event.user.authorization.revoke")
        done = await http.post(url, data={"csrf": csrf})
        assert done.status_code == 200 and "Disconnected" in done.text
        assert f'data-client-id="{alice["client_id"]}"' not in done.text
        revoked = json.loads(await asyncio.wait_for(_first(events), 10))
        await events.close()
        assert revoked == {"client_id": alice["client_id"], "user_id": alice["user_id"], "user_login": "alice",
                           "user_name": "alice"}

    async with httpx.AsyncClient(base_url=server.http_url) as api:
        gone = await api.get("/oauth2/validate", headers={"Authorization": f"OAuth {alice['token']}"})
        assert gone.status_code == 401
        # someone else's authorization of the same app is untouched
        kept = await api.get("/oauth2/validate", headers={"Authorization": f"OAuth {bob['token']}"})
        assert kept.status_code == 200
