"""Chat tables: room settings and modes, bans and timeouts, per-channel roles, blocked terms, emotes.

Everything a moderator changes is stored, so that it survives restarts and every chat node sees
the same rules; nodes cache a channel's rows and drop the cache when the bus says they changed.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from livecast.store.base import Base, new_id, utcnow

ROLE_MODERATOR = "moderator"
ROLE_VIP = "vip"
ROLE_SUBSCRIBER = "subscriber"
ROLES = (ROLE_MODERATOR, ROLE_VIP, ROLE_SUBSCRIBER)


class ChatSettings(Base):
    """A channel's room modes; a missing row means Twitch's defaults (all off)."""

    __tablename__ = "chat_settings"

    channel_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    slow_seconds: Mapped[int] = mapped_column(Integer, default=0)  # 0: off
    followers_only_minutes: Mapped[int] = mapped_column(Integer, default=-1)  # -1: off, 0: any follower
    subscribers_only: Mapped[bool] = mapped_column(Boolean, default=False)
    emote_only: Mapped[bool] = mapped_column(Boolean, default=False)
    unique_chat: Mapped[bool] = mapped_column(Boolean, default=False)
    automod_level: Mapped[int] = mapped_column(Integer, default=0)  # 0: off .. 4: strictest
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ChatBan(Base):
    """A ban (``expires_at`` None) or a timeout; an expired timeout is simply ignored."""

    __tablename__ = "chat_bans"
    __table_args__ = (UniqueConstraint("channel_id", "user_id", name="uq_chat_bans_channel_user"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    channel_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    moderator_id: Mapped[str] = mapped_column(String(32), default="")
    reason: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class ChatRole(Base):
    """A user's role in one channel: moderator, VIP, or subscriber (with months and tier).

    The subscriber flag stands in until the subscriptions domain owns subscriptions.
    """

    __tablename__ = "chat_roles"

    channel_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    months: Mapped[int] = mapped_column(Integer, default=0)
    tier: Mapped[int] = mapped_column(Integer, default=0)  # 1000 | 2000 | 3000 for subscribers
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class BlockedTerm(Base):
    __tablename__ = "chat_blocked_terms"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    channel_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(String(500))
    moderator_id: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class Emote(Base):
    """A global emote (``owner_id`` None) or a channel emote gated by subscription ``tier``."""

    __tablename__ = "emotes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(64), index=True)
    owner_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True)
    tier: Mapped[int] = mapped_column(Integer, default=0)  # 0: anyone, else the subscriber tier needed
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
