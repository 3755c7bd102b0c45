"""Identity service functions: the one place that creates users, keys, apps and tokens.

HTTP routes, the CLI and other domains call these; none of them touch the tables directly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.identity import credentials
from livecast.identity.models import Channel, OAuthApp, Token, User
from livecast.identity.scopes import SCOPES
from livecast.store.base import utcnow

LOGIN_RE = re.compile(r"^[a-z0-9][a-z0-9_]{2,24}$")


class IdentityError(Exception):
    """A request the identity domain refuses; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class TokenInfo:
    """What a valid access token grants: who, which app, which scopes, until when."""

    client_id: str
    user_id: str | None
    login: str | None
    scopes: tuple[str, ...]
    expires_at: dt.datetime | None

    @property
    def is_app_token(self) -> bool:
        return self.user_id is None

    def expires_in(self) -> int:
        if self.expires_at is None:
            return 0
        return max(0, int((self.expires_at - utcnow()).total_seconds()))


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    refresh_token: str | None
    expires_in: int
    scopes: list[str]
    token_type: str = "bearer"


def normalize_login(login: str) -> str:
    return login.strip().lower()


# Path segments the web app owns: a user with such a login would have no channel page.
RESERVED_LOGINS = frozenset({
    "directory", "search", "dashboard", "login", "signup", "logout", "videos", "helix", "hls", "static",
    "oauth2", "healthz", "metrics", "ws", "emotes", "mock", "auth", "web", "eventsub", "activate",
    "settings", "admin", "api", "p", "u", "clip", "clips", "embed", "notifications", "subscriptions",
    "vods", "popout", "moderator", "inventory", "wallet", "friends", "following",
})


async def create_user(
    db: AsyncSession,
    login: str,
    *,
    password: str | None = None,
    email: str = "",
    display_name: str | None = None,
    broadcaster_type: str = "",
    user_type: str = "",
) -> tuple[User, str]:
    """Create a user and their channel; return the user and the new stream key (shown once)."""
    name = normalize_login(login)
    if not LOGIN_RE.match(name):
        raise IdentityError("invalid_login", "login must be 3-25 characters: letters, digits, underscore")
    if display_name and display_name.lower() != name:
        raise IdentityError("invalid_display_name", "display name may only change the login's capitalisation")
    if name in RESERVED_LOGINS:
        raise IdentityError("login_taken", f"login {name!r} is reserved")
    if await get_user_by_login(db, name) is not None:
        raise IdentityError("login_taken", f"login {name!r} is taken")
    user = User(
        login=name,
        display_name=display_name or name,
        email=email,
        password_hash=await asyncio.to_thread(credentials.hash_password, password) if password else "",
        broadcaster_type=broadcaster_type,
        type=user_type,
    )
    db.add(user)
    await db.flush()
    key = credentials.new_stream_key(user.id)
    db.add(Channel(id=user.id, stream_key_hash=credentials.sha256(key), stream_key_prefix=key[:12]))
    await db.flush()
    return user, key


async def get_user_by_login(db: AsyncSession, login: str) -> User | None:
    return (await db.execute(select(User).where(User.login == normalize_login(login)))).scalar_one_or_none()


async def get_user(db: AsyncSession, user_id: str) -> User | None:
    return await db.get(User, user_id)


async def authenticate(db: AsyncSession, login: str, password: str) -> User | None:
    user = await get_user_by_login(db, login)
    if user is None:
        # Same cost whether or not the login exists, so timing does not reveal which logins do.
        await asyncio.to_thread(credentials.verify_password, _DUMMY_HASH, password)
        return None
    # argon2 takes ~0.1 s of CPU on purpose; in a thread it does not stall chat and ingest,
    # which share this event loop (argon2-cffi releases the GIL while hashing).
    ok = await asyncio.to_thread(credentials.verify_password, user.password_hash, password)
    return user if ok else None


_DUMMY_HASH = credentials.hash_password("not-a-real-password")


