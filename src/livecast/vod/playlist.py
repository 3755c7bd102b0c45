"""VOD and event (DVR) playlists from the archived timeline: pure functions, no I/O.

While a stream is recording its archive is an ``EVENT`` playlist that only grows, so a player
can rewind to the start of the broadcast; once it ends the same list gains
``EXT-X-PLAYLIST-TYPE:VOD`` and ``EXT-X-ENDLIST``. Every segment carries its
``EXT-X-PROGRAM-DATE-TIME`` so that seeking to a wall-clock moment (a chat message, a clip)
lands on the right segment without adding up durations. A reconnect is an
``EXT-X-DISCONTINUITY`` (the new encoder starts new timestamps and a new init segment); a
segment lost to a storage outage is listed with ``EXT-X-GAP`` so the hole is visible and a
player skips it instead of stalling.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from livecast.packager.playlist import Variant, render_multivariant

VERSION = 8  # EXT-X-GAP needs 8; EXT-X-MAP with fMP4 needs 6


@dataclass(frozen=True)
class ArchivedSegment:
    seq: int
    init_id: int
    duration: float
    start_at: dt.datetime
    discontinuity: bool = False
    gap: bool = False


# A VOD's multivariant playlist has the live one's shape: one renderer for both.
ArchivedVariant = Variant
render_master = render_multivariant


def init_name(init_id: int) -> str:
    return f"init{init_id}.mp4"


def segment_name(seq: int) -> str:
    return f"{seq}.m4s"


def _pdt(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render_vod(segments: Sequence[ArchivedSegment], *, ended: bool) -> str:
    """The media playlist of one rendition; ``ended`` makes it a VOD, otherwise an EVENT."""
    target = max((math.ceil(s.duration - 1e-3) for s in segments), default=1) or 1
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{VERSION}",
        f"#EXT-X-TARGETDURATION:{target}",
        f"#EXT-X-PLAYLIST-TYPE:{'VOD' if ended else 'EVENT'}",
        f"#EXT-X-MEDIA-SEQUENCE:{segments[0].seq if segments else 0}",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    map_id = -1
    for i, s in enumerate(segments):
        if s.discontinuity and i > 0:
            lines.append("#EXT-X-DISCONTINUITY")
        if s.init_id != map_id:
            lines.append(f'#EXT-X-MAP:URI="{init_name(s.init_id)}"')
            map_id = s.init_id
        lines.append("#EXT-X-PROGRAM-DATE-TIME:" + _pdt(s.start_at))
        if s.gap:
            lines.append("#EXT-X-GAP")
        lines.append(f"#EXTINF:{s.duration:.5f},")
        lines.append(segment_name(s.seq))
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def twitch_duration(seconds: float) -> str:
    """Helix's video duration format: ``1h2m3s``, ``4m0s``, ``17s`` (no zero hours)."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
