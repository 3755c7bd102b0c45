"""Segmenter and playlist rendering on real CMAF fragments, checked tag by tag with the m3u8 parser."""

from __future__ import annotations

import subprocess
import time

import m3u8
import pytest

from livecast import metrics
from livecast.media.ladder import PlannedRendition
from livecast.packager.live import LiveStream
from livecast.packager.playlist import RenditionReport, Variant, render_media, render_multivariant
from livecast.packager.segmenter import Segmenter
from livecast.protocols.mp4 import Fragment, FragmentSplitter, InitSegment

LL_PREFIXES = ("#EXT-X-PART", "#EXT-X-PRELOAD-HINT", "#EXT-X-RENDITION-REPORT", "#EXT-X-SERVER-CONTROL",
               "#EXT-X-SKIP")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[bytes]]:
    """24 s of tiny CMAF: keyframes every 2 s, fragments of 0.5 s, as the transcoder makes them."""
    path = tmp_path_factory.mktemp("pkg") / "out.mp4"
    subprocess.run(
        ["/usr/bin/ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", "testsrc2=size=96x64:rate=30", "-t", "24", "-c:v", "libx264", "-preset", "ultrafast",
         "-g", "60", "-sc_threshold", "0", "-f", "mp4",
         "-movflags", "+frag_keyframe+empty_moov+default_base_moof+cmaf", "-frag_duration", "500000", str(path)],
        check=True,
    )
    items = FragmentSplitter().feed(path.read_bytes())
    assert isinstance(items[0], InitSegment)
    return items[0].data, [i.data for i in items[1:] if isinstance(i, Fragment)]


def make(init: bytes, frags: list[bytes], *, window: int = 6, name: str = "480p30") -> Segmenter:
    seg = Segmenter(name, segment_duration=2.0, part_duration=0.5, window=window)
    seg.on_init(init)
    for i, frag in enumerate(frags):
        seg.on_fragment(frag, 1_700_000_000 + i * 0.5, i * 0.5)
    return seg


def test_media_playlist_tags(media: tuple[bytes, list[bytes]]) -> None:
    init, frags = media
    seg = make(init, frags[:22])  # 5 segments of 2 s and 2 parts of the sixth
    reports = [RenditionReport("480p30", 5, 1), RenditionReport("source", 5, 0)]
    text = render_media(seg, reports)
    pl = m3u8.loads(text)
    assert pl.version == 9
    assert pl.target_duration == 2
    assert pl.media_sequence == 0
    assert pl.discontinuity_sequence == 0
    assert pl.server_control.can_block_reload == "YES"
    assert pl.server_control.part_hold_back == pytest.approx(1.5)
    assert pl.server_control.can_skip_until == pytest.approx(12.0)
    assert pl.part_inf.part_target == pytest.approx(0.5)
    assert [s.uri for s in pl.segment_map] == ["init1.mp4"]
    assert [s.uri for s in pl.segments if s.uri] == [f"seg{i}.m4s" for i in range(5)]
    assert all(s.duration == pytest.approx(2.0) for s in pl.segments if s.uri)
    assert pl.segments[0].program_date_time is not None
    assert pl.segments[0].program_date_time.timestamp() == pytest.approx(1_700_000_000)
    # parts only for the last three complete segments and the open one
    with_parts = [s for s in pl.segments if s.parts]
    assert [s.uri for s in with_parts] == ["seg2.m4s", "seg3.m4s", "seg4.m4s", None]
    assert [p.uri for p in with_parts[-1].parts] == ["part5.0.m4s", "part5.1.m4s"]
    for s in with_parts:
        assert s.parts[0].independent == "YES"
        assert all(p.independent is None for p in s.parts[1:])
        assert sum(p.duration for p in s.parts) == pytest.approx(s.duration or 1.0)
    assert pl.preload_hint.hint_type == "PART" and pl.preload_hint.uri == "part5.2.m4s"
    assert [(r.uri, r.last_msn, r.last_part) for r in pl.rendition_reports] == [
        ("../source/playlist.m3u8", 5, 0)
    ]
    assert not pl.is_endlist


