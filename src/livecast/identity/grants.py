"""Authorization codes and device codes: the short-lived, single-use steps before a user token.

A grant row is written when a signed-in user approves an app (authorization code) or when a
device asks for a code (device flow), and is spent exactly once at ``/oauth2/token``. Codes are
stored as SHA-256 hashes like tokens, so a database dump cannot be replayed. Every refusal here
raises :class:`~livecast.identity.service.IdentityError` *before* anything is changed, except a
replayed authorization code, whose tokens are revoked on purpose (RFC 6749 section 4.1.2).
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.identity import credentials
from livecast.identity.models import Grant, OAuthApp, Token
from livecast.identity.service import IdentityError, IssuedToken, issue_token
from livecast.store.base import utcnow

CODE_LIFETIME = 600  # seconds an authorization code stays redeemable
DEVICE_LIFETIME = 1800  # Twitch's device codes live 30 minutes
DEVICE_INTERVAL = 5  # seconds a device should wait between polls
# Device user codes are read off one screen and typed on another: no vowels (no words), no
# look-alike letters, eight of them as on Twitch.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8

# Messages id.twitch.tv uses; clients compare some of them literally.
INVALID_CODE = "Invalid authorization code"
REDIRECT_MISMATCH = "Parameter redirect_uri does not match registered URI"
PENDING = "authorization_pending"
INVALID_DEVICE_CODE = "invalid device code"


def _expired(grant: Grant) -> bool:
    return grant.expires_at <= utcnow()


async def _grant_by_code(db: AsyncSession, kind: str, raw: str) -> Grant | None:
    if not raw or len(raw) > 128:
        return None
    row = (
        await db.execute(select(Grant).where(Grant.code_hash == credentials.sha256(raw)))
    ).scalar_one_or_none()
    return row if row is not None and row.kind == kind else None


# Authorization codes --------------------------------------------------------------------------

async def create_code(
    db: AsyncSession, app: OAuthApp, user_id: str, scopes: list[str], redirect_uri: str,
    *, lifetime: int = CODE_LIFETIME,
) -> str:
    """Record a user's approval and return the raw code for the redirect (shown once)."""
    raw = credentials.random_token(30)
    db.add(Grant(kind="code", code_hash=credentials.sha256(raw), client_id=app.client_id, user_id=user_id,
                 scopes=list(scopes), redirect_uri=redirect_uri, approved=True,
                 expires_at=utcnow() + dt.timedelta(seconds=lifetime)))
    await db.flush()
    return raw


async def redeem_code(
    db: AsyncSession, app: OAuthApp, raw_code: str, redirect_uri: str, *, lifetime: int,
) -> IssuedToken:
    """Exchange a code for a user token and refresh token, once.

    A second exchange of the same code means it leaked (or the client is confused): the tokens
    already issued from it, and their refreshes, are revoked and the caller must commit that.
    """
    grant = await _grant_by_code(db, "code", raw_code)
    if grant is None or grant.client_id != app.client_id or grant.user_id is None:
        raise IdentityError("invalid_grant", INVALID_CODE)
    if grant.used:
        await revoke_grant_tokens(db, grant.id)
        raise IdentityError("code_reused", INVALID_CODE)
    if _expired(grant):
        raise IdentityError("invalid_grant", INVALID_CODE)
    if not credentials.same(grant.redirect_uri, redirect_uri):
        raise IdentityError("redirect_mismatch", REDIRECT_MISMATCH)
    grant.used = True
    return await issue_token(db, app.client_id, grant.user_id, list(grant.scopes), lifetime=lifetime,
                             grant_id=grant.id)


