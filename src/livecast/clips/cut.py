"""Cutting a clip: archived fMP4 segments in, an H.264/AAC MP4 with ``+faststart`` out.

Segments start on keyframes, so the cut takes the segments that overlap the range (from the
node's :class:`~livecast.vod.archive.LiveBuffer` when they are still in memory, otherwise
from object storage), and lets ffmpeg decode from the first one and discard frames up to the
exact start (``-ss`` after ``-i``): the clip starts on the requested frame, not the
keyframe before it, and lasts exactly ``duration`` (``-t``). Re-encoding is what frame
accuracy costs; at most one segment is decoded for nothing. A reconnect inside the range (a
new init segment, new timestamps) is handled by ffmpeg's concat demuxer, one file per
encoder run. The thumbnail comes from the same ffmpeg run (second output, middle frame).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import update

from livecast.platform import Platform
from livecast.store.base import utcnow
from livecast.vod import ffmpeg, keys
from livecast.vod.archive import buffers
from livecast.vod.models import GAP, PROCESSING, READY, RECORDING, Clip, Video, VodSegment
from livecast.vod.service import NotYet, timeline

log = logging.getLogger("livecast.clips")

WAIT_FOR_MEDIA_S = 0.25  # a live clip's last seconds are archived within one segment duration
# A recording whose media stopped arriving (its ingest node died, storage is down for long)
# must not hold a clip forever: after this long the clip is cut from what is archived.
GIVE_UP_WAITING_S = 120.0
AUDIO_KBPS = 160
THUMB_WIDTH = 480


@dataclass
class CutPlan:
    """What to cut: segments (in order) and the range relative to the first one's start."""

    segments: list[VodSegment]
    start: float  # seconds after the first segment's start
    duration: float
    vod_offset: float
    fps: float = 0.0


def offset_at(rows: list[VodSegment], when: dt.datetime) -> float | None:
    """The VOD offset of a wall-clock moment (None if it is past the archived end)."""
    for row in rows:
        end = row.start_at + dt.timedelta(seconds=row.duration)
        if when < end:
            return row.offset + max(0.0, (when - row.start_at).total_seconds())
    return None


def plan_cut(rows: list[VodSegment], start: float, end: float, fps: float = 0.0) -> CutPlan:
    """Segments and range for [start, end) on the VOD timeline.

    With the frame rate known, the cut starts half a frame early: frame times from FLV are
    rounded to milliseconds, so cutting exactly on a frame's nominal time would keep or lose
    it by chance; half a frame early picks the frame nearest the requested time, and the
    ``duration`` that follows holds exactly ``duration * fps`` frames.
    """
    chosen = [r for r in rows if r.offset + r.duration > start + 1e-6 and r.offset < end - 1e-6 and r.status != GAP]
    if not chosen:
        raise ValueError("no archived media in the requested range")
    first = chosen[0].offset
    begin = max(start, first)
    cut_from = max(0.0, begin - first - (0.5 / fps if fps > 0 else 0.0))
    return CutPlan(chosen, cut_from, end - begin, begin, fps)