async def reset_stream_key(db: AsyncSession, user_id: str) -> str:
    channel = await db.get(Channel, user_id)
    if channel is None:
        raise IdentityError("not_found", "no such channel")
    key = credentials.new_stream_key(user_id)
    channel.stream_key_hash = credentials.sha256(key)
    channel.stream_key_prefix = key[:12]
    await db.flush()
    return key


async def user_for_stream_key(db: AsyncSession, key: str) -> User | None:
    """The user whose stream key this is, compared in constant time, or None."""
    if not key or len(key) > 256:
        return None
    digest = credentials.sha256(key)
    channel = (
        await db.execute(select(Channel).where(Channel.stream_key_hash == digest))
    ).scalar_one_or_none()
    if channel is None or not credentials.same(channel.stream_key_hash, digest):
        return None
    return await db.get(User, channel.id)


async def set_broadcaster_type(db: AsyncSession, user_id: str, broadcaster_type: str) -> None:
    if broadcaster_type not in {"", "affiliate", "partner"}:
        raise IdentityError("invalid_type", "broadcaster type is '', affiliate or partner")
    await db.execute(update(User).where(User.id == user_id).values(broadcaster_type=broadcaster_type))


DESCRIPTION_MAX = 300  # Helix "Update User" allows 300 characters
COLOR_RE = re.compile(r"^#[0-9A-Fa-f]{6}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


async def update_user(
    db: AsyncSession,
    user_id: str,
    *,
    description: str | None = None,
    display_name: str | None = None,
    email: str | None = None,
    color: str | None = None,
    profile_image_url: str | None = None,
    offline_image_url: str | None = None,
) -> User:
    """Change the given profile fields (None leaves a field alone); every value is checked first,
    so a refused update changes nothing."""
    user = await db.get(User, user_id)
    if user is None:
        raise IdentityError("not_found", "no such user")
    changes: dict[str, str] = {}
    if description is not None:
        if len(description) > DESCRIPTION_MAX:
            raise IdentityError("invalid_description", f"description must be at most {DESCRIPTION_MAX} characters")
        changes["description"] = description
    if display_name is not None:
        if display_name.lower() != user.login:
            raise IdentityError("invalid_display_name", "display name may only change the login's capitalisation")
        changes["display_name"] = display_name
    if email is not None:
        if email and (len(email) > 254 or not EMAIL_RE.match(email)):
            raise IdentityError("invalid_email", "not a valid email address")
        changes["email"] = email
    if color is not None:
        if color and not COLOR_RE.match(color):
            raise IdentityError("invalid_color", "color must be a hex color like #9147FF")
        changes["color"] = color.upper()
    for name, url in (("profile_image_url", profile_image_url), ("offline_image_url", offline_image_url)):
        if url is not None:
            if url and (len(url) > 512 or not url.startswith(("https://", "http://", "/"))):
                raise IdentityError("invalid_url", f"{name} must be an http(s) URL or a path")
            changes[name] = url
    for name, value in changes.items():
        setattr(user, name, value)
    await db.flush()
    return user


async def delete_user(db: AsyncSession, user_id: str) -> bool:
    """Delete a user; their channel, tokens, grants and sessions go with them (ON DELETE CASCADE).

    Returns False when there was no such user.
    """
    result = await db.execute(delete(User).where(User.id == user_id))
    return bool(getattr(result, "rowcount", 0))


# OAuth2 applications and tokens -------------------------------------------------------------

async def create_app(
    db: AsyncSession, name: str, redirect_uris: list[str] | None = None, owner_id: str | None = None
) -> tuple[OAuthApp, str]:
    uris = list(redirect_uris or ["http://localhost"])
    for uri in uris:
        check_redirect_uri(uri)
    client_id = credentials.random_token(30)
    secret = credentials.random_token(30)
    app = OAuthApp(
        client_id=client_id,
        name=name,
        owner_id=owner_id,
        secret_hash=credentials.sha256(secret),
        redirect_uris=uris,
    )
    db.add(app)
    await db.flush()
    return app, secret


def check_redirect_uri(uri: str) -> None:
    """Redirect URIs are absolute, carry no fragment (RFC 6749 section 3.1.2) and fit the column.

    Apps may use any scheme (desktop apps register ``myapp://callback``), but never a
    ``javascript:`` or ``data:`` one, which would run in the consent page's origin.
    """
    parts = urlsplit(uri)
    if (
        len(uri) > 512 or not parts.scheme or "#" in uri or any(ord(ch) < 0x21 for ch in uri)
        or parts.scheme.lower() in {"javascript", "data", "vbscript", "file"}
        or (parts.scheme.lower() in {"http", "https"} and not parts.netloc)
    ):
        raise IdentityError("invalid_redirect_uri", f"not a usable redirect URI: {uri!r}")


async def get_app(db: AsyncSession, client_id: str) -> OAuthApp | None:
    if not client_id or len(client_id) > 64:
        return None
    return await db.get(OAuthApp, client_id)


async def check_client(db: AsyncSession, client_id: str, client_secret: str) -> OAuthApp | None:
    app = await get_app(db, client_id)
    if app is None or not credentials.same(app.secret_hash, credentials.sha256(client_secret or "")):
        return None
    return app


async def issue_token(
    db: AsyncSession,
    client_id: str,
    user_id: str | None,
    scopes: list[str],
    *,
    lifetime: int = 14400,
    refresh: bool = True,
    grant_id: int | None = None,
) -> IssuedToken:
    access = credentials.random_token()
    refresh_token = credentials.random_token(50) if (refresh and user_id) else None
    db.add(
        Token(
            access_hash=credentials.sha256(access),
            refresh_hash=credentials.sha256(refresh_token) if refresh_token else None,
            client_id=client_id,
            user_id=user_id,
            scopes=list(scopes),
            expires_at=utcnow() + dt.timedelta(seconds=lifetime) if lifetime else None,
            grant_id=grant_id,
        )
    )
    await db.flush()
    return IssuedToken(access, refresh_token, lifetime, list(scopes))


async def validate_token(db: AsyncSession, access_token: str) -> TokenInfo | None:
    """The grant behind a raw access token, or None if unknown, revoked or expired."""
    if not access_token or len(access_token) > 128:
        return None
    row = (
        await db.execute(select(Token).where(Token.access_hash == credentials.sha256(access_token)))
    ).scalar_one_or_none()
    if row is None or row.revoked:
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    login = None
    if row.user_id:
        user = await db.get(User, row.user_id)
        if user is None:
            return None
        login = user.login
    return TokenInfo(row.client_id, row.user_id, login, tuple(row.scopes), row.expires_at)


async def refresh_token(db: AsyncSession, app: OAuthApp, raw_refresh: str, lifetime: int) -> IssuedToken | None:
    """Rotate a refresh token: the old pair stops working, a new pair is returned."""
    row = (
        await db.execute(select(Token).where(Token.refresh_hash == credentials.sha256(raw_refresh or "")))
    ).scalar_one_or_none()
    if row is None or row.revoked or row.client_id != app.client_id:
        return None
    row.revoked = True
    row.refresh_hash = None
    return await issue_token(db, app.client_id, row.user_id, list(row.scopes), lifetime=lifetime,
                             grant_id=row.grant_id)


async def revoke_token(db: AsyncSession, client_id: str, access_token: str) -> bool:
    row = (
        await db.execute(select(Token).where(Token.access_hash == credentials.sha256(access_token or "")))
    ).scalar_one_or_none()
    if row is None or row.client_id != client_id:
        return False
    row.revoked = True
    return True


async def ensure_admin_app(db: AsyncSession) -> OAuthApp:
    """The built-in app that admin-issued tokens belong to (client id ``livecast-admin``)."""
    app = await db.get(OAuthApp, "livecast-admin")
    if app is None:
        app = OAuthApp(
            client_id="livecast-admin",
            name="Livecast administration",
            secret_hash=credentials.sha256(secrets.token_hex(32)),
            redirect_uris=[],
        )
        db.add(app)
        await db.flush()
    return app


ALL_SCOPES = sorted(SCOPES)
