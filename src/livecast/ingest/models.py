"""A broadcast: one row per stream, from going live to going offline (reconnects included)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from livecast.store.base import Base, new_id, utcnow


class Stream(Base):
    __tablename__ = "streams"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(140), default="")
    category_id: Mapped[str] = mapped_column(String(32), default="", index=True)
    category_name: Mapped[str] = mapped_column(String(256), default="")
    language: Mapped[str] = mapped_column(String(8), default="en", index=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # live: publisher connected; reconnecting: inside the reconnect window; offline: ended
    status: Mapped[str] = mapped_column(String(16), default="live", index=True)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    viewer_count: Mapped[int] = mapped_column(Integer, default=0, index=True)
    node_id: Mapped[str] = mapped_column(String(64), default="")
    renditions: Mapped[list[str]] = mapped_column(JSON, default=list)
    health: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    is_mature: Mapped[bool] = mapped_column(default=False)