def cut_command(ffmpeg_bin: str, inputs: list[Path], workdir: Path, plan: CutPlan, out: Path,
                thumb: Path | None) -> list[str]:
    """The ffmpeg command for a clip (also what ``bench/clips.py`` times as its baseline)."""
    if len(inputs) == 1:
        source = ["-i", str(inputs[0])]
    else:
        # each run's length from the timeline: fragmented MP4 without an index makes the concat
        # demuxer guess end timestamps (the run's start included), which would open a hole
        runs: list[float] = []
        last_init = None
        for row in plan.segments:
            if row.init_id != last_init:
                runs.append(0.0)
                last_init = row.init_id
            runs[-1] += row.duration
        listing = workdir / "inputs.txt"
        listing.write_text("".join(f"file '{p.name}'\nduration {d:.6f}\n" for p, d in zip(inputs, runs, strict=True)))
        source = ["-f", "concat", "-safe", "0", "-i", str(listing)]
    cmd = [ffmpeg_bin, "-hide_banner", "-loglevel", "error", "-y", *source,
           "-map", "0:v:0?", "-map", "0:a:0?", "-ss", f"{plan.start:.6f}"]
    if plan.fps > 0:
        # exactly duration * fps frames: ffmpeg's -t alone stops a frame short when the last
        # frame's timestamp is within a frame of the end; audio ends half a frame later
        cmd += ["-frames:v", str(round(plan.duration * plan.fps)), "-t", f"{plan.duration + 0.5 / plan.fps:.6f}"]
    else:
        cmd += ["-t", f"{plan.duration:.6f}"]
    # passthrough: FLV's millisecond timestamps are not exactly 1/fps apart, and a constant
    # frame rate output would duplicate or drop a frame at the cut to even them out
    cmd += ["-fps_mode:v:0", "passthrough",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "21", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", f"{AUDIO_KBPS}k", "-movflags", "+faststart", str(out)]
    if thumb is not None:
        cmd += ["-map", "0:v:0?", "-ss", f"{plan.start + plan.duration / 2:.6f}", "-frames:v", "1",
                "-vf", f"scale='min({THUMB_WIDTH},iw)':-2", "-q:v", "4", str(thumb)]
    return cmd


async def video_lead(ffmpeg_bin: str, path: Path) -> float:
    """How much later the video starts than the file (audio often leads by a frame or two).

    Segment offsets are on the video's timeline, but ffmpeg's ``-ss`` counts from the file's
    earliest stream, so without this the cut would land up to a frame early.
    """
    ffprobe = str(Path(ffmpeg_bin).with_name("ffprobe")) if "/" in ffmpeg_bin else "ffprobe"
    out = await ffmpeg.run([ffprobe, "-v", "error", "-show_entries", "format=start_time:stream=codec_type,start_time",
                            "-of", "json", str(path)], timeout=30)
    doc = json.loads(out)
    begin = float(doc.get("format", {}).get("start_time") or 0.0)
    video = [float(s.get("start_time") or 0.0) for s in doc.get("streams", []) if s.get("codec_type") == "video"]
    return max(0.0, video[0] - begin) if video else 0.0


async def write_inputs(platform: Platform, video_id: str, rendition: str, plan: CutPlan, workdir: Path) -> list[Path]:
    """One fMP4 file per encoder run (init + its segments), from memory or storage."""
    buffer = buffers(platform).get(video_id)
    files: list[Path] = []
    current_init = -1
    handle = None
    try:
        for row in plan.segments:
            held = buffer.get(row.seq) if buffer is not None and rendition == row.rendition else None
            if held is not None:
                init, data = held.init, held.data
            else:
                data_or_none = await platform.storage.get(keys.segment_key(video_id, rendition, row.seq))
                if data_or_none is None:
                    raise FileNotFoundError(f"segment {row.seq} of {video_id}/{rendition} is missing")
                data, init = data_or_none, b""
            if row.init_id != current_init:
                if not init:
                    got = await platform.storage.get(keys.init_key(video_id, rendition, row.init_id))
                    if got is None:
                        raise FileNotFoundError(f"init {row.init_id} of {video_id}/{rendition} is missing")
                    init = got
                if handle is not None:
                    handle.close()
                path = workdir / f"run{len(files)}.mp4"
                files.append(path)
                handle = path.open("wb")
                handle.write(init)
                current_init = row.init_id
            assert handle is not None
            handle.write(data)
    finally:
        if handle is not None:
            handle.close()
    return files


async def build_clip(platform: Platform, clip_id: str) -> str:
    """Resolve the clip's range, cut it, store MP4 and thumbnail; raise :class:`NotYet` if early."""
    async with platform.db.session() as db:
        clip = await db.get(Clip, clip_id)
        if clip is None or clip.status != PROCESSING:
            return "gone"
        video = await db.get(Video, clip.video_id or "")
        if video is None or video.deleted_at is not None:
            clip.status, clip.error = "failed", "the VOD was deleted"
            return "vod deleted"
        rows = await timeline(db, video.id, video.reference)
    waited = (utcnow() - clip.created_at).total_seconds()
    recording = video.status == RECORDING and waited < GIVE_UP_WAITING_S
    archived_end = rows[-1].offset + rows[-1].duration if rows else 0.0
    if clip.vod_offset is None:
        assert clip.end_at is not None
        end = offset_at(rows, clip.end_at)
        if end is None:
            if recording:
                raise NotYet(WAIT_FOR_MEDIA_S, "the clip's last seconds are not archived yet")
            end = archived_end  # the stream ended before the request's moment was archived
        start = max(0.0, end - clip.duration)
    else:
        start = clip.vod_offset
        end = start + clip.duration
        if end > archived_end:
            if recording:
                raise NotYet(WAIT_FOR_MEDIA_S, "the clip's range is not archived yet")
            end = archived_end
    fps = float((video.renditions or {}).get(video.reference, {}).get("fps") or 0.0)
    plan = plan_cut(rows, start, end, fps)
    with tempfile.TemporaryDirectory(prefix="livecast-clip-") as tmp:
        workdir = Path(tmp)
        inputs = await write_inputs(platform, video.id, video.reference, plan, workdir)
        plan.start += await video_lead(platform.settings.ffmpeg, inputs[0])
        out, thumb = workdir / "clip.mp4", workdir / "thumb.jpg"
        await ffmpeg.run(cut_command(platform.settings.ffmpeg, inputs, workdir, plan, out, thumb), timeout=600)
        await platform.storage.put(keys.clip_key(clip_id), out.read_bytes(), "video/mp4")
        if thumb.exists():
            await platform.storage.put(keys.clip_thumbnail_key(clip_id), thumb.read_bytes(), "image/jpeg")
    async with platform.db.session() as db:
        await db.execute(update(Clip).where(Clip.id == clip_id, Clip.status == PROCESSING).values(
            status=READY, vod_offset=round(plan.vod_offset, 3), duration=round(plan.duration, 3)))
    return "ready"
