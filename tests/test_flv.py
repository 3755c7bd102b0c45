"""FLV framing, the tag reader, and codec configuration parsed from real ffmpeg output."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from livecast.ingest.health import HealthTracker
from livecast.protocols import flv

FFMPEG = "/usr/bin/ffmpeg"


def encode(path: Path, video: str, audio: str, extra: list[str]) -> list[flv.Tag]:
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio,
         "-t", "2.5", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-c:a", "aac", *extra, "-f", "flv",
         str(path)],
        check=True, timeout=60,
    )
    reader = flv.FLVReader()
    tags = reader.feed(path.read_bytes())
    assert reader.header is not None and reader.header[:3] == b"FLV"
    return tags


def first(tags: list[flv.Tag], tag_type: int) -> bytes:
    return next(t.body for t in tags if t.tag_type == tag_type)


def test_header_and_tag_bytes() -> None:
    assert flv.header() == bytes.fromhex("464c5601 05 00000009 00000000")
    assert flv.header(has_audio=False) == bytes.fromhex("464c5601 01 00000009 00000000")
    assert flv.tag(flv.VIDEO, 0x12345678, b"ab") == bytes.fromhex("09 000002 345678 12 000000 6162 0000000d")


def test_reader_round_trip_in_pieces() -> None:
    data = flv.header() + flv.tag(flv.SCRIPT, 0, b"meta") + flv.tag(flv.AUDIO, 21, b"\xaf\x01xx") + \
        flv.tag(flv.VIDEO, 0x01000000, b"\x17\x01" + b"v" * 300)
    reader = flv.FLVReader()
    tags: list[flv.Tag] = []
    for i in range(0, len(data), 7):
        tags += reader.feed(data[i : i + 7])
    assert [(t.tag_type, t.timestamp, len(t.body)) for t in tags] == [(18, 0, 4), (8, 21, 4), (9, 0x01000000, 302)]
    assert flv.is_video_keyframe(tags[2].body) and not flv.is_avc_sequence_header(tags[2].body)


@pytest.mark.parametrize("data", [b"NOT AN FLV FILE", flv.header() + bytes.fromhex("07 000001 000000 00 000000")])
def test_reader_rejects_garbage(data: bytes) -> None:
    with pytest.raises(flv.FLVError):
        flv.FLVReader().feed(data)


@pytest.mark.parametrize(("size", "args", "profile"), [
    ("640x360", [], 0x42),  # ultrafast is Baseline; 360 is not a multiple of 16: frame cropping
    ("322x182", ["-preset", "fast", "-profile:v", "high"], 0x64),  # High (chroma_format_idc coded), cropping on both axes
    ("320x240", ["-pix_fmt", "yuv444p"], 0xF4),  # High 4:4:4: chroma_format_idc 3
])
def test_avc_config_from_ffmpeg(tmp_path: Path, size: str, args: list[str], profile: int) -> None:
    tags = encode(tmp_path / "v.flv", f"testsrc2=size={size}:rate=30", "sine", args)
    header = first(tags, flv.VIDEO)
    assert flv.is_avc_sequence_header(header) and flv.is_video_keyframe(header)
    config = flv.parse_avc_config(header)
    assert f"{config.width}x{config.height}" == size
    assert config.profile == profile and config.codec.startswith(f"avc1.{profile:02x}")
    assert config.fps == pytest.approx(30)  # x264 writes VUI timing info


@pytest.mark.parametrize(("rate", "channels", "args"), [(44100, 1, []), (48000, 2, ["-ar", "48000", "-ac", "2"])])
def test_aac_config_from_ffmpeg(tmp_path: Path, rate: int, channels: int, args: list[str]) -> None:
    tags = encode(tmp_path / "a.flv", "testsrc2=size=160x90:rate=30", "sine", args)
    header = first(tags, flv.AUDIO)
    assert flv.is_aac_sequence_header(header)
    config = flv.parse_aac_config(header)
    assert (config.codec, config.sample_rate, config.channels) == ("mp4a.40.2", rate, channels)


def test_health_from_ffmpeg_tags(tmp_path: Path) -> None:
    tags = encode(tmp_path / "h.flv", "testsrc2=size=640x360:rate=25", "sine", [])
    tracker = HealthTracker()
    for tag in tags:
        if tag.tag_type == flv.VIDEO:
            tracker.video_tag(tag.timestamp, tag.body)
        elif tag.tag_type == flv.AUDIO:
            tracker.audio_tag(tag.body)
        tracker.bytes_in(len(tag.body) + 15, tag.timestamp / 1000)
    snap = tracker.snapshot(2.5)
    assert snap["resolution"] == "640x360"
    assert snap["fps"] == pytest.approx(25, abs=0.5)
    assert snap["keyframe_interval"] == pytest.approx(30 / 25, abs=0.05)  # -g 30 at 25 fps
    total = sum(len(t.body) + 15 for t in tags)
    assert snap["bitrate_kbps"] == pytest.approx(total * 8 / 1000 / 2.5, rel=0.35)
    assert snap["audio_sample_rate"] == 44100


def test_health_sliding_window_and_timeline_restart() -> None:
    tracker = HealthTracker()
    for second in range(20):
        tracker.bytes_in(125_000, float(second))  # 1000 kbps
    tracker.bytes_in(0, 30.0)
    assert tracker.bitrate_kbps(30.0) == 0  # the window slid past the old bytes
    for i in range(60):
        tracker.video_tag(10_000 + i * 33, b"\x27\x01\x00\x00\x00x")
    assert tracker.fps() == pytest.approx(30, abs=0.5)
    tracker.video_tag(0, b"\x17\x01\x00\x00\x00x")  # a reconnected publisher starts at 0
    assert tracker.fps() is None
    tracker.video_tag(2000, b"\x17\x01\x00\x00\x00x")
    assert tracker.keyframe_interval == 2.0


@pytest.mark.parametrize("body", [b"\x17\x00\x00\x00\x00", b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f\xff\xe1\x00\x02\x67"])
def test_bad_avc_config(body: bytes) -> None:
    with pytest.raises(flv.FLVError):
        flv.parse_avc_config(body)
