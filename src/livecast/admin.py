"""``livecast admin`` actions: thin wrappers over the identity service, JSON-friendly."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from livecast.config import Settings
from livecast.identity import service
from livecast.identity.models import Channel, User
from livecast.identity.scopes import parse_scopes, unknown_scopes
from livecast.store.db import Database


class AdminError(Exception):
    pass


async def run(fn: Callable[..., Awaitable[dict[str, Any]]], args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    try:
        await db.upgrade()
        async with db.session() as session:
            return await fn(session, args, settings)
    finally:
        await db.close()


async def _user(db: AsyncSession, login: str) -> User:
    user = await service.get_user_by_login(db, login or "")
    if user is None:
        raise AdminError(f"no user {login!r}")
    return user


async def create_user(db: AsyncSession, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    btype = "partner" if args.partner else "affiliate" if args.affiliate else ""
    try:
        user, key = await service.create_user(
            db, args.login, password=args.password, email=args.email, broadcaster_type=btype,
            user_type="staff" if args.staff else "",
        )
    except service.IdentityError as exc:
        raise AdminError(exc.message) from None
    app = await service.ensure_admin_app(db)
    token = await service.issue_token(db, app.client_id, user.id, service.ALL_SCOPES,
                                      lifetime=settings.token_lifetime)
    return {"user_id": user.id, "login": user.login, "stream_key": key, "token": token.access_token,
            "refresh_token": token.refresh_token, "client_id": app.client_id,
            "broadcaster_type": user.broadcaster_type}


async def create_app(db: AsyncSession, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    owner = (await _user(db, args.owner)).id if args.owner else None
    try:
        app, secret = await service.create_app(db, args.name, args.redirect_uri or None, owner)
    except service.IdentityError as exc:
        raise AdminError(exc.message) from None
    return {"client_id": app.client_id, "client_secret": secret, "name": app.name,
            "redirect_uris": app.redirect_uris}


async def issue_token(db: AsyncSession, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    raw = args.scopes.replace(",", " ")
    scopes = service.ALL_SCOPES if raw.strip() == "all" else parse_scopes(raw)
    bad = unknown_scopes(scopes)
    if bad:
        raise AdminError(f"unknown scope(s): {', '.join(bad)}")
    if args.client_id:
        app = await service.get_app(db, args.client_id)
        if app is None:
            raise AdminError(f"no app with client id {args.client_id!r}")
    else:
        app = await service.ensure_admin_app(db)
    user_id = None
    if not args.app_token:
        if not args.login:
            raise AdminError("name a user (LOGIN) or pass --app-token")
        user_id = (await _user(db, args.login)).id
    lifetime = args.expires_in or settings.token_lifetime
    token = await service.issue_token(db, app.client_id, user_id, scopes, lifetime=lifetime)
    return {"access_token": token.access_token, "refresh_token": token.refresh_token,
            "expires_in": token.expires_in, "scope": token.scopes, "client_id": app.client_id,
            "user_id": user_id}


async def reset_stream_key(db: AsyncSession, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    user = await _user(db, args.login)
    key = await service.reset_stream_key(db, user.id)
    return {"user_id": user.id, "login": user.login, "stream_key": key}


async def show_stream_key(db: AsyncSession, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    user = await _user(db, args.login)
    channel = await db.get(Channel, user.id)
    prefix = channel.stream_key_prefix if channel else ""
    return {"user_id": user.id, "login": user.login, "stream_key_prefix": prefix,
            "note": "stream keys are stored hashed; use reset-stream-key to get a new one"}


async def set_partner(db: AsyncSession, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    user = await _user(db, args.login)
    btype = "" if args.type == "none" else args.type
    await service.set_broadcaster_type(db, user.id, btype)
    return {"user_id": user.id, "login": user.login, "broadcaster_type": btype}


async def payouts(db: AsyncSession, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Per-creator payouts for one month from the subscriptions ledger; ``--csv`` prints CSV."""
    import sys

    from livecast.subscriptions import payouts as report

    try:
        rows = await report.report(db, args.month)
    except ValueError as exc:
        raise AdminError(str(exc)) from None
    if getattr(args, "csv", False):
        sys.stdout.write(report.to_csv(rows))
        return {}
    return {"month": args.month, "creators": [vars(r) for r in rows]}


async def stats(db: AsyncSession, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Creator analytics from discovery (the dashboard's figures, for scripts)."""
    from livecast.discovery import analytics

    try:
        return await analytics.admin_stats(db, args, settings)
    except LookupError as exc:
        raise AdminError(str(exc).strip("'\"")) from None


COMMANDS: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
    "create-user": create_user,
    "create-app": create_app,
    "issue-token": issue_token,
    "reset-stream-key": reset_stream_key,
    "show-stream-key": show_stream_key,
    "set-partner": set_partner,
    "payouts": payouts,
    "stats": stats,
}
