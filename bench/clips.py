"""Clips: request-to-MP4-available latency for 30 s live clips, against raw ffmpeg cutting the same segments.

Usage: python -m bench clips [--quick] [--size WxH] [--clips N] [--concurrent]

ffmpeg publishes a source (default 1280x720, 30 fps, 2 s GOP) over RTMP at real-time pace;
once 30 s of it are archived, 30 s clips of the live stream are requested through Helix one
after the other (at least 5 s apart) while the stream goes on; ``--concurrent`` requests one
every 5 s regardless, which on a small machine measures queueing more than latency. Each clip is timed from the POST to the
moment its MP4 answers 200 at ``/clips/{id}/clip.mp4``: waiting for the clip's last
segment to close, the archive upload, the job queue, fetching the segments, the ffmpeg cut
and the upload of the result. The baseline, measured in the same run on the same machine,
is the ffmpeg cut alone: the same command on the same segments already on local disk
(nothing Livecast could remove). The ratio is clip latency over that.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from bench.common import percentile, table
from livecast.clips.cut import cut_command, plan_cut, video_lead, write_inputs
from livecast.config import load_settings
from livecast.identity import service as identity
from livecast.server import Runner
from livecast.vod.models import Clip, Video
from livecast.vod.service import timeline

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
CLIP_S = 30.0
WARM_S = 35.0
EVERY_S = 5.0


def make_flv(path: Path, seconds: float, size: str) -> None:
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30",
         "-f", "lavfi", "-i", "sine", "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-g", "60",
         "-b:v", "3000k", "-c:a", "aac", "-f", "flv", str(path)],
        check=True,
    )


async def one_clip(http: httpx.AsyncClient, broadcaster_id: str) -> tuple[str, float]:
    started = time.perf_counter()
    r = await http.post("/helix/clips", params={"broadcaster_id": broadcaster_id, "duration": CLIP_S})
    r.raise_for_status()
    clip_id = r.json()["data"][0]["id"]
    while True:
        # a one-byte range: the poll itself should not cost a whole download
        got = await http.get(f"/clips/{clip_id}/clip.mp4", headers={"Range": "bytes=0-0"})
        if got.status_code in (200, 206):
            return clip_id, time.perf_counter() - started
        if time.perf_counter() - started > 300:
            raise TimeoutError(f"clip {clip_id} not ready after 300 s")
        await asyncio.sleep(0.05)


async def baseline_cut(runner: Runner, clip_id: str) -> float:
    """The same ffmpeg cut on the same segments, from local files: what no pipeline can avoid."""
    platform = runner.platform
    assert platform is not None
    async with platform.db.session() as db:
        clip = await db.get(Clip, clip_id)
        assert clip is not None and clip.vod_offset is not None
        video = await db.get(Video, clip.video_id or "")
        assert video is not None
        rows = await timeline(db, video.id, video.reference)
    fps = float((video.renditions or {}).get(video.reference, {}).get("fps") or 0.0)
    plan = plan_cut(rows, clip.vod_offset, clip.vod_offset + clip.duration, fps)
    with tempfile.TemporaryDirectory(prefix="bench-clip-") as tmp:
        workdir = Path(tmp)
        inputs = await write_inputs(platform, video.id, video.reference, plan, workdir)
        plan.start += await video_lead(FFMPEG, inputs[0])
        cmd = cut_command(FFMPEG, inputs, workdir, plan, workdir / "out.mp4", workdir / "thumb.jpg")
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(*cmd)
        assert await proc.wait() == 0
        return time.perf_counter() - started


async def main(args: list[str]) -> dict[str, Any]:
    quick = "--quick" in args
    size = args[args.index("--size") + 1] if "--size" in args else ("640x360" if quick else "1280x720")
    count = int(args[args.index("--clips") + 1]) if "--clips" in args else (3 if quick else 8)
    concurrent = "--concurrent" in args
    with tempfile.TemporaryDirectory(prefix="bench-clips-") as tmp:
        root = Path(tmp)
        total = WARM_S + count * (EVERY_S if concurrent else 4 * EVERY_S) + 5  # the stream outlasts the clips
        print(f"making a {total:.0f} s {size} source ...")
        await asyncio.to_thread(make_flv, root / "src.flv", total, size)
        settings = load_settings({}, data_dir=str(root / "var"), http_port=0, rtmp_port=0, irc_port=0,
                                 log_level="WARNING")
        runner = Runner(settings)
        platform = await runner.start()
        try:
            async with platform.db.session() as db:
                user, key = await identity.create_user(db, "clipbench")
                app = await identity.ensure_admin_app(db)
                token = await identity.issue_token(db, app.client_id, user.id, ["clips:edit"])
            # a real publisher: ffmpeg sends the prepared FLV over RTMP at real-time pace
            publisher = await asyncio.create_subprocess_exec(
                FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-i", str(root / "src.flv"), "-c", "copy",
                "-f", "flv", f"rtmp://127.0.0.1:{platform.ports['rtmp']}/app/{key}")
            headers = {"Client-Id": app.client_id, "Authorization": f"Bearer {token.access_token}"}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.ports['http']}", headers=headers,
                                         timeout=30) as http:
                while True:  # wait until 30 s are archived
                    async with platform.db.session() as db:
                        v = (await db.execute(select(Video))).scalars().first()
                    if v is not None and v.duration >= CLIP_S + 2:
                        break
                    await asyncio.sleep(0.5)
                print(f"requesting {count} live clips of {CLIP_S:.0f} s ({'every' if concurrent else 'at least'}"
                      f" {EVERY_S:.0f} s apart) ...")
                if concurrent:  # a new clip every EVERY_S whether or not the last one is done
                    tasks = []
                    for _ in range(count):
                        tasks.append(asyncio.create_task(one_clip(http, user.id)))
                        await asyncio.sleep(EVERY_S)
                    results = await asyncio.gather(*tasks)
                else:  # one clip at a time: latency, not this machine's clip throughput
                    results = []
                    for _ in range(count):
                        started = time.perf_counter()
                        results.append(await one_clip(http, user.id))
                        await asyncio.sleep(max(0.0, EVERY_S - (time.perf_counter() - started)))
            if publisher.returncode is None:
                publisher.kill()
            await publisher.wait()
            print("baseline: the same cuts by ffmpeg alone ...")
            base = [await baseline_cut(runner, clip_id) for clip_id, _ in results]
        finally:
            await runner.stop()
    lat = [s for _, s in results]
    rows = [
        {"what": "clip ready (POST to MP4 200)", "n": len(lat), "p50_s": round(percentile(lat, 50), 3),
         "p95_s": round(percentile(lat, 95), 3)},
        {"what": "baseline: ffmpeg cut alone", "n": len(base), "p50_s": round(percentile(base, 50), 3),
         "p95_s": round(percentile(base, 95), 3)},
    ]
    print(table(rows))
    ratio = percentile(lat, 50) / percentile(base, 50)
    print(f"ratio p50 clip-ready / ffmpeg cut: {ratio:.2f}")
    return {"size": size, "clip_seconds": CLIP_S, "mode": "concurrent" if concurrent else "sequential", "clips": rows, "ratio_p50": round(ratio, 3),
            "latencies_s": [round(x, 3) for x in lat], "baseline_s": [round(x, 3) for x in base]}
