"""Helix: Twitch's REST API under ``/helix/``, and again under ``/mock/`` for twurple.

One router per area (users, channels, streams...). :func:`install` mounts them twice: the
``/helix`` copy is the documented one (``/helix/openapi.json``), the ``/mock`` copy is
twurple's mock-server layout so ``TWURPLE_MOCK_API_PORT`` can point twurple at Livecast.
"""

from __future__ import annotations

import importlib
from typing import Any

from fastapi import APIRouter, FastAPI

from livecast.api.helix import errors, ratelimit
from livecast.platform import Platform

AREAS = ("users", "channels", "streams", "games", "search", "follows")
# Areas whose service layer lives in another domain; mounted when that domain is present.
OPTIONAL_AREAS = ("chat", "moderation", "whispers", "raids")


def build_router() -> APIRouter:
    router = APIRouter()
    for area in AREAS:
        router.include_router(importlib.import_module(f"livecast.api.helix.{area}").router)
    for area in OPTIONAL_AREAS:
        try:
            module = importlib.import_module(f"livecast.api.helix.{area}")
        except ImportError:
            continue
        router.include_router(module.router)
    return router


def install(app: FastAPI, platform: Platform) -> None:
    router = build_router()
    app.include_router(router, prefix="/helix", tags=["helix"])
    app.include_router(router, prefix="/mock", include_in_schema=False)
    app.add_exception_handler(errors.HelixError, errors.handle)
    ratelimit.install(app, platform.bus, platform.settings.helix_rate_limit)
    _document_400_not_422(app)


def _document_400_not_422(app: FastAPI) -> None:
    """FastAPI documents validation failures as 422; Livecast answers them 400 like Twitch."""
    default = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = default()
        for path, item in schema.get("paths", {}).items():
            if path.startswith("/helix/"):
                for operation in item.values():
                    if isinstance(operation, dict):
                        operation.get("responses", {}).pop("422", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
