"""Videos (archives, highlights), their archived segments, clips, and the durable job queue.

A video's media lives in object storage under ``vods/{video_id}/``; the database holds the
timeline (one :class:`VodSegment` row per stored segment and rendition) so that playlists,
clip cutting and seeking never list storage, which is slow on S3 and racy while recording.
A deleted video keeps its row (``deleted_at``) so that a clip request for it gets the same
"not found" forever instead of an id that could be reused or looked up in storage.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from livecast.store.base import Base, new_id, utcnow

ARCHIVE, HIGHLIGHT, UPLOAD = "archive", "highlight", "upload"
RECORDING, PROCESSING, READY, FAILED = "recording", "processing", "ready", "failed"
STORED, GAP = "stored", "gap"


class Video(Base):
    __tablename__ = "videos"
    __table_args__ = (Index("ix_videos_user_id_created_at", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    stream_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    type: Mapped[str] = mapped_column(String(16), default=ARCHIVE)
    # recording (live, growing) | processing (highlight being copied; archive whose last segments
    # wait in its ingest node's spool for storage, see vod/archive.py) | ready | failed
    status: Mapped[str] = mapped_column(String(16), default=RECORDING, index=True)
    title: Mapped[str] = mapped_column(String(140), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str] = mapped_column(String(8), default="en")
    category_id: Mapped[str] = mapped_column(String(32), default="", index=True)
    viewable: Mapped[str] = mapped_column(String(16), default="public")
    view_count: Mapped[int] = mapped_column(Integer, default=0)
    duration: Mapped[float] = mapped_column(Float, default=0.0)  # seconds of the reference rendition
    gap_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # lost to a storage outage, shown as EXT-X-GAP
    # {name: {"codecs", "width", "height", "fps", "audio_only"}} as the live packager saw them
    renditions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reference: Mapped[str] = mapped_column(String(32), default="source")  # rendition that defines the timeline
    thumbnail_key: Mapped[str] = mapped_column(String(256), default="")
    source_video_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # a highlight's archive
    source_start: Mapped[float] = mapped_column(Float, default=0.0)
    source_end: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    published_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, index=True)  # None: kept forever
    deleted_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class VodSegment(Base):
    """One stored (or lost) segment of one rendition; ``offset`` is its start on the video's timeline."""

    __tablename__ = "vod_segments"

    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True)
    rendition: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    init_id: Mapped[int] = mapped_column(Integer, default=1)
    offset: Mapped[float] = mapped_column(Float, default=0.0)
    duration: Mapped[float] = mapped_column(Float, default=0.0)
    start_at: Mapped[dt.datetime] = mapped_column(default=utcnow)  # EXT-X-PROGRAM-DATE-TIME
    discontinuity: Mapped[bool] = mapped_column(default=False)
    size: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(8), default=STORED)  # stored | gap


class Clip(Base):
    __tablename__ = "clips"
    __table_args__ = (
        Index("ix_clips_broadcaster_id_view_count", "broadcaster_id", "view_count"),
        Index("ix_clips_game_id_view_count", "game_id", "view_count"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    broadcaster_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    creator_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    video_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    game_id: Mapped[str] = mapped_column(String(32), default="")
    language: Mapped[str] = mapped_column(String(8), default="en")
    title: Mapped[str] = mapped_column(String(140), default="")
    status: Mapped[str] = mapped_column(String(16), default=PROCESSING, index=True)  # processing | ready | failed
    view_count: Mapped[int] = mapped_column(Integer, default=0)
    duration: Mapped[float] = mapped_column(Float, default=30.0)
    # Either the wall-clock end of a live clip (resolved to an offset by the worker) or a VOD offset.
    end_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    vod_offset: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    error: Mapped[str] = mapped_column(String(500), default="")


class VodJob(Base):
    """A durable unit of work (clip, highlight): claimed under a lease, retried with backoff."""

    __tablename__ = "vod_jobs"
    __table_args__ = (Index("ix_vod_jobs_status_run_at", "status", "run_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | running | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    locked_by: Mapped[str] = mapped_column(String(128), default="")
    locked_until: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