def test_player_ignoring_ll_tags_sees_plain_hls(media: tuple[bytes, list[bytes]]) -> None:
    init, frags = media
    seg = make(init, frags[:22])
    text = render_media(seg)
    plain = "\n".join(line for line in text.splitlines() if not line.startswith(LL_PREFIXES))
    pl = m3u8.loads(plain)
    assert [s.uri for s in pl.segments] == [f"seg{i}.m4s" for i in range(5)]
    assert pl.target_duration == 2 and pl.segment_map[0].uri == "init1.mp4"
    assert all(s.duration <= pl.target_duration for s in pl.segments)


def test_sliding_window_removes_old_media(media: tuple[bytes, list[bytes]]) -> None:
    init, frags = media
    seg = make(init, frags[:40], window=3)  # 10 segments, the last one still open
    pl = m3u8.loads(render_media(seg))
    assert pl.media_sequence == 6
    assert [s.uri for s in pl.segments if s.uri] == ["seg6.m4s", "seg7.m4s", "seg8.m4s"]
    assert seg.segment(3) is None  # beyond window + 2: gone
    assert seg.segment(4) is not None and seg.segment(4).data  # type: ignore[union-attr]
    assert all(not p.data for p in seg.segment(5).parts)  # type: ignore[union-attr]


def test_discontinuity_after_restart(media: tuple[bytes, list[bytes]]) -> None:
    init, frags = media
    seg = make(init, frags[:10], window=3)  # segments 0, 1 and half of 2
    seg.on_init(init)  # ffmpeg restarted
    for i, frag in enumerate(frags[:12]):
        seg.on_fragment(frag, 1_700_000_100 + i * 0.5, 100 + i * 0.5)
    text = render_media(seg)
    pl = m3u8.loads(text)
    assert text.count("#EXT-X-DISCONTINUITY\n") == 1
    assert [s.uri for s in pl.segment_map] == ["init1.mp4", "init2.mp4"]
    first_new = next(s for s in pl.segments if s.discontinuity)
    assert first_new.uri == "seg3.m4s"
    assert first_new.program_date_time.timestamp() == pytest.approx(1_700_000_100)
    assert pl.discontinuity_sequence == 0
    # once the discontinuity scrolls out of the window, the sequence counts it
    for i, frag in enumerate(frags[12:28]):
        seg.on_fragment(frag, 1_700_000_200 + i * 0.5, 200 + i * 0.5)
    pl = m3u8.loads(render_media(seg))
    assert pl.discontinuity_sequence == 1
    assert not any(s.discontinuity for s in pl.segments)
    assert seg.init_segment(1) is None and seg.init_segment(2) == init


def test_delta_update_skips_old_segments(media: tuple[bytes, list[bytes]]) -> None:
    init, frags = media
    seg = make(init, frags[:46], window=10)  # 11 full segments, 22 s
    full = m3u8.loads(render_media(seg))
    text = render_media(seg, skip=True)
    delta = m3u8.loads(text)
    assert delta.skip.skipped_segments == 4  # 20 s shown, the last 12 s (CAN-SKIP-UNTIL) must stay
    assert delta.media_sequence == full.media_sequence
    kept = [s.uri for s in delta.segments if s.uri]
    assert kept == [s.uri for s in full.segments if s.uri][4:]
    assert text.index("#EXT-X-SKIP") < text.index("#EXT-X-MAP")


def test_endlist_when_stream_ends(media: tuple[bytes, list[bytes]]) -> None:
    init, frags = media
    seg = make(init, frags[:9])
    seg.end()
    text = render_media(seg, [RenditionReport("source", 3, 0)])
    pl = m3u8.loads(text)
    assert pl.is_endlist
    assert "PRELOAD-HINT" not in text and "RENDITION-REPORT" not in text
    assert [s.duration for s in pl.segments] == pytest.approx([2.0, 2.0, 0.5])


