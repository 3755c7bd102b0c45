"""HLS / LL-HLS origin routes: playlists (with blocking reload), init segments, segments, parts.

Thin: the live state is in :class:`~livecast.packager.live.LiveStream`; this module maps
URLs to it, holds blocking requests until the media they ask for exists (RFC 8216bis
6.2.5.2), and sets the caching headers a CDN edge needs: media objects never change, so
they are immutable for a year; playlists change every part, so edges must revalidate.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import FastAPI, Request, Response

from livecast.app import error_response
from livecast.delivery.head import HeadAsGet
from livecast.delivery.query import (
    QueryError,
    parse_hls_query,
    parse_media_name,
    parse_thumbnail_name,
    too_far_ahead,
)
from livecast.limits import blocking_gate
from livecast.logs import event
from livecast.media.service import media_of
from livecast.packager.live import LiveStream
from livecast.platform import Platform

log = logging.getLogger("livecast.delivery")

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
IMMUTABLE = "public, max-age=31536000, immutable"
LIVE_PLAYLIST = "public, max-age=0, s-maxage=0, must-revalidate"
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Age, Date, Content-Length"}
THUMBNAIL_TTL = 60.0


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    response = error_response(status, message, headers={**CORS, **(headers or {})})
    response.headers["Cache-Control"] = "no-store" if status != 404 else "public, max-age=1"
    return response


def _ok(body: bytes, media_type: str, cache: str) -> Response:
    return Response(body, media_type=media_type, headers={**CORS, "Cache-Control": cache})


def install(app: FastAPI, platform: Platform) -> None:
    app.add_middleware(HeadAsGet, prefixes=("/hls/", "/vods/", "/clips/"))
    gate = blocking_gate(platform)
    def stream_of(login: str) -> LiveStream | None:
        media = media_of(platform)
        return media.stream(login) if media is not None else None

    @app.get("/hls/{login}/master.m3u8")
    async def master(login: str) -> Response:
        live = stream_of(login)
        if live is None:
            return _error(404, f"{login} is not live")
        body = live.multivariant()
        if body is None:
            # the stream is starting: hold briefly for the first segment rather than 404
            await live.wait_for(lambda: live.multivariant() is not None, 2 * live.segment_duration + 2)
            body = live.multivariant()
        if body is None:
            return _error(404, f"{login} has no media yet", {"Retry-After": "1"})
        return _ok(body, PLAYLIST_TYPE, LIVE_PLAYLIST)

    @app.get("/hls/{login}/{name}")
    async def thumbnail(login: str, name: str) -> Response:
        size = parse_thumbnail_name(name)
        live = stream_of(login)
        if size is False or live is None:
            return _error(404, "not found")
        assert size is not True
        image = await _thumbnail(platform.settings.ffmpeg, live, size)
        if image is None:
            return _error(404, "no picture yet", {"Retry-After": "2"})
        return _ok(image, "image/jpeg", "public, max-age=60")

    @app.get("/hls/{login}/{rendition}/playlist.m3u8")
    async def playlist(login: str, rendition: str, request: Request) -> Response:
        live = stream_of(login)
        if live is None or rendition not in live.segmenters:
            return _error(404, "no such stream or rendition")
        try:
            query = parse_hls_query(request.query_params)
        except QueryError as exc:
            return _error(400, str(exc))
        seg = live.segmenters[rendition]
        cache = LIVE_PLAYLIST
        if query.msn is not None:
            last_msn, last_part = seg.last_part()
            per = round(seg.segment_duration / seg.part_duration)
            if not seg.ended and too_far_ahead(query, last_msn, last_part, part_target=seg.part_duration,
                                               parts_per_segment=per):
                return _error(400, f"_HLS_msn/_HLS_part too far ahead of the live edge ({last_msn}.{last_part})")
            msn, part = query.msn, query.part
            timeout = 3 * seg.target_duration
            if not (seg.has_part(msn, part) or seg.ended):
                # Each held request is a socket and a task: past the cap, answer now (livecast.limits).
                if not gate.try_enter():
                    return _error(503, "too many blocking playlist requests; retry", {"Retry-After": "1"})
                try:
                    arrived = await live.wait_for(lambda: seg.has_part(msn, part) or seg.ended, timeout)
                finally:
                    gate.leave()
                if not arrived:
                    return _error(503, "the requested part did not arrive in time", {"Retry-After": "1"})
            cache = f"public, max-age={6 * seg.target_duration}"
        if not live.ready(rendition):
            await live.wait_for(lambda: live.ready(rendition), 2 * live.segment_duration + 2)
            if not live.ready(rendition):
                return _error(404, "no media yet", {"Retry-After": "1"})
        response = _ok(live.media_playlist(rendition, skip=query.skip), PLAYLIST_TYPE, cache)
        if query.msn is not None:
            # nginx edges cache plain playlists for about a second whatever Cache-Control says;
            # a blocking answer for one part stays valid, so they may keep it as long as players.
            response.headers["X-Accel-Expires"] = str(6 * seg.target_duration)
        return response

    @app.get("/hls/{login}/{rendition}/{name}")
    async def media(login: str, rendition: str, name: str) -> Response:
        live = stream_of(login)
        parsed = parse_media_name(name)
        if live is None or parsed is None or rendition not in live.segmenters:
            return _error(404, "not found")
        seg = live.segmenters[rendition]
        if parsed.kind == "init":
            data = seg.init_segment(parsed.init_id)
            if data is None:
                return _error(404, "no init segment")
            cache = IMMUTABLE if parsed.init_id is not None else LIVE_PLAYLIST
            return _ok(data, "video/mp4", cache)
        if parsed.kind == "segment":
            segment = seg.segment(parsed.msn)
            if segment is None or not segment.complete:
                return _error(404, "segment not available")
            return _ok(segment.data, "video/iso.segment", IMMUTABLE)
        # a part: wait for it if it is the one the playlist hinted at (preload hint)
        msn, index = parsed.msn, parsed.index

        def available() -> bool:
            s = seg.segment(msn)
            return s is not None and (len(s.parts) > index or s.complete)

        nxt = seg.next_part()
        if not available() and (msn, index) <= nxt and msn >= nxt[0] - 1:
            if not gate.try_enter():
                return _error(503, "too many blocking requests; retry", {"Retry-After": "1"})
            try:
                await live.wait_for(available, 3 * seg.target_duration)
            finally:
                gate.leave()
        s = seg.segment(msn)
        if s is None or index >= len(s.parts) or not s.parts[index].data:
            return _error(404, "part not available")
        return _ok(s.parts[index].data, "video/iso.segment", IMMUTABLE)


async def _thumbnail(ffmpeg: str, live: LiveStream, size: tuple[int, int] | None) -> bytes | None:
    """A JPEG of the newest keyframe, made at most once a minute per size by one ffmpeg call."""
    key = f"{size[0]}x{size[1]}" if size else "full"
    cached = live.thumbnails.get(key)
    if cached and time.monotonic() - cached[0] < THUMBNAIL_TTL:
        return cached[1]
    async with live.thumbnail_lock:
        cached = live.thumbnails.get(key)
        if cached and time.monotonic() - cached[0] < THUMBNAIL_TTL:
            return cached[1]
        seg = live.best_video()
        if seg is None:
            return cached[1] if cached else None
        complete = [s for s in seg.segments if s.complete and s.data]
        segment = complete[-1] if complete else None
        init = seg.init_segment(segment.init_id) if segment else None
        if segment is None or init is None:
            return cached[1] if cached else None
        scale = ["-vf", f"scale={size[0]}:{size[1]}:force_original_aspect_ratio=decrease"] if size else []
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "mp4", "-i", "pipe:0", "-frames:v", "1",
               *scale, "-q:v", "4", "-f", "image2", "-c:v", "mjpeg", "pipe:1"]
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(init + segment.data), 15)
        except (OSError, TimeoutError) as exc:
            event(log, "thumbnail failed", logging.WARNING, stream=live.login, error=str(exc))
            return cached[1] if cached else None
        if proc.returncode != 0 or not out:
            event(log, "thumbnail failed", logging.WARNING, stream=live.login, error=err.decode(errors="replace")[-200:])
            return cached[1] if cached else None
        live.thumbnails[key] = (time.monotonic(), out)
        return out
