"""The sans-IO MP4 box reader on real ffmpeg CMAF output, and fuzzed."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livecast.protocols.mp4 import (
    Fragment,
    FragmentSplitter,
    InitSegment,
    Mp4Error,
    iter_boxes,
    parse_fragment,
    parse_init,
)

FFMPEG = "/usr/bin/ffmpeg"
FFPROBE = "/usr/bin/ffprobe"


def make_cmaf(path: Path) -> bytes:
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
         "-f", "lavfi", "-i", "sine", "-t", "4", "-c:v", "libx264", "-preset", "ultrafast", "-g", "60",
         "-sc_threshold", "0", "-c:a", "aac", "-f", "mp4",
         "-movflags", "+frag_keyframe+empty_moov+default_base_moof+cmaf", "-frag_duration", "500000", str(path)],
        check=True,
    )
    return path.read_bytes()


@pytest.fixture(scope="module")
def cmaf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    path = tmp_path_factory.mktemp("mp4") / "out.mp4"
    return path, make_cmaf(path)


def split(data: bytes, chunk: int | None = None) -> tuple[bytes, list[bytes]]:
    splitter = FragmentSplitter()
    items: list[InitSegment | Fragment] = []
    if chunk is None:
        items = splitter.feed(data)
    else:
        rnd = random.Random(chunk)
        pos = 0
        while pos < len(data):
            n = rnd.randint(1, chunk)
            items += splitter.feed(data[pos:pos + n])
            pos += n
    assert isinstance(items[0], InitSegment)
    assert all(isinstance(i, Fragment) for i in items[1:])
    return items[0].data, [i.data for i in items[1:]]


def test_init_segment_matches_ffprobe(cmaf: tuple[Path, bytes]) -> None:
    path, data = cmaf
    init, _ = split(data)
    info = parse_init(init)
    probe = json.loads(subprocess.run([FFPROBE, "-v", "error", "-show_streams", "-of", "json", str(path)],
                                      capture_output=True, check=True).stdout)
    streams = {s["codec_type"]: s for s in probe["streams"]}
    video, audio = info.video, info.audio
    assert video is not None and audio is not None
    assert (video.width, video.height) == (320, 180)
    assert video.timescale == int(streams["video"]["time_base"].split("/")[1])
    assert audio.timescale == int(streams["audio"]["time_base"].split("/")[1])
    profile_idc = {"High": 0x64, "Main": 0x4D, "Constrained Baseline": 0x42, "Baseline": 0x42}
    assert video.codec.startswith(f"avc1.{profile_idc[streams['video']['profile']]:02x}")
    assert int(video.codec[-2:], 16) == streams["video"]["level"]
    assert audio.codec == "mp4a.40.2"
    assert info.codecs == f"{video.codec},mp4a.40.2"


def test_fragments_times_counts_and_keyframes(cmaf: tuple[Path, bytes]) -> None:
    _, data = cmaf
    init, frags = split(data)
    info = parse_init(init)
    video = info.video
    assert video is not None
    expected_time = 0
    total_samples = 0
    for raw in frags:
        frag = parse_fragment(raw, info)
        run = frag.tracks[video.track_id]
        assert run.base_decode_time == expected_time  # tfdt continuous
        expected_time += run.duration
        total_samples += run.sample_count
        start = run.base_decode_time / video.timescale
        # keyframes every 60 frames = every 2 s: fragments starting there are sync, others not
        assert run.first_is_sync == (abs(start - round(start / 2) * 2) < 1e-6), start
        assert run.size > 0
    assert total_samples == 120
    assert expected_time / video.timescale == pytest.approx(4.0)


def test_split_is_independent_of_chunking(cmaf: tuple[Path, bytes]) -> None:
    _, data = cmaf
    assert split(data, chunk=7) == split(data)
    assert split(data, chunk=5000) == split(data)


def test_malformed_streams_raise_mp4error() -> None:
    with pytest.raises(Mp4Error):
        FragmentSplitter().feed(b"\x00\x00\x00\x04moof")  # size smaller than its header
    with pytest.raises(Mp4Error):
        FragmentSplitter().feed(b"\x00\x00\x00\x08mdat")  # media before an init segment
    with pytest.raises(Mp4Error):
        FragmentSplitter().feed(b"\xff\xff\xff\xffmdat")  # absurd size, refused before buffering it
    with pytest.raises(Mp4Error):
        list(iter_boxes(b"\x00\x00\x00\x10ftyp"))
    with pytest.raises(Mp4Error):
        parse_init(b"\x00\x00\x00\x08moov")
    assert FragmentSplitter().feed(b"\x00\x00\x00\x10ftypis") == []  # incomplete: wait for more


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    for fn in (lambda: FragmentSplitter().feed(data), lambda: parse_init(data), lambda: parse_fragment(data)):
        try:
            fn()
        except Mp4Error:
            pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_mutated_real_boxes(cmaf: tuple[Path, bytes], data: st.DataObject) -> None:
    _, raw = cmaf
    init, frags = split(raw)
    target = bytearray(data.draw(st.sampled_from([init, frags[0], frags[3]])))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, min(len(target), 2000) - 1))
        target[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(target)))
    info = parse_init(init)
    for blob in (bytes(target), bytes(target[:cut])):
        for fn, arg in ((parse_init, blob), (lambda b: parse_fragment(b, info), blob),
                        (FragmentSplitter().feed, init + blob)):
            try:
                fn(arg)
            except Mp4Error:
                pass
