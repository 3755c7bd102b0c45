"""OAuth2 endpoints with Twitch's shapes: ``/oauth2/token``, ``/validate``, ``/revoke``.

Errors follow id.twitch.tv: ``{"status": 400, "message": "invalid client secret"}``.
The authorization-code, implicit and device flows live beside these (see the issue).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import FormData

from livecast.identity import service
from livecast.identity.scopes import parse_scopes, unknown_scopes
from livecast.platform import Platform

MAX_FORM = 16 * 1024


def oauth_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": status, "message": message}, status_code=status)


async def read_params(request: Request) -> dict[str, str] | None:
    """Query string merged with a urlencoded or multipart body; None when the body is malformed."""
    params: dict[str, str] = dict(request.query_params)
    if request.method == "POST":
        body = await request.body()
        if len(body) > MAX_FORM:
            return None
        ctype = request.headers.get("content-type", "")
        if body and ("urlencoded" in ctype or "multipart" in ctype):
            try:
                form: FormData = await request.form()
            except Exception:
                return None
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        elif body and "json" in ctype:
            import json

            try:
                doc: Any = json.loads(body)
            except ValueError:
                return None
            if not isinstance(doc, dict):
                return None
            params.update({k: str(v) for k, v in doc.items()})
    return params


def bearer(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() in {"oauth", "bearer"}:
        return value.strip()
    return ""


def install(app: FastAPI, platform: Platform) -> None:
    settings = platform.settings

    async def token(request: Request) -> Response:
        params = await read_params(request)
        if params is None:
            return oauth_error(400, "malformed request body")
        grant = params.get("grant_type", "")
        client_id = params.get("client_id", "")
        async with platform.db.session() as db:
            if grant == "client_credentials":
                app_row = await service.check_client(db, client_id, params.get("client_secret", ""))
                if app_row is None:
                    return oauth_error(403 if await service.get_app(db, client_id) else 400,
                                       "invalid client secret" if await service.get_app(db, client_id)
                                       else "invalid client")
                scopes = parse_scopes(params.get("scope"))
                bad = unknown_scopes(scopes)
                if bad:
                    return oauth_error(400, "invalid scope requested: '" + " ".join(bad) + "'")
                issued = await service.issue_token(db, app_row.client_id, None, scopes,
                                                   lifetime=max(settings.token_lifetime, 5_000_000),
                                                   refresh=False)
                return JSONResponse({"access_token": issued.access_token, "expires_in": issued.expires_in,
                                     "token_type": "bearer"})
            if grant == "refresh_token":
                app_row = await service.check_client(db, client_id, params.get("client_secret", ""))
                if app_row is None:
                    return oauth_error(400, "invalid client")
                issued2 = await service.refresh_token(db, app_row, params.get("refresh_token", ""),
                                                      settings.token_lifetime)
                if issued2 is None:
                    return oauth_error(400, "Invalid refresh token")
                return JSONResponse({"access_token": issued2.access_token, "refresh_token": issued2.refresh_token,
                                     "expires_in": issued2.expires_in, "scope": issued2.scopes,
                                     "token_type": "bearer"})
        return oauth_error(400, "invalid grant type" if grant else "missing grant type")

    async def validate(request: Request) -> Response:
        raw = bearer(request)
        if not raw:
            return oauth_error(401, "missing authorization token")
        async with platform.db.session() as db:
            info = await service.validate_token(db, raw)
        if info is None:
            return oauth_error(401, "invalid access token")
        body: dict[str, Any] = {"client_id": info.client_id, "scopes": list(info.scopes),
                                "expires_in": info.expires_in()}
        if info.user_id:
            body.update(login=info.login, user_id=info.user_id)
        return JSONResponse(body)

    async def revoke(request: Request) -> Response:
        params = await read_params(request)
        if params is None:
            return oauth_error(400, "malformed request body")
        client_id, raw = params.get("client_id", ""), params.get("token", "")
        if not client_id:
            return oauth_error(400, "missing client id")
        async with platform.db.session() as db:
            if await service.get_app(db, client_id) is None:
                return oauth_error(404, "client does not exist")
            if not await service.revoke_token(db, client_id, raw):
                return oauth_error(400, "Invalid token")
        return Response(status_code=200)

    for prefix in ("/oauth2", "/auth"):
        app.add_api_route(f"{prefix}/token", token, methods=["POST"], include_in_schema=False)
        app.add_api_route(f"{prefix}/validate", validate, methods=["GET"], include_in_schema=False)
        app.add_api_route(f"{prefix}/revoke", revoke, methods=["POST"], include_in_schema=False)
