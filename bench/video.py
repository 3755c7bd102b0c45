"""Live video: ingest-to-origin latency (LL vs segments), ladder CPU vs plain ffmpeg, streams per node.

Usage: python -m bench video [--quick]

1. Latency: a 1280x720 30 fps source is fed at real-time pace; an HTTP client follows the
   480p30 playlist with blocking reloads, once per part (LL-HLS) and once per segment (normal
   HLS, the baseline), and each part/segment is timed from when its last frame was fed to when
   its bytes arrived from the origin.
2. CPU: the default ladder through Livecast (ffmpeg + Python packaging) vs one plain ffmpeg
   command writing the same ladder as fMP4 HLS itself, on the same clip, as fast as possible.
3. Capacity: a short ramp of concurrent partner ladders, then of passthrough streams, until
   one stream's parts fall behind real time.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import percentile, table
from livecast.config import load_settings
from livecast.ingest.pipeline import StreamInfo
from livecast.media.flvsource import FlvTagReader, Tag
from livecast.media.service import MediaService, StreamSession
from livecast.server import Runner

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
WARMUP_S = 3.0  # ffmpeg start-up (stream probing, first GOP, draining that backlog) is not steady state


def make_flv(path: Path, seconds: float, size: str = "1280x720") -> Path:
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30",
         "-f", "lavfi", "-i", "sine", "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-g", "60",
         "-b:v", "4000k", "-c:a", "aac", "-f", "flv", str(path)],
        check=True,
    )
    return path


def read_tags(path: Path) -> tuple[bytes, list[Tag]]:
    reader = FlvTagReader()
    tags = reader.feed(path.read_bytes())
    assert reader.header is not None
    return reader.header, tags


def children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


async def feed_realtime(session: StreamSession, header: bytes, tags: list[Tag], fed: list[tuple[float, float]]) -> None:
    session.feed(header)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for tag in tags:
        delay = t0 + tag.timestamp / 1000 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        session.feed(tag.raw)
        if tag.kind == 9:
            fed.append((tag.timestamp / 1000, time.monotonic()))


def fed_at(fed: list[tuple[float, float]], media_time: float) -> float:
    i = bisect.bisect_right([m for m, _ in fed], media_time + 1e-3) - 1
    return fed[max(0, i)][1]


async def follow(http: httpx.AsyncClient, url: str, fed: list[tuple[float, float]], *, parts: bool,
                 stop: asyncio.Event, out: list[float]) -> None:
    """A player at the live edge: blocking reloads, then fetch each new part (or segment)."""
    import m3u8

    msn, part = 0, 0
    seen: set[str] = set()
    seg_dur: dict[int, float] = {}
    first = True
    while not stop.is_set():
        params = {"_HLS_msn": str(msn)} | ({"_HLS_part": str(part)} if parts else {})
        r = await http.get(url, params=params)
        if r.status_code != 200:
            await asyncio.sleep(0.1)
            continue
        pl = m3u8.loads(r.text)
        if pl.is_endlist:
            return
        new: list[tuple[str, float, float]] = []
        for i, seg in enumerate(pl.segments):
            n = pl.media_sequence + i
            if seg.uri:
                seg_dur[n] = seg.duration
            start = sum(seg_dur.get(k, 2.0) for k in range(n))  # the player joined at segment 0
            if parts:
                end = start
                for j, p in enumerate(seg.parts):
                    end += p.duration
                    if f"{n}.{j}" not in seen:
                        seen.add(f"{n}.{j}")
                        if not first:
                            new.append((p.uri, p.duration, end))
            elif seg.uri:
                msn = max(msn, n + 1)
                if str(n) not in seen:
                    seen.add(str(n))
                    if not first:
                        new.append((seg.uri, seg.duration, start + seg.duration))
        if parts and pl.preload_hint is not None:
            a, b = pl.preload_hint.uri[4:-4].split(".")
            msn, part = int(a), int(b)
        first = False
        for uri, duration, media_end in new:
            got = await http.get(url.rsplit("/", 1)[0] + "/" + uri)
            if got.status_code == 200 and media_end > WARMUP_S:
                # every frame in the chunk waited until the whole chunk could be fetched
                now = time.monotonic()
                frames = max(1, round(duration * 30))
                out.extend(now - fed_at(fed, media_end - (k + 1) / 30) for k in range(frames))


async def start_platform(tmp: Path, capacity: int = 1000) -> tuple[Runner, MediaService, str]:
    settings = load_settings({}, data_dir=str(tmp / "var"), http_port=0, rtmp_port=0, irc_port=0,
                             transcode_capacity=capacity, log_level="WARNING")
    runner = Runner(settings)
    platform = await runner.start()
    media = platform.state["media"]
    assert isinstance(media, MediaService)
    return runner, media, f"http://127.0.0.1:{platform.ports['http']}"


async def bench_latency(tmp: Path, clip: Path) -> dict[str, Any]:
    header, tags = read_tags(clip)
    runner, media, base = await start_platform(tmp)
    try:
        session = await media.open_stream(StreamInfo("s1", "u1", "benchlat", "partner"))
        fed: list[tuple[float, float]] = []
        stop = asyncio.Event()
        ll: list[float] = []
        normal: list[float] = []
        feeder = asyncio.create_task(feed_realtime(session, header, tags, fed))
        while media.stream("benchlat") is None:
            await asyncio.sleep(0.05)
        url = f"{base}/hls/benchlat/480p30/playlist.m3u8"
        async with httpx.AsyncClient(timeout=30) as http:
            players = [asyncio.create_task(follow(http, url, fed, parts=True, stop=stop, out=ll)),
                       asyncio.create_task(follow(http, url, fed, parts=False, stop=stop, out=normal))]
            await feeder
            stop.set()
            await session.close()
            await asyncio.gather(*players, return_exceptions=True)
    finally:
        await runner.stop()
    rows = [
        {"mode": "LL-HLS part", "frames": len(ll), "p50_ms": round(percentile(ll, 50) * 1000),
         "p95_ms": round(percentile(ll, 95) * 1000)},
        {"mode": "HLS segment (baseline)", "frames": len(normal), "p50_ms": round(percentile(normal, 50) * 1000),
         "p95_ms": round(percentile(normal, 95) * 1000)},
    ]
    print("\n(1) ingest-to-origin latency per frame (fed -> its part/segment fetched from the origin), "
          "480p30 of a 720p30 partner ladder, real-time feed")
    print(table(rows))
    ratio = percentile(ll, 50) / percentile(normal, 50) if normal else float("nan")
    print(f"LL/normal p50 ratio: {ratio:.2f}")
    return {"rows": rows, "ll_over_normal_p50": round(ratio, 3)}


async def cpu_livecast(tmp: Path, clip: Path) -> tuple[float, list[str]]:
    """CPU seconds (ffmpeg + this process) for the clip through a media session, as fast as it goes."""
    header, tags = read_tags(clip)
    runner, media, _ = await start_platform(tmp)
    try:
        session = await media.open_stream(StreamInfo("s2", "u2", "benchcpu", "partner"))
        cpu0, py0 = children_cpu(), time.process_time()
        session.feed(header)
        for tag in tags:
            session.feed(tag.raw)
            while session.transcoder is not None and session.transcoder._queued > 2_000_000:
                await asyncio.sleep(0.01)  # as fast as ffmpeg goes, never dropping
            if session.transcoder is None:
                await asyncio.sleep(0)
        while session.transcoder is not None and session.transcoder._queued:
            await asyncio.sleep(0.05)
        await session.close()
        used = children_cpu() - cpu0 + time.process_time() - py0
        assert session.transcoder is not None and session.transcoder.dropped_bytes == 0
        return used, [r.name for r in session.plan.renditions] if session.plan else []
    finally:
        await runner.stop()


async def cpu_plain(out: Path, clip: Path) -> float:
    """CPU seconds of one hand-written ffmpeg command making the same ladder as fMP4 HLS."""
    os.makedirs(out)
    graph = ("[0:v]split=4[a][b][c][d];[a]scale=-2:720[v0];[b]scale=-2:480[v1];[c]scale=-2:360[v2];"
             "[d]scale=-2:160[v3]")
    enc = ["-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-g", "60",
           "-keyint_min", "60", "-sc_threshold", "0", "-force_key_frames", "expr:gte(t,n_forced*2)"]
    rates = []
    for i, kbps in enumerate((3000, 1500, 800, 400), start=1):
        rates += [f"-b:v:{i}", f"{kbps}k", f"-maxrate:v:{i}", f"{kbps}k", f"-bufsize:v:{i}", f"{2 * kbps}k"]
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-i", str(clip), "-filter_complex", graph,
           "-map", "0:v", "-map", "[v0]", "-map", "[v1]", "-map", "[v2]", "-map", "[v3]",
           "-map", "0:a", "-map", "0:a", "-map", "0:a", "-map", "0:a", "-map", "0:a", "-map", "0:a",
           *enc, "-c:v:0", "copy", *rates, "-c:a", "copy",
           "-f", "hls", "-hls_segment_type", "fmp4", "-hls_time", "2", "-hls_list_size", "6",
           "-var_stream_map", "v:0,a:0 v:1,a:1 v:2,a:2 v:3,a:3 v:4,a:4 a:5",
           "-master_pl_name", "master.m3u8", str(out / "v%v" / "playlist.m3u8")]
    cpu0 = children_cpu()
    proc = await asyncio.create_subprocess_exec(*cmd)
    assert await proc.wait() == 0
    return children_cpu() - cpu0


async def bench_cpu(tmp: Path, clip: Path, seconds: float, rounds: int) -> dict[str, Any]:
    # alternate the two and keep each one's best round: other work on a shared machine only adds
    ours_runs, plain_runs = [], []
    renditions: list[str] = []
    for i in range(rounds):
        used, renditions = await cpu_livecast(tmp / f"cpu{i}", clip)
        ours_runs.append(used)
        plain_runs.append(await cpu_plain(tmp / f"plain{i}", clip))
    ours, plain = min(ours_runs), min(plain_runs)
    per_min = 60 / seconds
    rows = [{"ladder": "livecast (ffmpeg + packaging)", "cpu_s_per_min": round(ours * per_min, 1),
             "rounds": " ".join(f"{x * per_min:.1f}" for x in ours_runs)},
            {"ladder": "plain ffmpeg -f hls (baseline)", "cpu_s_per_min": round(plain * per_min, 1),
             "rounds": " ".join(f"{x * per_min:.1f}" for x in plain_runs)}]
    print(f"\n(2) transcoding CPU for the default ladder ({', '.join(renditions)}), {seconds:g} s 720p30 clip, "
          f"best of {rounds}")
    print(table(rows))
    ratio = ours / plain
    print(f"livecast/plain ratio: {ratio:.3f} (target < 1.10)")
    return {"rows": rows, "ratio": round(ratio, 3), "target": 1.10}


async def run_streams(tmp: Path, clip: Path, count: int, partner: bool) -> tuple[bool, float]:
    """Run ``count`` streams in real time; sustained if every part stays within 1 s of its frame."""
    header, tags = read_tags(clip)
    runner, media, _ = await start_platform(tmp)
    lags: list[float] = []
    sessions: list[StreamSession] = []
    try:
        feds: list[list[tuple[float, float]]] = []
        feeders = []
        for i in range(count):
            s = await media.open_stream(StreamInfo(f"r{i}", f"u{i}", f"ramp{i}", "partner" if partner else ""))
            sessions.append(s)
            feds.append([])
            feeders.append(asyncio.create_task(feed_realtime(s, header, tags, feds[-1])))
        totals: dict[tuple[int, str], float] = {}
        half = tags[-1].timestamp / 2000

        def listener_for(i: int) -> Any:
            def on_part(name: str, seg: Any) -> None:
                end = totals.get((i, name), 0.0) + seg.segments[-1].parts[-1].duration
                totals[(i, name)] = end
                if end > half:
                    lags.append(time.monotonic() - fed_at(feds[i], end - 1 / 30))
            return on_part

        attached: set[int] = set()
        while not all(f.done() for f in feeders):
            for i, s in enumerate(sessions):
                if i not in attached and s.live is not None:
                    s.live.part_listeners.append(listener_for(i))
                    attached.add(i)
            await asyncio.sleep(0.05)
        dropped = sum(s.transcoder.dropped_bytes for s in sessions if s.transcoder)
    finally:
        for s in sessions:
            await s.close()
        await runner.stop()
    p95 = percentile(lags, 95) if lags else float("inf")
    return dropped == 0 and p95 < 1.0, p95


async def bench_capacity(tmp: Path, clip: Path, quick: bool) -> dict[str, Any]:
    rows = []
    best = {"partner": 0, "passthrough": 0}
    steps = {"partner": [1, 2, 3] if not quick else [1, 2], "passthrough": [1, 4, 8, 16, 32] if not quick else [1, 4, 8]}
    for kind, counts in steps.items():
        for n in counts:
            ok, p95 = await run_streams(tmp / f"{kind}{n}", clip, n, kind == "partner")
            rows.append({"streams": f"{n} {kind}", "sustained": ok, "part_lag_p95_ms": round(p95 * 1000)})
            if not ok:
                break
            best[kind] = n
    print("\n(3) concurrent streams this machine keeps in real time "
          f"({os.cpu_count()} cores; 720p30 source; part lag p95 < 1 s, nothing dropped)")
    print(table(rows))
    print(f"sustained: {best['partner']} partner ladders, {best['passthrough']} passthrough streams "
          f"(ratio passthrough/ladder {best['passthrough'] / max(best['partner'], 1):.1f})")
    return {"rows": rows, "max_partner_ladders": best["partner"], "max_passthrough": best["passthrough"]}


async def main(args: list[str]) -> dict[str, Any]:
    quick = "--quick" in args
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        lat_s, cpu_s, ramp_s = (10, 10, 8) if quick else (24, 20, 12)
        results: dict[str, Any] = {"quick": quick, "cores": os.cpu_count()}
        results["latency"] = await bench_latency(tmp / "lat", make_flv(tmp / "lat.flv", lat_s))
        results["cpu"] = await bench_cpu(tmp, make_flv(tmp / "cpu.flv", cpu_s), cpu_s, 2 if quick else 3)
        results["capacity"] = await bench_capacity(tmp, make_flv(tmp / "ramp.flv", ramp_s), quick)
    return results
