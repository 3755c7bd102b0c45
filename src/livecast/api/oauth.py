"""OAuth2 endpoints with Twitch's shapes: ``/oauth2/token``, ``/validate``, ``/revoke``, ``/device``.

Errors follow id.twitch.tv: ``{"status": 400, "message": "invalid client secret"}``. Every
refusal is decided before anything is added to the session, so a refused request writes
nothing. The browser side of the flows (``/oauth2/authorize``, ``/activate``) is in
:mod:`livecast.web.auth`, next to the sign-in pages it depends on.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from livecast import metrics
from livecast.identity import grants, service
from livecast.identity.models import OAuthApp
from livecast.identity.scopes import parse_scopes, unknown_scopes
from livecast.platform import Platform

MAX_FORM = 16 * 1024
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# App tokens from client credentials live about 60 days on Twitch.
APP_TOKEN_LIFETIME = 5_000_000
# Refused credentials (client secret, refresh token, code, device code) per address before its
# token requests are refused unchecked for the window. The secrets are long random strings, so
# this bounds the work one stranger causes rather than stopping a guess that cannot succeed.
# Addresses in LIVECAST_LIMIT_EXEMPT_IPS (loopback by default) are not counted.
FAILURE_LIMIT = 30
FAILURE_WINDOW_S = 60
_CREDENTIAL_ERRORS = frozenset({"invalid_grant", "code_reused", "invalid_device_code"})
_CREDENTIAL_MESSAGES = frozenset({"invalid client", "invalid client secret", "Invalid refresh token"})


def oauth_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": status, "message": message}, status_code=status)


async def read_params(request: Request) -> dict[str, str] | None:
    """Query string merged with a urlencoded, multipart or JSON body; None when the body is malformed."""
    params: dict[str, str] = dict(request.query_params)
    if request.method == "POST":
        body = await request.body()
        if len(body) > MAX_FORM:
            return None
        ctype = request.headers.get("content-type", "")
        if body and ("urlencoded" in ctype or "multipart" in ctype):
            if "urlencoded" in ctype:
                try:
                    body.decode("ascii")  # percent-encoding is ASCII; anything else is not a form
                except UnicodeDecodeError:
                    return None
            try:
                form: FormData = await request.form()
            except Exception:
                return None
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        elif body and "json" in ctype:
            try:
                doc: Any = json.loads(body)
            except ValueError:
                return None
            if not isinstance(doc, dict):
                return None
            params.update({str(k): str(v) for k, v in doc.items()})
    return params


def bearer(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() in {"oauth", "bearer"}:
        return value.strip()
    return ""


def scope_error(bad: list[str]) -> JSONResponse:
    return oauth_error(400, "invalid scope requested: '" + " ".join(bad) + "'")


async def confidential_client(db: AsyncSession, params: dict[str, str]) -> OAuthApp | JSONResponse:
    """The app named by ``client_id`` whose ``client_secret`` matches, or Twitch's refusal."""
    client_id = params.get("client_id", "")
    if not client_id:
        return oauth_error(400, "missing client id")
    app_row = await service.get_app(db, client_id)
    if app_row is None:
        return oauth_error(400, "invalid client")
    if await service.check_client(db, client_id, params.get("client_secret", "")) is None:
        return oauth_error(403, "invalid client secret")
    return app_row


async def public_client(db: AsyncSession, params: dict[str, str]) -> OAuthApp | JSONResponse:
    """Device-flow clients may be public (no secret); a secret that is sent must still match."""
    if params.get("client_secret"):
        return await confidential_client(db, params)
    client_id = params.get("client_id", "")
    if not client_id:
        return oauth_error(400, "missing client id")
    app_row = await service.get_app(db, client_id)
    return app_row if app_row is not None else oauth_error(400, "invalid client")


def token_body(issued: service.IssuedToken) -> dict[str, Any]:
    body: dict[str, Any] = {"access_token": issued.access_token, "expires_in": issued.expires_in}
    if issued.refresh_token:
        body["refresh_token"] = issued.refresh_token
    body.update(scope=issued.scopes, token_type="bearer")
    return body


