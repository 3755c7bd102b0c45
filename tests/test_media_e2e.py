"""End to end: real FLV from ffmpeg, fed at real-time pace to the media service, played from the origin."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import m3u8
import pytest

from livecast import metrics
from livecast.ingest.pipeline import StreamInfo
from livecast.media.flvsource import FlvTagReader
from livecast.media.service import MediaService, StreamSession
from tests.conftest import Server, wait_for

FFMPEG = "/usr/bin/ffmpeg"
FFPROBE = "/usr/bin/ffprobe"


def make_flv(path: Path, size: str, seconds: float) -> bytes:
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440", "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast",
         "-g", "60", "-c:a", "aac", "-f", "flv", str(path)],
        check=True,
    )
    return path.read_bytes()


@pytest.fixture(scope="module")
def flv_720(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_flv(tmp_path_factory.mktemp("flv") / "720.flv", "1280x720", 8)


@pytest.fixture(scope="module")
def flv_small(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_flv(tmp_path_factory.mktemp("flv") / "small.flv", "320x180", 12)


async def feed_realtime(session: StreamSession, flv: bytes, start: float = 0.0, stop: float | None = None) -> None:
    """Feed FLV tag by tag when its timestamp comes due, as a live publisher would."""
    reader = FlvTagReader()
    tags = reader.feed(flv)
    assert reader.header is not None
    session.feed(reader.header)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for tag in tags:
        due = tag.timestamp / 1000
        if due < start or (stop is not None and due >= stop):
            continue
        delay = t0 + due - start - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        session.feed(tag.raw)


async def open_session(server: Server, login: str, partner: bool) -> tuple[MediaService, StreamSession, StreamInfo]:
    user = await server.create_user(login, partner=partner)
    media = server.platform.state["media"]
    assert isinstance(media, MediaService)
    info = StreamInfo(stream_id="s-" + login, user_id=user["user_id"], login=login,
                      broadcaster_type="partner" if partner else "")
    session = await media.open_stream(info)
    return media, session, info


def m3u8_parts(pl: m3u8.M3U8) -> str:
    return "\n".join(f'URI="{p.uri}",' for seg in pl.segments for p in seg.parts)


def ffprobe(url: str) -> dict[str, Any]:
    out = subprocess.run(
        [FFPROBE, "-v", "error", "-show_streams", "-of", "json", url], capture_output=True, timeout=60, check=True
    )
    return dict(json.loads(out.stdout))


async def test_partner_ladder_llhls_end_to_end(server: Server, flv_720: bytes) -> None:
    media, session, info = await open_session(server, "partnerx", partner=True)
    feeder = asyncio.create_task(feed_realtime(session, flv_720))
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        assert (await http.get("/hls/partnerx/master.m3u8")).status_code == 404  # not live until probed
        await wait_for(lambda: media.stream("partnerx") is not None, 10)
        # master playlist: the whole ladder, never upscaled, 720p capped at the source's 30 fps
        r = await http.get("/hls/partnerx/master.m3u8")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/vnd.apple.mpegurl")
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.headers["cache-control"].startswith("public, max-age=0")  # edges revalidate playlists
        live = media.stream("partnerx")
        assert live is not None
        await wait_for(lambda: all(any(x.complete for x in s.segments) for s in live.segmenters.values()), 15)
        master = m3u8.loads((await http.get("/hls/partnerx/master.m3u8")).text)
        names = [p.uri.split("/")[0] for p in master.playlists]
        assert names == ["source", "720p30", "480p30", "360p30", "160p30", "audio_only"]
        by_name = {p.uri.split("/")[0]: p.stream_info for p in master.playlists}
        assert by_name["source"].resolution == (1280, 720)
        assert by_name["720p30"].resolution == (1280, 720)
        assert by_name["480p30"].resolution == (854, 480)
        assert by_name["160p30"].resolution[1] == 160
        assert by_name["480p30"].frame_rate == 30.0
        assert by_name["audio_only"].codecs == "mp4a.40.2"
        assert by_name["480p30"].codecs.startswith("avc1.") and by_name["480p30"].codecs.endswith(",mp4a.40.2")
        assert all(s.bandwidth > 0 and s.average_bandwidth for s in by_name.values())
        assert info.health["transcode"]["decision"] == "full"
        assert info.health["transcode"]["renditions"] == names

        # blocking reload: ask for the hinted next part; the answer must contain it
        body = (await http.get("/hls/partnerx/480p30/playlist.m3u8")).text
        pl = m3u8.loads(body)
        hint = pl.preload_hint.uri
        msn, idx = (int(x) for x in hint[4:-4].split("."))
        assert hint not in body.replace(f'PRELOAD-HINT:TYPE=PART,URI="{hint}"', "")
        r = await http.get("/hls/partnerx/480p30/playlist.m3u8", params={"_HLS_msn": msn, "_HLS_part": idx})
        assert r.status_code == 200
        listed = r.text.replace(f'PRELOAD-HINT:TYPE=PART,URI="{hint}"', "")
        assert f'URI="{hint}"' in listed or f"seg{msn}.m4s" in listed
        assert r.headers["content-type"].startswith("application/vnd.apple.mpegurl")
        current_init = await http.get("/hls/partnerx/480p30/init.mp4")
        assert current_init.status_code == 200 and b"moov" in current_init.content
        part = await http.get(f"/hls/partnerx/480p30/{hint}")
        assert part.status_code == 200 and part.headers["content-type"] == "video/iso.segment"
        assert part.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert b"moof" in part.content[:64]

        # a preload-hinted part that does not exist yet is held until it does
        pl = m3u8.loads((await http.get("/hls/partnerx/360p30/playlist.m3u8")).text)
        assert f'URI="{pl.preload_hint.uri}",' not in m3u8_parts(pl)
        r = await http.get(f"/hls/partnerx/360p30/{pl.preload_hint.uri}")
        assert r.status_code == 200 and r.content[4:8] in (b"moof", b"styp")

        # errors
        assert (await http.get("/hls/partnerx/480p30/playlist.m3u8", params={"_HLS_msn": "x1"})).status_code == 400
        assert (await http.get("/hls/partnerx/480p30/playlist.m3u8", params={"_HLS_msn": 10_000})).status_code == 400
        assert (await http.get("/hls/partnerx/480p30/playlist.m3u8", params={"_HLS_part": 1})).status_code == 400
        assert (await http.get("/hls/partnerx/480p30/playlist.m3u8", params={"_HLS_skip": "maybe"})).status_code == 400
        assert (await http.get("/hls/nobody_here/master.m3u8")).status_code == 404
        assert (await http.get("/hls/partnerx/1080p60/playlist.m3u8")).status_code == 404
        assert (await http.get("/hls/partnerx/480p30/seg999.m4s")).status_code == 404
        assert (await http.get("/hls/partnerx/480p30/bogus.txt")).status_code == 404

        # live thumbnail from the newest keyframe
        thumb = await http.get("/hls/partnerx/thumbnail.jpg")
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
        small = await http.get("/hls/partnerx/thumbnail-320x180.jpg")
        assert small.status_code == 200 and small.content[:2] == b"\xff\xd8"

        await feeder
        await session.close()
        for name in names:
            r = await http.get(f"/hls/partnerx/{name}/playlist.m3u8")
            pl = m3u8.loads(r.text)
            assert pl.is_endlist, name
            durations = [s.duration for s in pl.segments]
            assert len(durations) >= 3, name
            # every full segment is on the 2 s target (the last one may be cut short by the end)
            assert all(abs(d - 2.0) < 0.1 for d in durations[:-1]), (name, durations)
            parts = [p.duration for seg in pl.segments for p in seg.parts]
            assert parts and max(parts) <= pl.part_inf.part_target + 1e-3, (name, parts)  # RFC 8216bis 4.4.4.9
            init = await http.get(f"/hls/partnerx/{name}/{pl.segment_map[0].uri}")
            assert init.headers["content-type"] == "video/mp4" and b"moov" in init.content
        # ffprobe decodes every rendition from its origin URL
        for name in names:
            probe = await asyncio.to_thread(ffprobe, f"{server.http_url}/hls/partnerx/{name}/playlist.m3u8")
            kinds = {s["codec_type"]: s for s in probe["streams"]}
            assert kinds["audio"]["codec_name"] == "aac"
            if name == "audio_only":
                assert "video" not in kinds
            else:
                assert kinds["video"]["codec_name"] == "h264"
                expected = {"source": 720, "720p30": 720, "480p30": 480, "360p30": 360, "160p30": 160}[name]
                assert kinds["video"]["height"] == expected


async def test_non_partner_gets_source_and_audio_only(server: Server, flv_small: bytes) -> None:
    media, session, info = await open_session(server, "viewerx", partner=False)
    feeder = asyncio.create_task(feed_realtime(session, flv_small, stop=4.5))
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        await wait_for(lambda: media.stream("viewerx") is not None, 10)
        r = await http.get("/hls/viewerx/master.m3u8")
        assert r.status_code == 200
        live = media.stream("viewerx")
        assert live is not None
        await wait_for(lambda: all(live.ready(name) for name in live.segmenters), 15)
        master = m3u8.loads((await http.get("/hls/viewerx/master.m3u8")).text)
        assert [p.uri for p in master.playlists] == ["source/playlist.m3u8", "audio_only/playlist.m3u8"]
        assert master.playlists[0].stream_info.resolution == (320, 180)
        got = await http.get("/hls/viewerx/source/seg0.m4s")
        probe = await http.head("/hls/viewerx/source/seg0.m4s")  # CDNs probe with HEAD
        assert probe.status_code == 200 and probe.content == b""
        assert probe.headers["content-length"] == str(len(got.content))
        assert probe.headers["cache-control"] == got.headers["cache-control"]
        assert info.health["transcode"]["decision"] == "tier"
        await feeder
        await session.close()
        assert m3u8.loads((await http.get("/hls/viewerx/source/playlist.m3u8")).text).is_endlist


async def test_ffmpeg_killed_mid_stream_restarts_with_discontinuity(server: Server, flv_small: bytes) -> None:
    _, session, _ = await open_session(server, "crashy", partner=True)
    restarts = metrics.ffmpeg_restarts._value.get()
    feeder = asyncio.create_task(feed_realtime(session, flv_small))
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        await wait_for(lambda: session.live is not None and session.live.ready("160p30"), 15)
        live = session.live
        assert live is not None and session.transcoder is not None and session.transcoder.proc is not None
        await wait_for(lambda: len(live.segmenters["160p30"].segments) >= 2, 15)
        os.kill(session.transcoder.proc.pid, signal.SIGKILL)
        seg = live.segmenters["160p30"]
        await wait_for(lambda: seg.init_id >= 2 and any(s.init_id == 2 and s.complete for s in seg.segments), 15)
        assert metrics.ffmpeg_restarts._value.get() == restarts + 1
        assert session.info.health["transcode"]["ffmpeg_restarts"] == 1
        body = (await http.get("/hls/crashy/160p30/playlist.m3u8")).text
        pl = m3u8.loads(body)
        assert "#EXT-X-DISCONTINUITY\n" in body
        assert [s.uri for s in pl.segment_map] == ["init1.mp4", "init2.mp4"]
        after = [s for s in pl.segments if s.discontinuity]
        assert after and after[0].program_date_time is not None
        # the stream goes on after the restart
        last = seg.last_part()
        await wait_for(lambda: seg.last_part() > last, 10)
        assert (await http.get("/hls/crashy/160p30/init2.mp4")).status_code == 200
        feeder.cancel()
        await session.close()


async def test_publisher_reconnect_is_a_discontinuity(server: Server, flv_small: bytes) -> None:
    _, session, _ = await open_session(server, "flaky", partner=False)
    await feed_realtime(session, flv_small, stop=4.5)
    live = session.live
    assert live is not None
    seg = live.segmenters["source"]
    await wait_for(lambda: any(s.complete for s in seg.segments), 10)
    await session.publisher_lost()
    assert session.transcoder is not None and session.transcoder.proc is not None
    assert session.transcoder.proc.returncode is not None  # ffmpeg stopped while nobody publishes
    before = seg.last_part()
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        # nothing is coming while the publisher is away: a blocking reload times out with 503
        r = await http.get("/hls/flaky/source/playlist.m3u8", params={"_HLS_msn": before[0] + 1})
        assert r.status_code == 503 and r.headers["access-control-allow-origin"] == "*"
    await session.publisher_resumed()
    await feed_realtime(session, flv_small, start=6.0, stop=10.5)  # a new FLV stream, header first
    await wait_for(lambda: seg.init_id == 2 and any(s.init_id == 2 and s.complete for s in seg.segments), 10)
    assert seg.last_part() > before
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        body = (await http.get("/hls/flaky/source/playlist.m3u8")).text
    assert body.count("#EXT-X-DISCONTINUITY\n") == 1 and 'URI="init2.mp4"' in body
    await session.close()


async def test_feed_never_blocks_and_drops_whole_gops_when_ffmpeg_stalls(flv_small: bytes) -> None:
    from livecast.media import transcoder as tmod
    from livecast.media.ladder import plan_ladder

    plan = plan_ladder((), is_partner=False, non_partner_names=(), source_height=180, source_fps=30)
    stalled = tmod.Transcoder("ffmpeg", plan, tmod.SourceFormat(), segment_duration=2, part_duration=0.5,
                              on_init=lambda *_: None, on_fragment=lambda *_: None, label="stalled")
    tags = FlvTagReader().feed(flv_small)
    limit = tmod.QUEUE_LIMIT
    tmod.QUEUE_LIMIT = 100_000  # ffmpeg never started: nothing drains the queue
    try:
        for tag in tags:
            stalled.push(tag)
    finally:
        tmod.QUEUE_LIMIT = limit
    queued = list(stalled._queue)
    assert stalled._queued <= 100_000 + max(len(t.raw) for t in tags if t.is_sequence_header)
    assert stalled.dropped_bytes == sum(len(t.raw) for t in tags) - sum(len(q) for q in queued)
    assert stalled.dropped_bytes > 0
