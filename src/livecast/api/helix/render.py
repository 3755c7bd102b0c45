"""Rows to Twitch's JSON objects, shared by the endpoints that embed the same objects."""

from __future__ import annotations

import datetime as dt
from typing import Any

from livecast.identity.models import Channel, User

LIVE = ("live", "reconnecting")


def rfc3339(value: dt.datetime | None) -> str:
    """Twitch's timestamps: second precision, ``Z`` suffix."""
    if value is None:
        return ""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def user(row: User | Any, *, email: bool = False) -> dict[str, Any]:
    """From an ORM ``User`` or a Core row of the users table (same attribute names)."""
    doc: dict[str, Any] = {
        "id": row.id,
        "login": row.login,
        "display_name": row.display_name,
        "type": row.type,
        "broadcaster_type": row.broadcaster_type,
        "description": row.description,
        "profile_image_url": row.profile_image_url,
        "offline_image_url": row.offline_image_url,
        "view_count": 0,
        "created_at": rfc3339(row.created_at),
    }
    if email:
        doc["email"] = row.email
    return doc


def channel(owner: User, row: Channel) -> dict[str, Any]:
    return {
        "broadcaster_id": owner.id,
        "broadcaster_login": owner.login,
        "broadcaster_name": owner.display_name,
        "broadcaster_language": row.language,
        "game_id": row.category_id,
        "game_name": row.category_name,
        "title": row.title,
        "delay": row.delay,
        "tags": list(row.tags or []),
        "content_classification_labels": [],
        "is_branded_content": row.is_branded_content,
    }


def thumbnail(base_url: str, login: str) -> str:
    return f"{base_url}/previews/live_user_{login}-{{width}}x{{height}}.jpg"
