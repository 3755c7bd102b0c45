"""Emotes: finding them in message text (positions in code points) and drawing their images.

Positions follow Twitch's ``emotes`` tag, ``id:start-end,start-end/id:...``, counted in Unicode
code points, which is what Python's ``str`` indexes, so no surrogate arithmetic is needed.
Images are small PNGs drawn here (a coloured tile per emote), never downloaded.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Mapping

SIZES = {"1.0": 28, "2.0": 56, "3.0": 112}


def find_emotes(text: str, available: Mapping[str, str]) -> dict[str, list[tuple[int, int]]]:
    """Emote id -> [(start, end)] for every whitespace-separated word that is an emote code."""
    found: dict[str, list[tuple[int, int]]] = {}
    pos = 0
    for word in text.split(" "):
        emote_id = available.get(word) if word else None
        if emote_id is not None:
            found.setdefault(emote_id, []).append((pos, pos + len(word) - 1))
        pos += len(word) + 1
    return found


def emotes_tag(found: Mapping[str, list[tuple[int, int]]]) -> str:
    return "/".join(
        f"{emote_id}:" + ",".join(f"{a}-{b}" for a, b in spans) for emote_id, spans in found.items()
    )


def only_emotes(text: str, available: Mapping[str, str]) -> bool:
    words = [w for w in text.split(" ") if w]
    return bool(words) and all(w in available for w in words)


def png(emote_id: str, size: int) -> bytes:
    """A ``size`` x ``size`` RGBA tile whose colour is derived from the emote id."""
    r, g, b = hashlib.sha256(emote_id.encode()).digest()[:3]
    row = b"\x00" + bytes((r, g, b, 255)) * size
    raw = row * size

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
