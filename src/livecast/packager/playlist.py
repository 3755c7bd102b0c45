"""M3U8 rendering (RFC 8216bis): media playlists with the LL-HLS tags, and the multivariant one.

Pure functions of the segmenter state. The low-latency tags (PART, PRELOAD-HINT,
RENDITION-REPORT, SERVER-CONTROL) sit beside a complete ordinary playlist, so a player that
ignores them plays plain HLS from the same bytes. The origin renders once per change and
serves the cached bytes to every request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from livecast.packager.segmenter import PARTS_KEPT_SEGMENTS, Segment, Segmenter

VERSION = 9  # EXT-X-SKIP needs 9; fMP4 with EXT-X-MAP needs 6


@dataclass(frozen=True)
class RenditionReport:
    name: str
    last_msn: int
    last_part: int


@dataclass(frozen=True)
class Variant:
    name: str
    bandwidth: int
    average_bandwidth: int
    codecs: str
    width: int = 0
    height: int = 0
    fps: float = 0.0
    audio_only: bool = False


def init_uri(init_id: int) -> str:
    return f"init{init_id}.mp4"


def segment_uri(msn: int) -> str:
    return f"seg{msn}.m4s"


def part_uri(msn: int, index: int) -> str:
    return f"part{msn}.{index}.m4s"


def skip_count(seg: Segmenter, shown: Sequence[Segment]) -> int:
    """How many leading segments a delta update may replace with EXT-X-SKIP.

    Only complete segments wholly older than CAN-SKIP-UNTIL (six target durations) from the
    playlist's end, and never across a discontinuity, so the client's merge stays trivial.
    """
    skip_until = 6 * seg.target_duration
    total = sum(s.duration for s in shown)
    count = 0
    elapsed = 0.0
    for s in shown:
        elapsed += s.duration
        if not s.complete or s.discontinuity or total - elapsed < skip_until:
            break
        count += 1
    return count


def render_media(seg: Segmenter, reports: Sequence[RenditionReport] = (), *, skip: bool = False) -> str:
    shown = seg.visible
    target = seg.target_duration
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{VERSION}",
        f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
        f"PART-HOLD-BACK={3 * seg.part_duration:.3f},CAN-SKIP-UNTIL={6 * target:.1f}",
        f"#EXT-X-PART-INF:PART-TARGET={seg.part_duration:.3f}",
        f"#EXT-X-MEDIA-SEQUENCE:{shown[0].msn if shown else seg.next_msn}",
        f"#EXT-X-DISCONTINUITY-SEQUENCE:{seg.discontinuity_sequence}",
    ]
    skipped = skip_count(seg, shown) if skip else 0
    if skipped:
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
    last_complete = max((s.msn for s in shown if s.complete), default=-1)
    map_id = -1
    for i, s in enumerate(shown):
        if i < skipped:
            continue
        if s.discontinuity and i > 0:
            lines.append("#EXT-X-DISCONTINUITY")
        if s.init_id != map_id:
            lines.append(f'#EXT-X-MAP:URI="{init_uri(s.init_id)}"')
            map_id = s.init_id
        if i == skipped or s.discontinuity:
            lines.append("#EXT-X-PROGRAM-DATE-TIME:" + s.start.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
        if not s.parts_expired and (not s.complete or s.msn > last_complete - PARTS_KEPT_SEGMENTS):
            for p in s.parts:
                attrs = f'DURATION={p.duration:.5f},URI="{part_uri(s.msn, p.index)}"'
                if p.independent:
                    attrs += ",INDEPENDENT=YES"
                lines.append("#EXT-X-PART:" + attrs)
        if s.complete:
            lines.append(f"#EXTINF:{s.duration:.5f},")
            lines.append(segment_uri(s.msn))
    if seg.ended:
        lines.append("#EXT-X-ENDLIST")
    else:
        msn, index = seg.next_part()
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{part_uri(msn, index)}"')
        for r in reports:
            if r.name == seg.name or r.last_msn < 0:
                continue
            lines.append(
                f'#EXT-X-RENDITION-REPORT:URI="../{r.name}/playlist.m3u8",LAST-MSN={r.last_msn},LAST-PART={r.last_part}'
            )
    return "\n".join(lines) + "\n"


def report_of(seg: Segmenter) -> RenditionReport:
    msn, part = seg.last_part()
    return RenditionReport(seg.name, msn, part)


def render_multivariant(variants: Sequence[Variant]) -> str:
    lines = ["#EXTM3U", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for v in variants:
        attrs = [f"BANDWIDTH={max(v.bandwidth, 1)}"]
        if v.average_bandwidth:
            attrs.append(f"AVERAGE-BANDWIDTH={v.average_bandwidth}")
        if v.codecs:
            attrs.append(f'CODECS="{v.codecs}"')
        if not v.audio_only and v.width and v.height:
            attrs.append(f"RESOLUTION={v.width}x{v.height}")
        if not v.audio_only and v.fps:
            attrs.append(f"FRAME-RATE={v.fps:.3f}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attrs))
        lines.append(f"{v.name}/playlist.m3u8")
    return "\n".join(lines) + "\n"
