"""The LL-HLS delivery directives (``_HLS_msn``, ``_HLS_part``, ``_HLS_skip``) and media names.

Sans-IO and strict: a malformed directive is the client's bug and gets 400 (RFC 8216bis
6.2.5.2), never a guess, and never a 500 from ``int()`` of something odd.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_UINT = re.compile(r"[0-9]{1,15}")
_PART = re.compile(r"part([0-9]{1,15})\.([0-9]{1,6})\.m4s")
_SEG = re.compile(r"seg([0-9]{1,15})\.m4s")
_INIT = re.compile(r"init([0-9]{0,9})\.mp4")
_THUMB = re.compile(r"thumbnail(?:-([0-9]{2,4})x([0-9]{2,4}))?\.jpg")


class QueryError(ValueError):
    """A delivery directive the server must refuse with 400."""


@dataclass(frozen=True)
class HlsQuery:
    msn: int | None = None
    part: int | None = None
    skip: bool = False

    @property
    def blocking(self) -> bool:
        return self.msn is not None


def parse_hls_query(params: Mapping[str, str]) -> HlsQuery:
    msn_raw = params.get("_HLS_msn")
    part_raw = params.get("_HLS_part")
    skip_raw = params.get("_HLS_skip")
    msn = part = None
    if msn_raw is not None:
        if not _UINT.fullmatch(msn_raw):
            raise QueryError("_HLS_msn must be a decimal integer")
        msn = int(msn_raw)
    if part_raw is not None:
        if msn is None:
            raise QueryError("_HLS_part requires _HLS_msn")
        if not _UINT.fullmatch(part_raw):
            raise QueryError("_HLS_part must be a decimal integer")
        part = int(part_raw)
    skip = False
    if skip_raw is not None:
        if skip_raw not in {"YES", "v2"}:
            raise QueryError("_HLS_skip must be YES or v2")
        skip = True
    return HlsQuery(msn, part, skip)


@dataclass(frozen=True)
class MediaName:
    kind: str  # init | segment | part
    msn: int = 0
    index: int = 0
    init_id: int | None = None  # None: the current init segment


def parse_media_name(name: str) -> MediaName | None:
    if m := _PART.fullmatch(name):
        return MediaName("part", int(m[1]), int(m[2]))
    if m := _SEG.fullmatch(name):
        return MediaName("segment", int(m[1]))
    if m := _INIT.fullmatch(name):
        return MediaName("init", init_id=int(m[1]) if m[1] else None)
    return None


def parse_thumbnail_name(name: str) -> tuple[int, int] | bool | None:
    """``(w, h)`` for a sized thumbnail, ``None`` for the default one, ``False`` if not one."""
    m = _THUMB.fullmatch(name)
    if m is None:
        return False
    if m[1] is None:
        return None
    w, h = int(m[1]), int(m[2])
    if not (16 <= w <= 1920 and 16 <= h <= 1080):
        return False
    return w, h


def too_far_ahead(query: HlsQuery, last_msn: int, last_part: int, *, part_target: float,
                  parts_per_segment: int) -> bool:
    """RFC 8216bis 6.2.5.2: refuse (400) a msn past the last segment plus two, or a part past
    the last one by more than the Advance Part Limit (3 / PART-TARGET parts below 1 s)."""
    if query.msn is None:
        return False
    if query.msn > last_msn + 2:
        return True
    if query.part is None or query.msn < last_msn:
        return False
    limit = 3 / part_target if part_target < 1 else 3
    per = max(1, parts_per_segment)
    ahead = (query.msn - last_msn) * per + query.part - last_part
    return ahead > limit