async def revoke_grant_tokens(db: AsyncSession, grant_id: int) -> int:
    """Revoke every token descended from one grant; returns how many were still live."""
    result = await db.execute(
        update(Token).where(Token.grant_id == grant_id, Token.revoked.is_(False))
        .values(revoked=True, refresh_hash=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def has_authorized(db: AsyncSession, client_id: str, user_id: str, scopes: list[str]) -> bool:
    """Whether the user already gave this app every one of ``scopes``: a live token says so."""
    rows = (
        await db.execute(select(Token.scopes, Token.expires_at).where(
            Token.client_id == client_id, Token.user_id == user_id, Token.revoked.is_(False)))
    ).all()
    now = utcnow()
    wanted = set(scopes)
    return any(wanted <= set(granted) and (expires is None or expires > now) for granted, expires in rows)


@dataclass(frozen=True)
class Connection:
    """An app a user has authorized: what the settings page lists and lets them disconnect."""

    client_id: str
    name: str
    scopes: list[str]
    since: dt.datetime


async def connected_apps(db: AsyncSession, user_id: str) -> list[Connection]:
    """Apps holding a live user token for this user, with the union of the scopes they hold."""
    now = utcnow()
    rows = (
        await db.execute(
            select(Token.client_id, OAuthApp.name, Token.scopes, Token.created_at, Token.expires_at,
                   Token.refresh_hash)
            .join(OAuthApp, OAuthApp.client_id == Token.client_id)
            .where(Token.user_id == user_id, Token.revoked.is_(False))
            .order_by(Token.created_at)
        )
    ).all()
    apps: dict[str, Connection] = {}
    for client_id, name, scopes, created, expires, refresh in rows:
        # An expired access token with its refresh token still stored keeps the app connected:
        # the app can refresh it, so the user must be able to disconnect it too.
        if expires is not None and expires <= now and refresh is None:
            continue
        known = apps.get(client_id)
        merged = sorted(set(scopes) | set(known.scopes if known else ()))
        apps[client_id] = Connection(client_id, name, merged, known.since if known else created)
    return sorted(apps.values(), key=lambda c: c.name.lower())


async def disconnect_app(db: AsyncSession, user_id: str, client_id: str) -> int:
    """Revoke every token (access and refresh) the app holds for the user; returns how many."""
    result = await db.execute(
        update(Token).where(Token.user_id == user_id, Token.client_id == client_id, Token.revoked.is_(False))
        .values(revoked=True, refresh_hash=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# Device codes ---------------------------------------------------------------------------------

def new_user_code() -> str:
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def normalize_user_code(raw: str) -> str:
    """Users type codes with spaces, dashes and lower case; the stored form has none of them."""
    return "".join(ch for ch in raw.upper() if ch.isalnum())[:16]


async def start_device(
    db: AsyncSession, app: OAuthApp, scopes: list[str], *, lifetime: int = DEVICE_LIFETIME,
) -> tuple[str, str]:
    """Open a device authorization; return ``(device_code, user_code)``."""
    device_code = credentials.random_token(40)
    user_code = new_user_code()
    while await pending_device(db, user_code) is not None:  # 20**8 codes: a clash is rare
        user_code = new_user_code()
    db.add(Grant(kind="device", code_hash=credentials.sha256(device_code), user_code=user_code,
                 client_id=app.client_id, scopes=list(scopes),
                 expires_at=utcnow() + dt.timedelta(seconds=lifetime)))
    await db.flush()
    return device_code, user_code


async def pending_device(db: AsyncSession, user_code: str) -> Grant | None:
    """The live, not yet approved device grant a user code names, or None."""
    code = normalize_user_code(user_code)
    if len(code) != USER_CODE_LENGTH:
        return None
    rows = (
        await db.execute(select(Grant).where(Grant.user_code == code, Grant.kind == "device",
                                             Grant.used.is_(False), Grant.approved.is_(False)))
    ).scalars().all()
    for row in rows:
        if not _expired(row):
            return row
    return None


async def decide_device(db: AsyncSession, user_code: str, user_id: str, *, approve: bool) -> Grant:
    """Approve the device for ``user_id``, or deny it (the code then stops working)."""
    grant = await pending_device(db, user_code)
    if grant is None:
        raise IdentityError("invalid_user_code", "That code is not valid or has expired.")
    if approve:
        grant.approved = True
        grant.user_id = user_id
    else:
        grant.used = True
    await db.flush()
    return grant


async def redeem_device(db: AsyncSession, app: OAuthApp, device_code: str, *, lifetime: int) -> IssuedToken:
    """Exchange an approved device code for tokens; ``authorization_pending`` until approved."""
    grant = await _grant_by_code(db, "device", device_code)
    if grant is None or grant.client_id != app.client_id or grant.used or _expired(grant):
        raise IdentityError("invalid_device_code", INVALID_DEVICE_CODE)
    if not grant.approved or grant.user_id is None:
        raise IdentityError("authorization_pending", PENDING)
    grant.used = True
    return await issue_token(db, app.client_id, grant.user_id, list(grant.scopes), lifetime=lifetime,
                             grant_id=grant.id)
