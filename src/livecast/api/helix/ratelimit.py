"""Helix rate limiting: a token bucket per client id, shared through the bus backend.

Written as plain ASGI middleware (not ``BaseHTTPMiddleware``) because it runs on every Helix
request and must add ``Ratelimit-*`` headers to every response, errors included. The bucket
lives in the bus (``take_tokens``), so API processes behind one load balancer share it.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from livecast import metrics
from livecast.bus import Bus

PREFIXES = ("/helix/", "/mock/", "/eventsub/")


class RateLimit:
    def __init__(self, app: ASGIApp, bus: Bus, points_per_minute: int) -> None:
        self.app = app
        self.bus = bus
        self.capacity = points_per_minute
        self.refill = points_per_minute / 60.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PREFIXES) or path == "/helix/openapi.json":
            await self.app(scope, receive, send)
            return
        client_id = ""
        for name, value in scope.get("headers", ()):
            if name == b"client-id":
                client_id = value.decode("latin-1")[:64]
                break
        if not client_id:
            peer = scope.get("client") or ("?", 0)
            client_id = f"ip:{peer[0]}"
        allowed, remaining, until_full = await self.bus.take_tokens(
            f"helix:ratelimit:{client_id}", 1, self.capacity, self.refill
        )
        headers = [
            (b"ratelimit-limit", str(self.capacity).encode()),
            (b"ratelimit-remaining", str(max(0, remaining)).encode()),
            (b"ratelimit-reset", str(math.ceil(time.time() + until_full)).encode()),
        ]
        if not allowed:
            metrics.errors.labels("helix_rate_limited").inc()
            body = json.dumps({"error": "Too Many Requests", "status": 429,
                               "message": "Rate limit exceeded; see the Ratelimit-Reset header"}).encode()
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()), *headers]})
            await send({"type": "http.response.body", "body": body})
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                extra = headers
                if message.get("status") == 405:
                    extra = [*headers, (b"allow", _allowed_methods(scope, path).encode())]
                    message["headers"] = [h for h in message.get("headers", []) if h[0].lower() != b"allow"]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _allowed_methods(scope: Scope, path: str) -> str:
    """Starlette's 405 names only the first route matching the path; list every method it has."""
    methods: set[str] = set()
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", []):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path) and getattr(route, "methods", None):
            methods |= set(route.methods)
    return ", ".join(sorted(methods))


def install(app: Any, bus: Bus, points_per_minute: int) -> None:
    app.add_middleware(RateLimit, bus=bus, points_per_minute=points_per_minute)
