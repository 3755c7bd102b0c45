"""HTTP for VODs and clips: Helix routes, HLS playback from storage, clip files and pages.

URLs: ``/vods/{video_id}/master.m3u8``, ``/vods/{video_id}/{rendition}/playlist.m3u8`` and
its ``init{n}.mp4`` / ``{seq}.m4s``, ``/vods/{video_id}/thumb-{w}x{h}.jpg``;
``/clips/{clip_id}/clip.mp4`` and ``/clips/{clip_id}/thumb-{w}x{h}.jpg``; pages
``/videos/{id}``, ``/{login}/clip/{id}`` and ``/embed/clip/{id}``. Every id is checked
against its pattern before any lookup (:mod:`livecast.vod.keys`), then found in the database,
and only then turned into a storage key: a request can name an object, never a path.

Media objects never change once written, so they are cacheable for a year; a recording's
event playlist for less than a segment, a finished VOD's for a while.
"""

from __future__ import annotations

import html
import re

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import update

from livecast.app import error_response
from livecast.clips.helix import router as clips_router
from livecast.identity.models import User
from livecast.platform import Platform
from livecast.vod import keys, service
from livecast.vod.helix import router as videos_router
from livecast.vod.models import READY, RECORDING, Clip

IMMUTABLE = "public, max-age=31536000, immutable"
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
THUMB_NAME = re.compile(r"^thumb-\d{1,5}x\d{1,5}\.jpg$")
# ASCII digits, at most 15: \d also matches other scripts' digits, and int() of a 5,000-digit
# header raised ValueError (a 500; found by fuzzing). A range that does not match is ignored.
_RANGE = re.compile(r"^bytes=([0-9]{0,15})-([0-9]{0,15})$")


def _not_found() -> Response:
    return error_response(404, "Not Found")


def _media(body: bytes, media_type: str, cache: str) -> Response:
    return Response(body, media_type=media_type, headers={"Cache-Control": cache, "Access-Control-Allow-Origin": "*"})


def _ranged(request: Request, body: bytes, media_type: str) -> Response:
    """Single byte ranges, so browsers can seek in clip MP4s (``Accept-Ranges: bytes``)."""
    headers = {"Cache-Control": IMMUTABLE, "Access-Control-Allow-Origin": "*", "Accept-Ranges": "bytes"}
    match = _RANGE.match(request.headers.get("range", "").strip())
    if match is None or not (match.group(1) or match.group(2)):
        return Response(body, media_type=media_type, headers=headers)
    size = len(body)
    if match.group(1):
        start = int(match.group(1))
        end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
    else:
        start, end = max(0, size - int(match.group(2))), size - 1
    if start >= size or start > end:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}", **headers})
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return Response(body[start:end + 1], status_code=206, media_type=media_type, headers=headers)


