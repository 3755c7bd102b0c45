"""Security headers on every HTTP response, the ones a browser needs to be told.

Why a middleware and not per route: a header that each page must remember is a header some
page forgets. ``nosniff`` goes on everything (a JSON error or a segment must never be run as a
script). HTML pages may not be framed by other sites (clickjacking on the dashboard and the
consent page), except ``/embed/...``, which exists to be framed. A route that sets one of these
headers itself keeps its own value.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALWAYS = {"x-content-type-options": "nosniff", "referrer-policy": "strict-origin-when-cross-origin"}
HTML_NOT_FRAMED = {"x-frame-options": "DENY", "content-security-policy": "frame-ancestors 'none'"}
EMBEDDABLE_PREFIX = "/embed/"


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        embeddable = str(scope.get("path", "")).startswith(EMBEDDABLE_PREFIX)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                wanted = dict(ALWAYS)
                if headers.get("content-type", "").startswith("text/html") and not embeddable:
                    wanted.update(HTML_NOT_FRAMED)
                for name, value in wanted.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


def install(app: ASGIApp) -> None:
    app.add_middleware(SecurityHeaders)  # type: ignore[attr-defined]