def test_multivariant_playlist() -> None:
    text = render_multivariant([
        Variant("source", 3_100_000, 2_800_000, "avc1.64001f,mp4a.40.2", 1280, 720, 30.0),
        Variant("160p30", 500_000, 420_000, "avc1.64000c,mp4a.40.2", 284, 160, 30.0),
        Variant("audio_only", 170_000, 160_000, "mp4a.40.2", audio_only=True),
    ])
    pl = m3u8.loads(text)
    assert pl.is_variant
    info = [p.stream_info for p in pl.playlists]
    assert [p.uri for p in pl.playlists] == ["source/playlist.m3u8", "160p30/playlist.m3u8",
                                             "audio_only/playlist.m3u8"]
    assert (info[0].bandwidth, info[0].average_bandwidth, info[0].resolution, info[0].frame_rate) == (
        3_100_000, 2_800_000, (1280, 720), 30.0)
    assert info[0].codecs == "avc1.64001f,mp4a.40.2"
    assert info[2].resolution is None and info[2].codecs == "mp4a.40.2"
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in text


async def test_playlists_rendered_once_per_change(media: tuple[bytes, list[bytes]]) -> None:
    init, frags = media
    rendition = PlannedRendition("160p30", 160, 30, 400, 160, cost=1)
    live = LiveStream("alice", {"160p30": rendition}, 2.0, 0.5, 6)
    finished: list[tuple[str, int, int]] = []
    live.segment_listeners.append(lambda name, s, init_bytes: finished.append((name, s.msn, len(init_bytes))))
    live.on_init("160p30", init)
    for frag in frags[:6]:
        live.on_fragment("160p30", frag)
    before = metrics.playlist_renders._value.get()
    first = live.media_playlist("160p30")
    assert live.media_playlist("160p30") is first  # cached bytes, not re-rendered
    assert metrics.playlist_renders._value.get() == before + 1
    live.on_fragment("160p30", frags[6])
    assert live.media_playlist("160p30") != first
    master = live.multivariant()
    assert master is not None and b"RESOLUTION=96x64" in master
    live.end()
    assert b"#EXT-X-ENDLIST" in live.media_playlist("160p30")
    assert finished == [("160p30", 0, len(init)), ("160p30", 1, len(init))]  # once each, the last at the end


def test_aligned_keyframes_finish_segments_without_waiting(media: tuple[bytes, list[bytes]]) -> None:
    init, frags = media
    seg = Segmenter("360p30", segment_duration=2.0, part_duration=0.5, window=6, aligned_keyframes=True)
    seg.on_init(init)
    for i, frag in enumerate(frags[:4]):
        seg.on_fragment(frag, 1_700_000_000 + i * 0.5, i * 0.5)
    assert seg.current is None and seg.segments[0].complete  # done at its 4th part, not the 5th
    assert seg.next_part() == (1, 0)
    assert seg.has_part(0, None) and seg.has_part(0, 3)
    assert not seg.has_part(0, 4)  # = part 0 of segment 1, which does not exist yet
    pl = m3u8.loads(render_media(seg))
    assert [s.uri for s in pl.segments] == ["seg0.m4s"] and pl.preload_hint.uri == "part1.0.m4s"
    seg.on_fragment(frags[4], 1_700_000_002, 2.0)
    assert seg.has_part(0, 4) and seg.has_part(1, 0) and seg.segments[1].parts[0].independent


def test_multivariant_waits_for_late_renditions(media: tuple[bytes, list[bytes]]) -> None:
    """A player reads the multivariant playlist once: listing only the rendition that happened to
    be ready first would lock it out of the others for the whole session."""
    init, frags = media
    renditions = {name: PlannedRendition(name, 160, 30, 400, 160, cost=1) for name in ("160p30", "late")}
    live = LiveStream("alice", renditions, 0.2, 0.05, 6)
    live.on_init("160p30", init)
    for frag in frags[:6]:
        live.on_fragment("160p30", frag)
    assert live.ready("160p30") and not live.ready("late")
    assert live.multivariant() is None  # held while "late" may still start
    live._first_variant_at = time.monotonic() - 1.0  # the grace (2 segments = 0.4 s) has passed
    master = live.multivariant()
    assert master is not None and b"160p30/playlist.m3u8" in master and b"late/" not in master
    live.on_init("late", init)
    for frag in frags[:6]:
        live.on_fragment("late", frag)
    master = live.multivariant()
    assert master is not None and b"late/playlist.m3u8" in master
