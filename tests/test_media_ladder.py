"""Ladder policy, the ffmpeg command it produces, and reading the source format from FLV."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from livecast.config import DEFAULT_LADDER
from livecast.media.flvsource import FlvTagReader, SourceFormat, source_format
from livecast.media.ladder import plan_ladder
from livecast.media.transcoder import build_command

NON_PARTNER = ("source", "audio_only")


def names(plan: object) -> list[str]:
    return [r.name for r in plan.renditions]  # type: ignore[attr-defined]


def test_partner_full_ladder_capped_at_source_fps() -> None:
    plan = plan_ladder(DEFAULT_LADDER, is_partner=True, non_partner_names=NON_PARTNER, source_height=1080,
                       source_fps=30, capacity=8)
    assert names(plan) == ["source", "720p30", "480p30", "360p30", "160p30", "audio_only"]
    assert plan.decision == "full" and plan.cost == 8
    plan60 = plan_ladder(DEFAULT_LADDER, is_partner=True, non_partner_names=NON_PARTNER, source_height=1080,
                         source_fps=60, capacity=8)
    assert names(plan60)[1] == "720p60" and plan60.renditions[1].fps == 60


def test_never_upscale() -> None:
    plan = plan_ladder(DEFAULT_LADDER, is_partner=True, non_partner_names=NON_PARTNER, source_height=480,
                       source_fps=30, capacity=8)
    assert names(plan) == ["source", "480p30", "360p30", "160p30", "audio_only"]
    assert "no upscale to 720p60" in plan.reason


def test_non_partner_tier_and_missing_tracks() -> None:
    plan = plan_ladder(DEFAULT_LADDER, is_partner=False, non_partner_names=NON_PARTNER, source_height=1080,
                       source_fps=30, capacity=8)
    assert names(plan) == ["source", "audio_only"] and plan.decision == "tier"
    silent = plan_ladder(DEFAULT_LADDER, is_partner=False, non_partner_names=NON_PARTNER, source_height=1080,
                         source_fps=30, has_audio=False, capacity=8)
    assert names(silent) == ["source"]


def test_capacity_degrades_then_passthrough_and_partners_first() -> None:
    kw = {"non_partner_names": ("source", "480p30", "audio_only"), "source_height": 1080, "source_fps": 30,
          "capacity": 8}
    degraded = plan_ladder(DEFAULT_LADDER, is_partner=True, used=2, **kw)  # type: ignore[arg-type]
    assert degraded.decision == "degraded" and "720p30" not in names(degraded)
    assert names(degraded) == ["source", "480p30", "360p30", "160p30", "audio_only"]
    assert "dropped 720p30" in degraded.reason
    full = plan_ladder(DEFAULT_LADDER, is_partner=True, used=7, **kw)  # type: ignore[arg-type]
    assert full.decision == "passthrough" and names(full) == ["source", "audio_only"] and full.cost == 0
    # non-partners may not eat the half of the node kept for partners
    other = plan_ladder(DEFAULT_LADDER, is_partner=False, used=3, **kw)  # type: ignore[arg-type]
    assert other.decision == "passthrough"
    partner = plan_ladder(DEFAULT_LADDER, is_partner=True, used=3, **kw)  # type: ignore[arg-type]
    assert partner.decision == "degraded" and "480p30" in names(partner)
    assert partner.health() == {"renditions": names(partner), "decision": "degraded", "reason": partner.reason}


def test_command_decodes_once_and_aligns_keyframes() -> None:
    plan = plan_ladder(DEFAULT_LADDER, is_partner=True, non_partner_names=NON_PARTNER, source_height=720,
                       source_fps=30, capacity=8)
    fmt = SourceFormat(1280, 720, 30.0, True, True, True)
    cmd = build_command("ffmpeg", plan, fmt, [10, 11, 12, 13, 14, 15], segment_duration=2, part_duration=0.5)
    assert cmd.count("-i") == 1 and cmd[cmd.index("-i") + 1] == "pipe:0"
    graph = cmd[cmd.index("-filter_complex") + 1]
    assert graph.startswith("[0:v]split=4")
    assert cmd.count("libx264") == 4
    assert cmd.count("expr:gte(t,n_forced*2)") == 4 and cmd.count("-sc_threshold") == 4
    assert [a for a in cmd if a.startswith("pipe:")] == ["pipe:0"] + [f"pipe:{fd}" for fd in range(10, 16)]
    assert cmd.count("copy") == 1 + 6  # source video, and AAC audio copied into every output
    assert cmd.count("-movflags") == 6


def test_source_format_from_sps(tmp_path: Path) -> None:
    path = tmp_path / "x.flv"
    subprocess.run(["/usr/bin/ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
                    "-i", "testsrc2=size=426x240:rate=25", "-t", "0.5", "-c:v", "libx264", "-f", "flv", str(path)],
                   check=True)
    reader = FlvTagReader()
    tags = reader.feed(path.read_bytes())
    fmt = source_format(tags, {"height": 999})  # the SPS wins over onMetaData
    assert (fmt.width, fmt.height, fmt.fps) == (426, 240, pytest.approx(25.0))
    assert fmt.has_video and not fmt.has_audio
    assert source_format([], {"width": 640.0, "height": 360.0, "framerate": 29.97}).height == 360


def test_node_capacity_is_shared_and_released() -> None:
    from types import SimpleNamespace

    from livecast.config import load_settings
    from livecast.ingest.pipeline import StreamInfo
    from livecast.media.service import MediaService

    platform = SimpleNamespace(settings=load_settings({}, transcode_capacity=10), state={})
    media = MediaService(platform)  # type: ignore[arg-type]
    assert platform.state["media"] is media
    first = media.reserve(StreamInfo("1", "u1", "a", "partner"), 1080, 30, True, True)
    second = media.reserve(StreamInfo("2", "u2", "b", "partner"), 1080, 30, True, True)
    assert first.decision == "full" and media.used == 8 + second.cost
    assert second.decision == "passthrough" and "8/10" in second.reason
    media.release(first)
    third = media.reserve(StreamInfo("3", "u3", "c", "partner"), 1080, 30, True, True)
    assert third.decision == "full"


def test_part_target_is_whole_frames() -> None:
    from livecast.media.ladder import PlannedRendition
    from livecast.media.transcoder import part_target

    video = PlannedRendition("480p30", 480, 30, 1500, 160, cost=2)
    assert part_target(video, 0.5, 30) == 0.5
    assert part_target(PlannedRendition("source", 0, 0, 0, 160, passthrough=True), 0.5, 25) == pytest.approx(0.52)
    assert part_target(PlannedRendition("audio_only", 0, 0, 0, 160, audio_only=True), 0.5, 25) == 0.5