def install(app: FastAPI, platform: Platform) -> None:
    settings = platform.settings

    async def client_credentials(db: AsyncSession, params: dict[str, str]) -> Response:
        client = await confidential_client(db, params)
        if isinstance(client, JSONResponse):
            return client
        scopes = parse_scopes(params.get("scope"))
        bad = unknown_scopes(scopes)
        if bad:
            return scope_error(bad)
        issued = await service.issue_token(db, client.client_id, None, scopes,
                                           lifetime=max(settings.token_lifetime, APP_TOKEN_LIFETIME),
                                           refresh=False)
        return JSONResponse({"access_token": issued.access_token, "expires_in": issued.expires_in,
                             "token_type": "bearer"})

    async def refresh(db: AsyncSession, params: dict[str, str]) -> Response:
        client = await confidential_client(db, params)
        if isinstance(client, JSONResponse):
            return oauth_error(400, "invalid client") if client.status_code == 400 else client
        issued = await service.refresh_token(db, client, params.get("refresh_token", ""), settings.token_lifetime)
        if issued is None:
            return oauth_error(400, "Invalid refresh token")
        return JSONResponse(token_body(issued))

    async def authorization_code(db: AsyncSession, params: dict[str, str]) -> Response:
        client = await confidential_client(db, params)
        if isinstance(client, JSONResponse):
            return client
        if not params.get("code"):
            return oauth_error(400, "missing code")
        issued = await grants.redeem_code(db, client, params["code"], params.get("redirect_uri", ""),
                                          lifetime=settings.token_lifetime)
        return JSONResponse(token_body(issued))

    async def device_code(db: AsyncSession, params: dict[str, str]) -> Response:
        client = await public_client(db, params)
        if isinstance(client, JSONResponse):
            return client
        issued = await grants.redeem_device(db, client, params.get("device_code", ""),
                                            lifetime=settings.token_lifetime)
        return JSONResponse(token_body(issued))

    handlers = {
        "client_credentials": client_credentials,
        "refresh_token": refresh,
        "authorization_code": authorization_code,
        DEVICE_GRANT: device_code,
    }

    async def token(request: Request) -> Response:
        address = request.client.host if request.client else "?"
        counted = address not in settings.limit_exempt_ips
        fails_key = f"oauth:fail:{address}"
        if counted:
            fails = await platform.bus.get(fails_key)
            if fails is not None and int(fails) >= FAILURE_LIMIT:
                metrics.oauth_refusals.labels("too_many_failures").inc()
                return JSONResponse({"status": 429, "message": "too many failed attempts; try again later"},
                                    status_code=429, headers={"Retry-After": str(FAILURE_WINDOW_S)})
        params = await read_params(request)
        if params is None:
            metrics.oauth_refusals.labels("malformed").inc()
            return oauth_error(400, "malformed request body")
        grant = params.get("grant_type", "")
        handler = handlers.get(grant)
        if handler is None:
            return oauth_error(400, "invalid grant type" if grant else "missing grant type")
        async with platform.db.session() as db:
            try:
                response = await handler(db, params)
            except service.IdentityError as exc:
                # Committed on purpose: a replayed code has just revoked its tokens.
                metrics.oauth_refusals.labels(exc.code).inc()
                if counted and exc.code in _CREDENTIAL_ERRORS:
                    await platform.bus.incr(fails_key, 1, ttl=FAILURE_WINDOW_S)
                return oauth_error(400, exc.message)
        if counted and response.status_code in {400, 403} \
                and json.loads(bytes(response.body)).get("message") in _CREDENTIAL_MESSAGES:
            await platform.bus.incr(fails_key, 1, ttl=FAILURE_WINDOW_S)
        if response.status_code == 200:
            metrics.oauth_tokens_issued.labels("device_code" if grant == DEVICE_GRANT else grant).inc()
        else:
            metrics.oauth_refusals.labels("client").inc()
        return response

    async def device(request: Request) -> Response:
        params = await read_params(request)
        if params is None:
            return oauth_error(400, "malformed request body")
        async with platform.db.session() as db:
            client = await public_client(db, params)
            if isinstance(client, JSONResponse):
                return client
            scopes = parse_scopes(params.get("scopes", params.get("scope")))
            bad = unknown_scopes(scopes)
            if bad:
                return scope_error(bad)
            raw, user_code = await grants.start_device(db, client, scopes)
        return JSONResponse({
            "device_code": raw,
            "expires_in": grants.DEVICE_LIFETIME,
            "interval": grants.DEVICE_INTERVAL,
            "user_code": user_code,
            "verification_uri": f"{platform.base_url()}/activate?device-code={user_code}",
        })

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
        app.add_api_route(f"{prefix}/device", device, methods=["POST"], include_in_schema=False)
