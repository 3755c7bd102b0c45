"""EventSub tables: subscriptions and the durable outbox of webhook messages.

A notification is written to ``eventsub_messages`` before anyone tries to deliver it, so a
restart between "event happened" and "callback answered 2xx" loses nothing. Its message id is
fixed when the row is written, so retries (even after a restart) repeat the same id, and the
unique (subscription, event key) pair guarantees one row per event and subscription.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from livecast.store.base import Base, utcnow


def new_uuid() -> str:
    return str(uuid.uuid4())


class EventSubSubscription(Base):
    __tablename__ = "eventsub_subscriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    type: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str] = mapped_column(String(8))
    condition: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # canonical JSON of the condition, for duplicate detection and matching by SQL
    condition_key: Mapped[str] = mapped_column(String(512), index=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    method: Mapped[str] = mapped_column(String(16))  # webhook | websocket
    callback: Mapped[str] = mapped_column(String(512), default="")
    secret: Mapped[str] = mapped_column(String(100), default="")
    session_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    status: Mapped[str] = mapped_column(String(64), index=True)
    cost: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    connected_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    disconnected_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class EventSubMessage(Base):
    __tablename__ = "eventsub_messages"
    __table_args__ = (UniqueConstraint("subscription_id", "event_key", name="uq_eventsub_messages_event"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(36), unique=True, default=new_uuid)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("eventsub_subscriptions.id", ondelete="CASCADE"), index=True
    )
    event_key: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))  # notification | revocation
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str] = mapped_column(String(256), default="")