def build_router(platform: Platform) -> APIRouter:
    router = APIRouter()

    @router.get("/vods/{video_id}/{name}", include_in_schema=False)
    async def vod_file(video_id: str, name: str) -> Response:
        if not keys.valid_video_id(video_id):
            return _not_found()
        if name == "master.m3u8":
            body = await service.master_playlist(platform, video_id)
            return _not_found() if body is None else _media(body, PLAYLIST_TYPE, "public, max-age=1")
        if THUMB_NAME.match(name):
            async with platform.db.session() as db:
                video = await service.visible_video(db, video_id)
            if video is None or not video.thumbnail_key:
                return _not_found()
            jpeg = await platform.storage.get(keys.video_thumbnail_key(video_id))
            return _not_found() if jpeg is None else _media(jpeg, "image/jpeg", "public, max-age=3600")
        return _not_found()

    @router.get("/vods/{video_id}/{rendition}/{name}", include_in_schema=False)
    async def vod_media(video_id: str, rendition: str, name: str) -> Response:
        if not keys.valid_video_id(video_id) or not keys.valid_rendition(rendition):
            return _not_found()
        if name == "playlist.m3u8":
            body = await service.media_playlist(platform, video_id, rendition)
            if body is None:
                return _not_found()
            ended = b"#EXT-X-ENDLIST" in body[-64:]
            return _media(body, PLAYLIST_TYPE, "public, max-age=60" if ended else "public, max-age=1")
        data = await service.media_object(platform, video_id, rendition, name)
        if data is None:
            return _not_found()
        return _media(data, "video/mp4" if name.endswith(".mp4") else "video/iso.segment", IMMUTABLE)

    @router.get("/clips/{clip_id}/{name}", include_in_schema=False)
    async def clip_file(clip_id: str, name: str, request: Request) -> Response:
        if not keys.valid_clip_id(clip_id) or (name != "clip.mp4" and not THUMB_NAME.match(name)):
            return _not_found()
        async with platform.db.session() as db:
            clip = await db.get(Clip, clip_id)
        if clip is None or clip.status != READY:
            return _not_found()
        if name != "clip.mp4":
            jpeg = await platform.storage.get(keys.clip_thumbnail_key(clip_id))
            return _not_found() if jpeg is None else _media(jpeg, "image/jpeg", IMMUTABLE)
        body = await platform.storage.get(keys.clip_key(clip_id))
        if body is None:
            return _not_found()
        if request.headers.get("range", "bytes=0-").startswith("bytes=0-"):  # a new view, not a seek
            async with platform.db.session() as db:
                await db.execute(update(Clip).where(Clip.id == clip_id).values(view_count=Clip.view_count + 1))
        return _ranged(request, body, "video/mp4")

    @router.get("/embed/clip/{clip_id}", include_in_schema=False)
    async def clip_embed(clip_id: str) -> Response:
        return await _clip_page(platform, clip_id, None, embed=True)

    @router.get("/videos/{video_id}", include_in_schema=False)
    async def video_page(video_id: str) -> Response:
        async with platform.db.session() as db:
            video = await service.visible_video(db, video_id)
            owner = await db.get(User, video.user_id) if video is not None else None
        if video is None or owner is None or video.status not in (READY, RECORDING):
            return HTMLResponse(_page("Video not found", "<p>This video does not exist or was deleted.</p>"), 404)
        src = f"/vods/{video.id}/master.m3u8"
        body = (f"<h1>{html.escape(video.title or 'Past broadcast')}</h1>"
                f"<p><a href=\"/{html.escape(owner.login)}\">{html.escape(owner.display_name)}</a></p>"
                f"<video id=\"player\" controls playsinline data-src=\"{src}\" style=\"max-width:100%\"></video>"
                "<script src=\"/web/vendor/hls.min.js\"></script>"
                "<script>const v=document.getElementById('player');const s=v.dataset.src;"
                "if(v.canPlayType('application/vnd.apple.mpegurl')){v.src=s}"
                "else if(window.Hls){const h=new Hls();h.loadSource(s);h.attachMedia(v)}</script>")
        return HTMLResponse(_page(video.title or "Past broadcast", body))

    @router.get("/{login}/clip/{clip_id}", include_in_schema=False)
    async def clip_page(login: str, clip_id: str) -> Response:
        return await _clip_page(platform, clip_id, login, embed=False)

    return router


async def _clip_page(platform: Platform, clip_id: str, login: str | None, *, embed: bool) -> Response:
    if not keys.valid_clip_id(clip_id):
        return HTMLResponse(_page("Clip not found", "<p>No such clip.</p>"), 404)
    async with platform.db.session() as db:
        clip = await db.get(Clip, clip_id)
        owner = await db.get(User, clip.broadcaster_id) if clip is not None else None
    if clip is None or owner is None or (login is not None and owner.login != login.lower()):
        return HTMLResponse(_page("Clip not found", "<p>No such clip.</p>"), 404)
    if clip.status != READY:
        note = "<p>This clip is still being processed; reload in a few seconds.</p>" if clip.status != "failed" else \
            "<p>This clip could not be made.</p>"
        return HTMLResponse(_page(clip.title or "Clip", note), 200 if clip.status != "failed" else 404)
    video = (f"<video controls playsinline preload=\"metadata\" poster=\"/clips/{clip.id}/thumb-480x272.jpg\" "
             f"src=\"/clips/{clip.id}/clip.mp4\" style=\"max-width:100%\"></video>")
    if embed:
        return HTMLResponse(f"<!doctype html><meta charset=\"utf-8\"><title>{html.escape(clip.title)}</title>"
                            f"<body style=\"margin:0;background:#000\">{video}</body>")
    body = (f"<h1>{html.escape(clip.title or 'Clip')}</h1>"
            f"<p><a href=\"/{html.escape(owner.login)}\">{html.escape(owner.display_name)}</a> · "
            f"{clip.view_count} views</p>{video}")
    return HTMLResponse(_page(clip.title or "Clip", body))


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)} - Livecast"
            f"</title><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"></head>"
            f"<body><main>{body}</main></body></html>")


def install(app: FastAPI, platform: Platform) -> None:
    helix = APIRouter()
    helix.include_router(videos_router)
    helix.include_router(clips_router)
    app.include_router(helix, prefix="/helix", tags=["helix"])
    app.include_router(helix, prefix="/mock", include_in_schema=False)
    app.include_router(build_router(platform))
