"""Opaque page cursors for discovery queries (URL-safe base64 of a small JSON array).

Browse pages use keyset positions (a sort key and an id), which do not shift while rows are
inserted in front of them; search pages use an offset because relevance is not a stable key.
A cursor that does not decode to the expected shape raises :class:`InvalidCursor`, which an
HTTP layer turns into its protocol's 400.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any


class InvalidCursor(ValueError):
    """The ``after`` cursor was not one this service issued."""


def encode(*key: Any) -> str:
    raw = json.dumps(list(key), separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, shape: tuple[type, ...]) -> list[Any]:
    if len(cursor) > 512:
        raise InvalidCursor("cursor too long")
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor("malformed cursor") from None
    if not isinstance(values, list) or len(values) != len(shape):
        raise InvalidCursor("malformed cursor")
    for value, kind in zip(values, shape, strict=True):
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InvalidCursor("malformed cursor")
    return values
