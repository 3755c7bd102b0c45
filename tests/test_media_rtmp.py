"""The whole video path: ffmpeg publishes over RTMP, players fetch LL-HLS from the origin."""

from __future__ import annotations

import asyncio
import json

import httpx
import m3u8

from tests.conftest import Server, wait_for


async def test_rtmp_publish_to_llhls_playback(server: Server) -> None:
    user = await server.create_user("rtmpcaster", partner=True)
    publisher = await asyncio.create_subprocess_exec(
        "/usr/bin/ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", "testsrc2=size=426x240:rate=30", "-f", "lavfi", "-i", "sine",
        "-t", "7", "-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-c:a", "aac",
        "-f", "flv", f"rtmp://127.0.0.1:{server.rtmp_port}/app/{user['stream_key']}",
    )
    try:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
            async def master_ready() -> str | None:
                r = await http.get("/hls/rtmpcaster/master.m3u8")
                if r.status_code != 200:
                    return None
                pl = m3u8.loads(r.text)
                return r.text if len(pl.playlists) == 3 else None

            master = m3u8.loads(await wait_for(master_ready, 20))
            # 240p source: no 720p/480p/360p (never upscale); 160p30 and the passthrough remain
            names = [p.uri.split("/")[0] for p in master.playlists]
            assert names == ["source", "160p30", "audio_only"]
            assert master.playlists[0].stream_info.resolution == (426, 240)
            # a live player: ffprobe reads the LL-HLS playlist while the stream is on air
            probe = await asyncio.create_subprocess_exec(
                "/usr/bin/ffprobe", "-v", "error", "-show_streams", "-of", "json",
                f"{server.http_url}/hls/rtmpcaster/160p30/playlist.m3u8", stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(probe.communicate(), 30)
            streams = {s["codec_type"]: s for s in json.loads(out)["streams"]}
            assert streams["video"]["height"] == 160 and streams["audio"]["codec_name"] == "aac"
            assert await asyncio.wait_for(publisher.wait(), 30) == 0
            # the publisher is gone; after the reconnect window the stream ends with ENDLIST
            async def ended() -> bool:
                r = await http.get("/hls/rtmpcaster/source/playlist.m3u8")
                return r.status_code == 200 and "#EXT-X-ENDLIST" in r.text

            await wait_for(ended, 20)
    finally:
        if publisher.returncode is None:
            publisher.kill()
            await publisher.wait()
