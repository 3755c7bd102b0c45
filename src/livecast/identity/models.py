"""Identity tables: users and their one channel, OAuth2 apps, tokens and grants."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from livecast.store.base import Base, new_id, utcnow


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    login: Mapped[str] = mapped_column(String(25), unique=True, index=True)
    display_name: Mapped[str] = mapped_column(String(64))
    email: Mapped[str] = mapped_column(String(254), default="")
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    type: Mapped[str] = mapped_column(String(16), default="")  # "" | staff | admin | global_mod
    broadcaster_type: Mapped[str] = mapped_column(String(16), default="")  # "" | affiliate | partner
    description: Mapped[str] = mapped_column(Text, default="")
    profile_image_url: Mapped[str] = mapped_column(String(512), default="")
    offline_image_url: Mapped[str] = mapped_column(String(512), default="")
    color: Mapped[str] = mapped_column(String(7), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Channel(Base):
    """A user's channel; its id is the user's id, as on Twitch (broadcaster_id == user id)."""

    __tablename__ = "channels"

    id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    title: Mapped[str] = mapped_column(String(140), default="")
    category_id: Mapped[str] = mapped_column(String(32), default="")
    category_name: Mapped[str] = mapped_column(String(256), default="")
    language: Mapped[str] = mapped_column(String(8), default="en")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    delay: Mapped[int] = mapped_column(Integer, default=0)
    is_branded_content: Mapped[bool] = mapped_column(Boolean, default=False)
    stream_key_hash: Mapped[str] = mapped_column(String(128), default="", index=True)
    stream_key_prefix: Mapped[str] = mapped_column(String(16), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OAuthApp(Base):
    __tablename__ = "oauth_apps"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    owner_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    secret_hash: Mapped[str] = mapped_column(String(128))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    category: Mapped[str] = mapped_column(String(64), default="Application Integration")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Token(Base):
    """An access token (and its refresh token), stored only as SHA-256 hashes."""

    __tablename__ = "oauth_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    access_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    refresh_hash: Mapped[str | None] = mapped_column(String(64), unique=True, index=True, nullable=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("oauth_apps.client_id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    # The authorization or device code this token (and every refresh of it) came from, so that
    # replaying a used code can revoke them all (RFC 6749 section 4.1.2).
    grant_id: Mapped[int | None] = mapped_column(
        ForeignKey("oauth_grants.id", ondelete="SET NULL"), nullable=True, index=True
    )


class Grant(Base):
    """A pending authorization code or device code, single use, short lived."""

    __tablename__ = "oauth_grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # code | device
    code_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    user_code: Mapped[str] = mapped_column(String(16), default="", index=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("oauth_apps.client_id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    redirect_uri: Mapped[str] = mapped_column(String(512), default="")
    expires_at: Mapped[dt.datetime] = mapped_column()
    approved: Mapped[bool] = mapped_column(Boolean, default=False)
    used: Mapped[bool] = mapped_column(Boolean, default=False)


class WebSession(Base):
    """A signed-in browser; the cookie holds the raw id, the table its hash."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
