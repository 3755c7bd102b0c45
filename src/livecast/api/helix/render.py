"""Rows to Twitch's JSON objects, shared by the endpoints that embed the same objects."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from livecast.identity.models import Channel, User

LIVE = ("live", "reconnecting")


_STAMPS: dict[dt.datetime, str] = {}
_STAMPS_MAX = 20_000


def rfc3339(value: dt.datetime | None) -> str:
    """Twitch's timestamps: second precision, ``Z`` suffix.

    Remembered per value: list endpoints render the same rows' timestamps on every request (a
    100-row streams page formatted 100 of them, a twentieth of its CPU), and the text depends
    only on the instant. Rows come back in UTC (``store.base.UTCDateTime``), which is
    formatted field by field, twice as fast as ``astimezone`` + ``strftime``; anything else,
    and years before 1000 (``%Y`` does not pad them), takes the ``strftime`` path."""
    if value is None:
        return ""
    text = _STAMPS.get(value)
    if text is None:
        if value.tzinfo is dt.UTC and value.year >= 1000:
            text = (f"{value.year}-{value.month:02d}-{value.day:02d}"
                    f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}Z")
        else:
            text = value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if len(_STAMPS) >= _STAMPS_MAX:
            _STAMPS.clear()
        _STAMPS[value] = text
    return text


_TAGS: dict[str, list[Any]] = {}
_TAGS_MAX = 20_000


def json_list(text: str | None) -> list[Any]:
    """A JSON list column selected as text (``cast(column, Text)``), as a new list.

    Why as text: the PostgreSQL driver decodes a JSON column with ``json.loads`` on every row,
    and a streams page has 100 of them, mostly the same few tag lists; remembering the
    decoded list per text makes that a dictionary lookup. The caller gets its own copy."""
    if not text:
        return []
    value = _TAGS.get(text)
    if value is None:
        value = list(json.loads(text) or [])  # what list(row.tags or []) gave
        if len(_TAGS) >= _TAGS_MAX:
            _TAGS.clear()
        _TAGS[text] = value
    return list(value)


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
