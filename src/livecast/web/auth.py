"""Sign-up, sign-in and sign-out pages, and the browser half of OAuth2: consent and device activation.

Every POST form carries a CSRF token: the session's once signed in, a double-submit cookie
before (see :mod:`livecast.web.session`). Sign-in attempts are rate limited per address and
per login through the bus, so the limit holds across processes. ``/oauth2/authorize`` never
redirects anywhere but a URI the app registered, byte for byte: an error about the app itself
is shown as a page, and only errors the app should handle travel back to it.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from livecast import metrics
from livecast.api.oauth import read_params
from livecast.identity import grants, service
from livecast.identity.scopes import describe, parse_scopes, unknown_scopes
from livecast.logs import event
from livecast.platform import Platform
from livecast.web.session import (
    check_csrf,
    check_form_token,
    current_user,
    end_session,
    form_token,
    set_form_cookie,
    start_session,
)
from livecast.web.templating import STATIC, render

log = logging.getLogger("livecast.web.auth")

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_PASSWORD = 1024  # argon2 hashes anything, but a megabyte "password" is a cheap DoS
# Token buckets: (capacity, refill per second). Five tries per login then one a minute; an
# address gets more, since several people may share it.
LOGIN_BUCKET = (5, 1 / 60)
ADDRESS_BUCKET = (20, 20 / 300)


def safe_next(value: str | None) -> str:
    """A same-site relative path to go to after signing in, or ``/`` (no open redirects)."""
    if not value or len(value) > 2000 or not value.startswith("/") or value.startswith("//"):
        return "/"
    if "\\" in value or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def with_params(uri: str, params: dict[str, str], *, fragment: bool = False) -> str:
    """``uri`` with ``params`` added to its query (or as its fragment, for the implicit flow)."""
    encoded = urlencode(params)
    if fragment:
        return f"{uri.split('#', 1)[0]}#{encoded}"
    base = uri.split("#", 1)[0]
    return f"{base}{'&' if '?' in base else '?'}{encoded}"


def request_path(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def login_redirect(next_path: str) -> RedirectResponse:
    return RedirectResponse("/login?" + urlencode({"next": next_path}), status_code=302)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def attempt_wait(platform: Platform, request: Request, login: str, *, charge: bool) -> int:
    """Seconds this address (and login) must wait before another attempt, or 0.

    With ``charge`` the attempt costs a token; without, the buckets are only read. Sign-in
    reads before checking a password and charges only failures, so people who type their
    password right are never locked out by their own successful sign-ins.
    """
    wait = 0.0
    buckets = [(f"auth:addr:{client_address(request)}", ADDRESS_BUCKET)]
    if login:
        buckets.append((f"auth:login:{service.normalize_login(login)[:32]}", LOGIN_BUCKET))
    for key, (capacity, refill) in buckets:
        allowed, remaining, until_full = await platform.bus.take_tokens(key, 1 if charge else 0, capacity, refill)
        if not allowed or (not charge and remaining < 1):
            # Full in ``until_full`` seconds means one token is ``(capacity - 1) / refill`` sooner.
            wait = max(wait, until_full - (capacity - 1) / refill)
    return max(1, math.ceil(wait)) if wait > 0 else 0


async def error_page(request: Request, status: int, title: str, message: str) -> Response:
    return await render(request, "oauth_error.html", status_code=status, title=title, message=message)


# OAuth2 authorization requests ----------------------------------------------------------------

@dataclass(frozen=True)
class AuthorizeRequest:
    """A checked ``/oauth2/authorize`` request: the app, where to answer, and what it asks."""

    client_id: str
    app_name: str
    redirect_uri: str
    response_type: str
    scopes: list[str]
    state: str

    def answer(self, params: dict[str, str]) -> RedirectResponse:
        """Send the user back to the app; errors and results ride in the fragment for ``token``."""
        if self.state:
            params = {**params, "state": self.state}
        return RedirectResponse(with_params(self.redirect_uri, params, fragment=self.response_type == "token"),
                                status_code=302)

    def fields(self) -> dict[str, str]:
        return {"client_id": self.client_id, "redirect_uri": self.redirect_uri,
                "response_type": self.response_type, "scope": " ".join(self.scopes), "state": self.state}


async def check_authorize(
    request: Request, db: AsyncSession, params: dict[str, str]
) -> AuthorizeRequest | Response:
    """Validate an authorization request in the order that keeps redirects safe."""
    app_row = await service.get_app(db, params.get("client_id", ""))
    if app_row is None:
        return await error_page(request, 400, "Unknown application",
                                "The application that sent you here is not registered (invalid client).")
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri or redirect_uri not in (app_row.redirect_uris or []):
        return await error_page(request, 400, "Redirect mismatch",
                                "The redirect URI this application gave does not match one it registered "
                                "(redirect_mismatch).")
    state = params.get("state", "")  # echoed back verbatim: clients compare it byte for byte
    response_type = params.get("response_type", "")
    scopes = parse_scopes(params.get("scope"))
    checked = AuthorizeRequest(app_row.client_id, app_row.name, redirect_uri,
                               response_type if response_type == "token" else "code", scopes, state)
    if response_type not in {"code", "token"}:
        return checked.answer({"error": "unsupported_response_type",
                               "error_description": "response_type must be code or token"})
    bad = unknown_scopes(scopes)
    if bad:
        return checked.answer({"error": "invalid_scope",
                               "error_description": "Invalid scope requested: '" + " ".join(bad) + "'"})
    return checked


def scope_rows(scopes: list[str]) -> list[tuple[str, str]]:
    return [(scope, describe(scope)) for scope in scopes]


# Installation ---------------------------------------------------------------------------------

def install(app: FastAPI, platform: Platform) -> None:
    settings = platform.settings

    if not any(isinstance(r, Mount) and r.path == "/static" for r in app.routes):
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # Sign-up ----------------------------------------------------------------------------------
    async def signup_form(request: Request, *, status: int = 200, errors: list[str] | None = None,
                          values: dict[str, str] | None = None) -> Response:
        response = await render(request, "signup.html", status_code=status, errors=errors or [],
                                values=values or {}, form_csrf=form_token(request),
                                next=safe_next(request.query_params.get("next") or (values or {}).get("next")),
                                password_min_length=settings.password_min_length)
        set_form_cookie(request, response)
        return response

    async def signup_page(request: Request) -> Response:
        if await current_user(request) is not None:
            return RedirectResponse(safe_next(request.query_params.get("next")), status_code=302)
        return await signup_form(request)

    async def signup_submit(request: Request) -> Response:
        form = await read_params(request)
        if form is None:
            return await signup_form(request, status=400, errors=["The form could not be read; try again."])
        values = {k: form.get(k, "").strip() for k in ("login", "email", "display_name", "next")}
        if not check_form_token(request, form.get("csrf_token", "")):
            return await signup_form(request, status=403, values=values,
                                     errors=["This form expired; please submit it again."])
        password = form.get("password", "")
        errors: list[str] = []
        login = service.normalize_login(values["login"])
        if not service.LOGIN_RE.match(login):
            errors.append("Username must be 3-25 characters: letters, digits and underscores.")
        if not EMAIL_RE.match(values["email"]) or len(values["email"]) > 254:
            errors.append("Enter a valid email address.")
        if len(password) < settings.password_min_length:
            errors.append(f"Password must be at least {settings.password_min_length} characters.")
        elif len(password) > MAX_PASSWORD:
            errors.append(f"Password must be at most {MAX_PASSWORD} characters.")
        elif password.lower() == login:
            errors.append("Password must not be your username.")
        if values["display_name"] and values["display_name"].lower() != login:
            errors.append("Display name may only change the capitalisation of your username.")
        if errors:
            return await signup_form(request, status=400, errors=errors, values=values)
        wait = await attempt_wait(platform, request, "", charge=True)  # each sign-up costs an argon2 hash
        if wait:
            return await signup_form(request, status=429, values=values,
                                     errors=[f"Too many attempts, try again in {wait} s"])
        try:
            async with platform.db.session() as db:
                user, _key = await service.create_user(db, login, password=password, email=values["email"],
                                                       display_name=values["display_name"] or None)
        except service.IdentityError as exc:
            return await signup_form(request, status=400, errors=[_signup_message(exc)], values=values)
        except IntegrityError:  # the same login, signed up a moment ago by someone else
            return await signup_form(request, status=400, errors=["That username is taken."], values=values)
        event(log, "user signed up", login=user.login, user_id=user.id)
        response = RedirectResponse(safe_next(values["next"]), status_code=303)
        await start_session(request, response, user)
        return response

    # Sign-in ----------------------------------------------------------------------------------
    async def login_form(request: Request, *, status: int = 200, error: str = "", login: str = "",
                         next_path: str | None = None, headers: dict[str, str] | None = None) -> Response:
        response = await render(request, "login.html", status_code=status, headers=headers, error=error,
                                login=login, form_csrf=form_token(request),
                                next=safe_next(next_path or request.query_params.get("next")))
        set_form_cookie(request, response)
        return response

    async def login_page(request: Request) -> Response:
        if await current_user(request) is not None:
            return RedirectResponse(safe_next(request.query_params.get("next")), status_code=302)
        return await login_form(request)

    async def login_submit(request: Request) -> Response:
        form = await read_params(request)
        if form is None:
            return await login_form(request, status=400, error="The form could not be read; try again.")
        login, password, next_path = form.get("login", "").strip()[:64], form.get("password", ""), form.get("next")
        if not check_form_token(request, form.get("csrf_token", "")):
            metrics.web_logins.labels("csrf").inc()
            return await login_form(request, status=403, login=login, next_path=next_path,
                                    error="This form expired; please sign in again.")
        wait = await attempt_wait(platform, request, login, charge=False)
        if wait:
            metrics.web_logins.labels("limited").inc()
            return await login_form(request, status=429, login=login, next_path=next_path,
                                    error=f"Too many attempts, try again in {wait} s",
                                    headers={"Retry-After": str(wait)})
        user = None
        if login and password and len(password) <= MAX_PASSWORD:
            async with platform.db.session() as db:
                user = await service.authenticate(db, login, password)
        if user is None:
            await attempt_wait(platform, request, login, charge=True)
            metrics.web_logins.labels("failed").inc()
            event(log, "sign-in failed", login=login, address=client_address(request))
            return await login_form(request, status=400, login=login, next_path=next_path,
                                    error="Incorrect username or password.")
        metrics.web_logins.labels("ok").inc()
        response = RedirectResponse(safe_next(next_path), status_code=303)
        await start_session(request, response, user)
        return response

    async def logout(request: Request) -> Response:
        form = await read_params(request)
        if await current_user(request) is None:
            return RedirectResponse("/", status_code=303)
        if form is None or not await check_csrf(request, form.get("csrf_token", "")):
            return await error_page(request, 403, "Sign-out refused",
                                    "The form was missing its security token. Use the Log Out button.")
        response = RedirectResponse("/", status_code=303)
        await end_session(request, response)
        return response

    # OAuth2 authorize and consent ------------------------------------------------------------
    async def approve(db: AsyncSession, checked: AuthorizeRequest, user_id: str) -> RedirectResponse:
        """The user said yes (now or before): send the app its code or its token."""
        app_row = await service.get_app(db, checked.client_id)
        assert app_row is not None  # check_authorize found it in this transaction
        scope = " ".join(checked.scopes)
        if checked.response_type == "code":
            code = await grants.create_code(db, app_row, user_id, checked.scopes, checked.redirect_uri)
            result = {"code": code, "scope": scope}
        else:
            issued = await service.issue_token(db, app_row.client_id, user_id, checked.scopes,
                                               lifetime=settings.token_lifetime, refresh=False)
            result = {"access_token": issued.access_token, "scope": scope, "token_type": "bearer"}
        metrics.oauth_tokens_issued.labels("implicit" if checked.response_type == "token" else "code").inc()
        event(log, "oauth authorized", client_id=checked.client_id, user_id=user_id, flow=checked.response_type)
        return checked.answer(result)

    async def authorize_page(request: Request) -> Response:
        params = dict(request.query_params)
        async with platform.db.session() as db:
            checked = await check_authorize(request, db, params)
            if not isinstance(checked, AuthorizeRequest):
                return checked
            user = await current_user(request)
            if user is None:
                return login_redirect(request_path(request))
            # As on Twitch: an app the user already allowed these scopes skips the prompt
            # unless it asks for force_verify.
            if params.get("force_verify", "").lower() != "true" and await grants.has_authorized(
                db, checked.client_id, user.id, checked.scopes
            ):
                return await approve(db, checked, user.id)
        return await render(request, "consent.html", app_name=checked.app_name, scopes=scope_rows(checked.scopes),
                            action=request.url.path, hidden=checked.fields())

    async def authorize_submit(request: Request) -> Response:
        form = await read_params(request)
        if form is None:
            return await error_page(request, 400, "Bad request", "The form could not be read.")
        user = await current_user(request)
        if user is None:
            fields = {k: form.get(k, "") for k in ("client_id", "redirect_uri", "response_type", "scope", "state")}
            return login_redirect(f"{request.url.path}?{urlencode(fields)}")
        if not await check_csrf(request, form.get("csrf_token", "")):
            return await error_page(request, 403, "Authorization refused",
                                    "The form was missing its security token; start again from the app.")
        async with platform.db.session() as db:
            checked = await check_authorize(request, db, form)
            if not isinstance(checked, AuthorizeRequest):
                return checked
            if form.get("decision") != "authorize":
                return checked.answer({"error": "access_denied", "error_description": "The user denied you access"})
            return await approve(db, checked, user.id)

    # Device activation -----------------------------------------------------------------------
    async def activate_page(request: Request) -> Response:
        user = await current_user(request)
        if user is None:
            return login_redirect(request_path(request))
        code = grants.normalize_user_code(request.query_params.get("device-code", ""))
        if not code:
            return await render(request, "activate.html", code="", error="", done="")
        async with platform.db.session() as db:
            grant = await grants.pending_device(db, code)
            app_row = await service.get_app(db, grant.client_id) if grant is not None else None
        if grant is None or app_row is None:
            return await render(request, "activate.html", status_code=400, code=code, done="",
                                error="That code is not valid or has expired.")
        return await render(request, "consent.html", app_name=app_row.name, scopes=scope_rows(list(grant.scopes)),
                            action="/activate", hidden={"user_code": code}, device_code=code)

    async def activate_submit(request: Request) -> Response:
        form = await read_params(request)
        user = await current_user(request)
        if user is None:
            return login_redirect("/activate")
        if form is None or not await check_csrf(request, form.get("csrf_token", "")):
            return await error_page(request, 403, "Activation refused",
                                    "The form was missing its security token; enter the code again.")
        code = grants.normalize_user_code(form.get("user_code", ""))
        approve = form.get("decision") == "authorize"
        try:
            async with platform.db.session() as db:
                grant = await grants.decide_device(db, code, user.id, approve=approve)
                app_row = await service.get_app(db, grant.client_id)
        except service.IdentityError as exc:
            return await render(request, "activate.html", status_code=400, code=code, error=exc.message, done="")
        name = app_row.name if app_row is not None else "The device"
        event(log, "device activation", client_id=grant.client_id, user_id=user.id, approved=approve)
        done = f"{name} is now connected to your account." if approve else f"You denied {name} access."
        return await render(request, "activate.html", code="", error="", done=done)

    routes = [
        ("/signup", signup_page, "GET"), ("/signup", signup_submit, "POST"),
        ("/login", login_page, "GET"), ("/login", login_submit, "POST"),
        ("/logout", logout, "POST"),
        ("/oauth2/authorize", authorize_page, "GET"), ("/oauth2/authorize", authorize_submit, "POST"),
        ("/activate", activate_page, "GET"), ("/activate", activate_submit, "POST"),
    ]
    for path, endpoint, method in routes:
        app.add_api_route(path, endpoint, methods=[method], include_in_schema=False)


def _signup_message(exc: service.IdentityError) -> str:
    return {"login_taken": "That username is taken."}.get(exc.code, exc.message)

