"""Categories (Twitch's "games"), follows, blocks, and the tables behind search, recommendations,
notifications and creator analytics."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from livecast.store.base import Base, new_id, utcnow


class Category(Base):
    __tablename__ = "categories"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(256), unique=True, index=True)
    box_art_url: Mapped[str] = mapped_column(String(512), default="")
    igdb_id: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Follow(Base):
    __tablename__ = "follows"
    __table_args__ = (
        UniqueConstraint("user_id", "channel_id", name="uq_follows_user_channel"),
        # the go-live fan-out walks one channel's follows in id order, a batch at a time
        Index("ix_follows_channel_id_id", "channel_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    followed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class UserBlock(Base):
    """A user blocking another (Twitch's user blocks); recommendations never show blocked channels."""

    __tablename__ = "user_blocks"
    __table_args__ = (UniqueConstraint("user_id", "target_id", name="uq_user_blocks_user_target"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    target_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SearchDoc(Base):
    """One searchable name (a channel or a category), lowercased, kept in sync by :mod:`search`.

    PostgreSQL matches ``name`` with ``pg_trgm`` through the GIN index; SQLite uses
    :class:`SearchGram` rows instead, because FTS5 virtual tables (and their shadow tables)
    would be reflected as unknown tables and break the models == migrations check.
    """

    __tablename__ = "search_docs"
    __table_args__ = (
        UniqueConstraint("kind", "ref_id", name="uq_search_docs_kind_ref"),
        Index("ix_search_docs_name_trgm", "name", postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"}),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # channel | category
    ref_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(300))


class SearchGram(Base):
    """Trigram postings for SQLite: (gram, doc) pairs, the index FTS5's trigram tokenizer would keep."""

    __tablename__ = "search_grams"

    gram: Mapped[str] = mapped_column(String(12), primary_key=True)
    doc_id: Mapped[int] = mapped_column(ForeignKey("search_docs.id", ondelete="CASCADE"), primary_key=True, index=True)


class CoFollow(Base):
    """How many users follow (or watch) both ``channel_id`` and ``other_id``; updated on every follow.

    The diagonal row (``other_id == channel_id``) counts the channel's own followers and watchers,
    the popularity recommendations divide by.
    """

    __tablename__ = "co_follows"
    __table_args__ = (Index("ix_co_follows_channel_id_weight", "channel_id", "weight"),)

    channel_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    other_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    weight: Mapped[int] = mapped_column(Integer, default=0)


class WatchHistory(Base):
    """Minutes a signed-in user watched a channel, from heartbeats (one write per user, channel, minute)."""

    __tablename__ = "watch_history"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    channel_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    minutes: Mapped[int] = mapped_column(Integer, default=0)
    last_watched_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Notification(Base):
    """An in-app notification (today: a followed channel went live)."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_id_id", "user_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32), default="stream.online")
    channel_id: Mapped[str] = mapped_column(String(32), default="")
    stream_id: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    read: Mapped[bool] = mapped_column(Boolean, default=False)


class NotificationPref(Base):
    """A per-channel choice; no row means the default (notify)."""

    __tablename__ = "notification_prefs"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    channel_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class StreamStats(Base):
    """Creator analytics for one broadcast, accumulated by the discovery worker's samples."""

    __tablename__ = "stream_stats"

    stream_id: Mapped[str] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), index=True)
    samples: Mapped[int] = mapped_column(Integer, default=0)
    viewer_sum: Mapped[int] = mapped_column(Integer, default=0)
    peak_viewers: Mapped[int] = mapped_column(Integer, default=0)
    viewer_seconds: Mapped[int] = mapped_column(Integer, default=0)
    chat_messages: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
