"""Helpers shared by the Helix and EventSub tests: apps, tokens, stream rows, a webhook receiver."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from livecast.identity import service
from livecast.ingest.models import Stream
from livecast.store.base import utcnow
from tests.conftest import Server


def headers(client_id: str, token: str) -> dict[str, str]:
    return {"Client-Id": client_id, "Authorization": f"Bearer {token}"}


async def app_with_tokens(server: Server, user_ids: list[str], scopes: list[str] | None = None
                          ) -> tuple[str, str, str, dict[str, tuple[str, str]]]:
    """A new OAuth app, an app token, and a user token (access, refresh) per user."""
    client_id, secret = await server.create_app("helix tests")
    tokens: dict[str, tuple[str, str]] = {}
    async with server.platform.db.session() as db:
        app_token = await service.issue_token(db, client_id, None, [], refresh=False)
        for uid in user_ids:
            issued = await service.issue_token(db, client_id, uid, service.ALL_SCOPES if scopes is None else scopes)
            tokens[uid] = (issued.access_token, issued.refresh_token or "")
    return client_id, secret, app_token.access_token, tokens


async def seed_viewers(server: Server, channel_id: str, n: int) -> None:
    """``n`` distinct viewers this minute, as heartbeats record them: the discovery worker's
    count tick (every 10 s) then agrees with a test's ``viewer_count`` instead of resetting it."""
    from livecast.discovery import viewers as counting

    key = counting.minute_key(channel_id, counting.current_minute())
    for i in range(n):
        await server.platform.bus.hll_add(key, f"test-session-{i}", ttl=counting.KEY_TTL)


async def add_stream(server: Server, user_id: str, viewers: int, **values: Any) -> str:
    await seed_viewers(server, user_id, viewers)
    async with server.platform.db.session() as db:
        row = Stream(user_id=user_id, viewer_count=viewers, status="live", started_at=utcnow(), **values)
        db.add(row)
        await db.flush()
        return row.id


@dataclass
class Receiver:
    """A webhook callback: answers challenges, records notifications, can be told to fail."""

    port: int = 0
    up: bool = True
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/callback", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/callback"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        hdrs = {k: v for k, v in request.headers.items()}
        if hdrs.get("Twitch-Eventsub-Message-Type") == "webhook_callback_verification":
            return web.Response(text=json.loads(body)["challenge"])
        self.received.append((hdrs, body))
        if not self.up:
            return web.Response(status=503)
        return web.Response(status=204)

    def notifications(self) -> list[tuple[dict[str, str], dict[str, Any]]]:
        return [(h, json.loads(b)) for h, b in self.received
                if h.get("Twitch-Eventsub-Message-Type") == "notification"]


async def settle(seconds: float = 0.2) -> None:
    await asyncio.sleep(seconds)
