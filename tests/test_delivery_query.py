"""LL-HLS delivery directives and media names: strict parsing, fuzzed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from livecast.delivery.query import (
    HlsQuery,
    MediaName,
    QueryError,
    parse_hls_query,
    parse_media_name,
    parse_thumbnail_name,
    too_far_ahead,
)


def test_valid_directives() -> None:
    assert parse_hls_query({}) == HlsQuery()
    assert parse_hls_query({"_HLS_msn": "12", "_HLS_part": "3"}) == HlsQuery(12, 3)
    assert parse_hls_query({"_HLS_msn": "0", "_HLS_skip": "YES"}) == HlsQuery(0, None, True)
    assert parse_hls_query({"_HLS_skip": "v2"}).skip


@pytest.mark.parametrize("params", [
    {"_HLS_msn": "-1"}, {"_HLS_msn": "1.5"}, {"_HLS_msn": ""}, {"_HLS_msn": "1e3"}, {"_HLS_msn": "٣"},
    {"_HLS_msn": "9" * 40}, {"_HLS_part": "1"}, {"_HLS_msn": "1", "_HLS_part": "x"}, {"_HLS_skip": "yes"},
])
def test_malformed_directives(params: dict[str, str]) -> None:
    with pytest.raises(QueryError):
        parse_hls_query(params)


@given(st.dictionaries(st.sampled_from(["_HLS_msn", "_HLS_part", "_HLS_skip", "other"]), st.text(max_size=30)))
def test_fuzz_directives(params: dict[str, str]) -> None:
    try:
        q = parse_hls_query(params)
    except QueryError:
        return
    assert q.msn is None or (0 <= q.msn < 10**15 and params["_HLS_msn"].isascii())
    assert q.part is None or q.msn is not None


def test_media_names() -> None:
    assert parse_media_name("part12.3.m4s") == MediaName("part", 12, 3)
    assert parse_media_name("seg7.m4s") == MediaName("segment", 7)
    assert parse_media_name("init2.mp4") == MediaName("init", init_id=2)
    assert parse_media_name("init.mp4") == MediaName("init", init_id=None)
    for bad in ["seg.m4s", "seg-1.m4s", "part1.m4s", "../seg1.m4s", "seg1.ts", "playlist.m3u8"]:
        assert parse_media_name(bad) is None
    assert parse_thumbnail_name("thumbnail.jpg") is None
    assert parse_thumbnail_name("thumbnail-320x180.jpg") == (320, 180)
    assert parse_thumbnail_name("thumbnail-9999x180.jpg") is False
    assert parse_thumbnail_name("thumb.png") is False


@given(st.text(max_size=40))
def test_fuzz_media_names(name: str) -> None:
    parsed = parse_media_name(name)
    if parsed is not None:
        assert name.endswith((".m4s", ".mp4")) and "/" not in name


def test_advance_limits() -> None:
    kw = {"part_target": 0.5, "parts_per_segment": 4}
    assert not too_far_ahead(HlsQuery(), 10, 2, **kw)
    assert not too_far_ahead(HlsQuery(12), 10, 2, **kw)
    assert too_far_ahead(HlsQuery(13), 10, 2, **kw)  # last segment plus two is the limit
    assert not too_far_ahead(HlsQuery(3, 9), 10, 2, **kw)  # the past is always answerable
    assert not too_far_ahead(HlsQuery(10, 8), 10, 2, **kw)  # six parts ahead: 3 / 0.5 s
    assert too_far_ahead(HlsQuery(10, 9), 10, 2, **kw)
    assert not too_far_ahead(HlsQuery(11, 3), 10, 2, **kw)  # 4 + 3 - 2 = 5 parts ahead
    assert too_far_ahead(HlsQuery(12, 1), 10, 2, **kw)
