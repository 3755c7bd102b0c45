"""The HTTP application: one Starlette/FastAPI app that each domain adds its routes to.

Each entry of :data:`COMPONENTS` names a module with ``install(app, platform)``; the order
matters only where paths overlap (the web pages' catch-all ``/{login}`` goes last).

A process mounts only the components of the roles it runs (:data:`COMPONENT_ROLES`), so that a
``chat`` process does not answer Helix or render pages with a half-configured platform, and an
edge that sends a path to the wrong pool gets a clear 404 instead of a page that mostly works.
The default all-roles process mounts every component, in the same order as before.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from livecast import __version__, metrics
from livecast.platform import Platform

COMPONENTS: list[str] = [
    "livecast.api.ops",
    "livecast.delivery.origin",
    "livecast.delivery.routing",
    "livecast.api.oauth",
    "livecast.web.auth",
    "livecast.api.helix",
    "livecast.api.eventsub.routes",
    "livecast.subscriptions.routes",
    "livecast.chat.web",
    "livecast.discovery.routes",
    "livecast.community.routes",
    "livecast.vod.routes",  # Helix videos and clips, VOD playback, clip files and pages
    "livecast.web.pages",  # keep last: /{login} matches any single path segment
]


# Which roles mount a component (any one of them is enough). ``ops`` (``/healthz``,
# ``/metrics``) is in every process, because load balancers and Prometheus probe every one.
# The sign-in and consent pages go with ``api`` too, since ``/oauth2/authorize`` is where OAuth
# clients send users. Components not listed here mount with :data:`DEFAULT_COMPONENT_ROLES`.
ALL = ("api", "web", "chat", "ingest", "worker")
COMPONENT_ROLES: dict[str, tuple[str, ...]] = {
    "livecast.api.ops": ALL,
    "livecast.delivery.origin": ("ingest",),
    "livecast.delivery.routing": ("api",),
    "livecast.api.oauth": ("api",),
    "livecast.web.auth": ("web", "api"),
    "livecast.api.helix": ("api",),
    "livecast.api.eventsub.routes": ("api",),
    "livecast.subscriptions.routes": ("api", "web"),
    "livecast.chat.web": ("chat",),
    "livecast.discovery.routes": ("web",),
    "livecast.web.pages": ("web",),
}
DEFAULT_COMPONENT_ROLES: tuple[str, ...] = ("api", "web")


def components_for(roles: tuple[str, ...]) -> list[str]:
    """The components a process with ``roles`` mounts, in :data:`COMPONENTS` order."""
    return [name for name in COMPONENTS
            if any(role in roles for role in COMPONENT_ROLES.get(name, DEFAULT_COMPONENT_ROLES))]


class RequestMetrics:
    """Counts every HTTP response by route and status, and times it to its first byte.

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware``
    runs the rest of the app in a task group of its own and relays the response through a
    memory stream, a fixed cost on every request that profiling put at about a tenth of a
    one-row Helix read. Recorded at ``http.response.start``, the moment ``call_next``
    returned before, so the figures mean what they meant.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # prometheus_client's labels() validates and locks on every call; the children for a
        # (route, status) pair never change, so each pair is looked up once.
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                name = getattr(scope.get("route"), "path", "unmatched")
                status = int(message["status"])
                children = self._children.get((name, status))
                if children is None:
                    children = (metrics.http_requests.labels(name, str(status)), metrics.http_latency.labels(name))
                    self._children[(name, status)] = children
                children[0].inc()
                children[1].observe(time.perf_counter() - start)
            await send(message)

        await self.app(scope, receive, timed_send)


def create_app(platform: Platform) -> FastAPI:
    app = FastAPI(
        title="Livecast",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url="/helix/openapi.json",
    )
    app.state.platform = platform

    app.add_middleware(RequestMetrics)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return error_response(400, f"Invalid parameter {loc}: {first.get('msg', 'malformed')}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        if _is_backend_outage(exc):
            metrics.errors.labels("backend_unavailable").inc()
            return error_response(503, "A backend is unavailable; retry shortly", headers={"Retry-After": "5"})
        metrics.errors.labels("http").inc()
        import logging

        logging.getLogger("livecast.http").exception("unhandled error on %s", request.url.path)
        return error_response(500, "Internal Server Error")

    for name in components_for(platform.settings.roles):
        importlib.import_module(name).install(app, platform)
    return app


_REASONS = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    409: "Conflict", 410: "Gone", 413: "Payload Too Large", 422: "Unprocessable Entity",
    425: "Too Early", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Twitch's error envelope: ``{"error": reason, "status": code, "message": text}``."""
    return JSONResponse(
        {"error": _REASONS.get(status, "Error"), "status": status, "message": message},
        status_code=status,
        headers=headers,
    )


def _is_backend_outage(exc: BaseException) -> bool:
    """Database or Redis unreachable (:mod:`livecast.outage`, shared with chat and ingest)."""
    from livecast.outage import is_backend_outage

    return is_backend_outage(exc)


def text_response(body: str, status: int = 200) -> PlainTextResponse:
    return PlainTextResponse(body, status_code=status)
