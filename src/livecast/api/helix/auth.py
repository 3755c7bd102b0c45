"""Who is calling: ``Client-Id`` + ``Authorization: Bearer`` checked the way Twitch checks them.

Every Helix route depends on :func:`requires`, which validates the token, insists that the
Client-Id header names the token's own app (Twitch answers 401 otherwise), tells app tokens
from user tokens, checks scopes, and refuses query parameters the route does not declare
(so a typo such as ``user_logn`` is a clear 400, not a silently unfiltered list).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from livecast.api.helix.errors import HelixError, bad_request, unauthorized
from livecast.identity.service import TokenInfo, validate_token
from livecast.platform import Platform

_bearer = HTTPBearer(auto_error=False, description="OAuth access token (app or user)")
_client_id = APIKeyHeader(name="Client-Id", auto_error=False, description="The token's application")


@dataclass(frozen=True)
class Caller:
    """A validated request: the token's grant and the Client-Id it came with."""

    token: TokenInfo
    platform: Platform

    @property
    def client_id(self) -> str:
        return self.token.client_id

    @property
    def user_id(self) -> str | None:
        return self.token.user_id

    def has(self, scope: str) -> bool:
        return scope in self.token.scopes

    def require_user(self) -> str:
        if self.token.user_id is None:
            raise unauthorized("The Authorization header is required and must specify a user access token")
        return self.token.user_id

    def require_scope(self, *scopes: str) -> None:
        """At least one of ``scopes`` (Twitch lists alternatives for several endpoints)."""
        if scopes and not any(s in self.token.scopes for s in scopes):
            raise unauthorized(f"Missing scope: {' or '.join(scopes)}")


_allowed_cache: dict[int, frozenset[str]] = {}

# Validated tokens, briefly: every Helix call needs the grant, and two queries per request
# would dominate the cheap endpoints. A revoked token keeps working for at most this long
# on a process that saw it recently (Twitch also validates asynchronously).
TOKEN_CACHE_S = 2.0
_TOKEN_CACHE_MAX = 10_000


async def _validated(platform: Platform, raw: str) -> TokenInfo | None:
    cache: dict[str, tuple[float, TokenInfo | None]] = platform.state.setdefault("helix.tokens", {})
    now = time.monotonic()
    hit = cache.get(raw)
    if hit is not None and hit[0] > now:
        info = hit[1]
        if info is not None and info.expires_at is not None and info.expires_in() <= 0:
            return None
        return info
    async with platform.db.session() as db:
        info = await validate_token(db, raw)
    if len(cache) >= _TOKEN_CACHE_MAX:
        cache.clear()
    cache[raw] = (now + TOKEN_CACHE_S, info)
    return info


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _allowed_params(request: Request) -> frozenset[str] | None:
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return None
    key = id(route)
    allowed = _allowed_cache.get(key)
    if allowed is None:
        allowed = frozenset(_query_names(route.dependant))
        _allowed_cache[key] = allowed
    return allowed


def requires(*scopes: str, user: bool = False) -> Callable[..., Coroutine[Any, Any, Caller]]:
    """A dependency: a valid token, a user token when ``user``, one of ``scopes`` when given."""

    async def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
        client_id: str | None = Depends(_client_id),
    ) -> Caller:
        allowed = _allowed_params(request)
        if allowed is not None:
            for name in request.query_params:
                if name not in allowed:
                    raise bad_request(f"The parameter \"{name}\" is not supported by this endpoint")
        header = request.headers.get("authorization", "")
        scheme, _, raw = header.partition(" ")
        if not header:
            raise unauthorized("OAuth token is missing")
        if scheme.lower() != "bearer" or not raw.strip():
            raise unauthorized("Invalid OAuth token")
        if not client_id:
            raise unauthorized("Client ID is missing")
        platform: Platform = request.app.state.platform
        info = await _validated(platform, raw.strip())
        if info is None:
            raise unauthorized("Invalid OAuth token")
        if info.client_id != client_id:
            raise unauthorized("Client ID and OAuth token do not match")
        caller = Caller(info, platform)
        if user:
            caller.require_user()
        caller.require_scope(*scopes)
        return caller

    return dependency


def check_ids(name: str, values: list[str], limit: int = 100) -> list[str]:
    """Twitch caps repeated id/login parameters at 100 in total."""
    if len(values) > limit:
        raise bad_request(f"The parameter \"{name}\" may be specified at most {limit} times")
    return values


__all__ = ["Caller", "HelixError", "check_ids", "requires"]
