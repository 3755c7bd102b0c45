"""Helix: Twitch's REST API under ``/helix/``, and again under ``/mock/`` for twurple.

One router per area (users, channels, streams...). :func:`install` mounts them twice: the
``/helix`` copy is the documented one (``/helix/openapi.json``), the ``/mock`` copy is
twurple's mock-server layout so ``TWURPLE_MOCK_API_PORT`` can point twurple at Livecast.
"""

from __future__ import annotations

import importlib
import types
import typing
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request

from livecast.api.helix import errors, ratelimit
from livecast.platform import Platform

AREAS = ("users", "channels", "streams", "games", "search", "follows")
# Areas whose service layer lives in another domain; mounted when that domain is present.
OPTIONAL_AREAS = ("chat", "moderation", "whispers", "raids")


_SINGLE: dict[int, frozenset[str]] = {}


def _is_sequence(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_sequence(arg) for arg in typing.get_args(annotation))
    return origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set, frozenset)


def _single_valued_names(route: Any) -> frozenset[str]:
    names = _SINGLE.get(id(route))
    if names is None:
        fields: list[Any] = []
        stack = [route.dependant]
        while stack:
            dependant = stack.pop()
            fields.extend(dependant.query_params)
            stack.extend(dependant.dependencies)
        names = frozenset(f.alias for f in fields if not _is_sequence(f.field_info.annotation))
        _SINGLE[id(route)] = names
    return names


async def _one_value_each(request: Request) -> None:
    """``?after=a&after=b`` is ambiguous: FastAPI would silently keep the last value, which
    pages from the wrong place. Twitch's list parameters (``id``, ``user_login``...) repeat;
    every other parameter must appear once."""
    route = request.scope.get("route")
    if route is None or not hasattr(route, "dependant"):
        return
    single = _single_valued_names(route)
    seen: set[str] = set()
    for key, _ in request.query_params.multi_items():
        if key in single:
            if key in seen:
                raise errors.bad_request(f"The parameter {key} may be given only once")
            seen.add(key)


def build_router() -> APIRouter:
    router = APIRouter(dependencies=[Depends(_one_value_each)])
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
