"""Object keys for archived media, and the id checks that stand before them.

Every id that arrives in a URL or a Helix parameter is matched against a strict pattern
before anything is looked up, so a path-like value (``../``, ``%2F``, ``\\``) is a 404 or a
400 and never reaches the database, let alone the file system under the ``file://`` store.
"""

from __future__ import annotations

import re

VIDEO_ID = re.compile(r"^[0-9]{1,32}$")
CLIP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RENDITION = re.compile(r"^[A-Za-z0-9_]{1,32}$")


def valid_video_id(value: str) -> bool:
    return bool(VIDEO_ID.match(value))


def valid_clip_id(value: str) -> bool:
    return bool(CLIP_ID.match(value))


def valid_rendition(value: str) -> bool:
    return bool(RENDITION.match(value))


def video_prefix(video_id: str) -> str:
    return f"vods/{video_id}/"


def init_key(video_id: str, rendition: str, init_id: int) -> str:
    return f"vods/{video_id}/{rendition}/init{init_id}.mp4"


def segment_key(video_id: str, rendition: str, seq: int) -> str:
    return f"vods/{video_id}/{rendition}/{seq}.m4s"


def video_thumbnail_key(video_id: str) -> str:
    return f"vods/{video_id}/thumb.jpg"


def clip_key(clip_id: str) -> str:
    return f"clips/{clip_id}.mp4"


def clip_thumbnail_key(clip_id: str) -> str:
    return f"clips/{clip_id}-thumb.jpg"
