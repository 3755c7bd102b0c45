"""Opaque keyset cursors: the sort key and id of the last row served, not an offset.

An offset shifts when rows are inserted in front of it, which duplicates or skips rows while
a client pages; a keyset position does not move. The cursor is URL-safe base64 of a small
JSON array so clients treat it as opaque and we can validate it strictly.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from livecast.api.helix.errors import bad_request


def encode(*key: Any) -> str:
    raw = json.dumps(list(key), separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, shape: tuple[type, ...]) -> list[Any]:
    """Decode a cursor whose elements must have the given types; a bad one is a 400."""
    if len(cursor) > 512:
        raise bad_request("The parameter \"after\" was malformed: the value must be a valid cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad_request("The parameter \"after\" was malformed: the value must be a valid cursor") from None
    if not isinstance(values, list) or len(values) != len(shape):
        raise bad_request("The parameter \"after\" was malformed: the value must be a valid cursor")
    for value, kind in zip(values, shape, strict=True):
        if not isinstance(value, kind) or isinstance(value, bool):
            raise bad_request("The parameter \"after\" was malformed: the value must be a valid cursor")
    return values


def pagination(cursor: str | None) -> dict[str, str]:
    return {"cursor": cursor} if cursor else {}
