"""HEAD for media and playlists: answered as the GET would be, without the body.

CDNs and players probe objects with HEAD (size, type, caching headers) and FastAPI routes
declared with ``GET`` answer it 405. Rewriting the method for the application is enough:
uvicorn still knows the request was HEAD and sends the headers only.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...] = ("/hls/",)) -> None:
        self.app = app
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD" and scope["path"].startswith(self.prefixes):
            scope = dict(scope, method="GET")
        await self.app(scope, receive, send)
