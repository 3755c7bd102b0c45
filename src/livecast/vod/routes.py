"""HTTP for VODs and clips: Helix routes, HLS playback from storage, clip files and pages.

URLs: ``/vods/{video_id}/master.m3u8``, ``/vods/{video_id}/{rendition}/playlist.m3u8`` and
its ``init{n}.mp4`` / ``{seq}.m4s``, ``/vods/{video_id}/thumb-{w}x{h}.jpg``;
``/clips/{clip_id}/clip.mp4`` and ``/clips/{clip_id}/thumb-{w}x{h}.jpg``; pages
``/videos/{id}``, ``/{login}/clip/{id}`` and ``/embed/clip/{id}`` (templates ``vod_*.html`` in
the web app's folder, same layout), and ``POST /{login}/clips``, the web clip button (a
signed-in viewer, the session's CSRF token as ``csrf``, optional ``duration`` and ``title``). Every id is checked
against its pattern before any lookup (:mod:`livecast.vod.keys`), then found in the database,
and only then turned into a storage key: a request can name an object, never a path.

Media objects never change once written, so they are cacheable for a year; a recording's
event playlist for less than a segment, a finished VOD's for a while.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select, update

from livecast.app import error_response
from livecast.clips.helix import router as clips_router
from livecast.clips.service import ClipRefused, create_clip
from livecast.identity.models import User
from livecast.platform import Platform
from livecast.vod import keys, service
from livecast.vod.helix import router as videos_router
from livecast.vod.models import READY, RECORDING, Clip
from livecast.vod.playlist import twitch_duration
from livecast.web import templating
from livecast.web.session import check_csrf, current_user

IMMUTABLE = "public, max-age=31536000, immutable"
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
_SECONDS = re.compile(r"^[0-9]{1,4}(\.[0-9]{1,3})?$")
_OFFSET = re.compile(r"^[0-9]{1,6}(\.[0-9]{1,3})?$")  # a position in a VOD: up to 11 days
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


def build_router(platform: Platform, *, pages: bool = True) -> APIRouter:
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

    if not pages:
        return router

    @router.get("/embed/clip/{clip_id}", include_in_schema=False)
    async def clip_embed(clip_id: str) -> Response:
        clip = await _ready_clip(platform, clip_id)
        if clip is None:
            return HTMLResponse("<!doctype html><title>Clip not found</title>", 404)
        # no X-Frame-Options here: being framed by other sites is the point of an embed
        return HTMLResponse(templating.environment.get_template("vod_clip_embed.html").render(clip=clip))

    @router.get("/videos/{video_id}", include_in_schema=False)
    async def video_page(video_id: str, request: Request) -> Response:
        async with platform.db.session() as db:
            video = await service.visible_video(db, video_id)
            owner = await db.get(User, video.user_id) if video is not None else None
        if video is None or owner is None or video.status not in (READY, RECORDING):
            return await templating.render(request, "not_found.html", status_code=404, what="this video")
        return await templating.render(
            request, "vod_video.html", video=video, owner=owner, playlist=f"/vods/{video.id}/master.m3u8",
            poster=f"/vods/{video.id}/thumb-640x360.jpg" if video.thumbnail_key else "",
            kind={"archive": "past broadcast", "highlight": "highlight"}.get(video.type, video.type),
            duration=twitch_duration(video.duration))

    @router.get("/{login}/clip/{clip_id}", include_in_schema=False)
    async def clip_page(login: str, clip_id: str, request: Request) -> Response:
        found = None
        if keys.valid_clip_id(clip_id):
            async with platform.db.session() as db:
                clip = await db.get(Clip, clip_id)
                owner = await db.get(User, clip.broadcaster_id) if clip is not None else None
                creator = await db.get(User, clip.creator_id) if clip is not None and clip.creator_id else None
                video = await service.visible_video(db, clip.video_id) if clip is not None and clip.video_id else None
            if clip is not None and owner is not None and owner.login == login.lower():
                found = (clip, owner, creator, video)
        if found is None:
            return await templating.render(request, "not_found.html", status_code=404, what="this clip")
        clip, owner, creator, video = found
        base = platform.base_url()
        return await templating.render(
            request, "vod_clip.html", status_code=404 if clip.status == "failed" else 200, clip=clip,
            owner=owner, creator=creator, video_url=f"/videos/{video.id}" if video is not None else "",
            page_url=f"{base}/{owner.login}/clip/{clip.id}", embed_url=f"{base}/embed/clip/{clip.id}")

    @router.post("/{login}/clips", include_in_schema=False)
    async def clip_button(login: str, request: Request) -> Response:
        """The web "Clip" buttons: the last 30 s of a live channel, or (with ``video_id`` and
        ``offset``) 30 s of a past broadcast from that position."""
        viewer = await current_user(request)
        if viewer is None:
            return RedirectResponse("/login", status_code=303)
        form = await request.form()
        if not await check_csrf(request, str(form.get("csrf", ""))):
            return error_response(403, "The form expired; reload the page and try again")
        async with platform.db.session() as db:
            owner = (await db.execute(select(User).where(User.login == login.lower()))).scalars().first()
        message = "This channel does not exist."
        if owner is not None:
            try:
                raw = str(form.get("duration") or "30")
                duration = float(raw) if _SECONDS.match(raw) else -1.0  # ASCII only: float("²") raises
                video_id = str(form.get("video_id") or "")[:64] or None
                raw_offset = str(form.get("offset") or "0")
                offset = float(raw_offset) if video_id and _OFFSET.match(raw_offset) else None
                if video_id and offset is None:
                    raise ClipRefused(400, "The clip position must be a number of seconds")
                clip, _ = await create_clip(platform, broadcaster_id=owner.id, creator_id=viewer.id,
                                            duration=duration, title=str(form.get("title", ""))[:140],
                                            vod_id=video_id, vod_offset=offset)
                return RedirectResponse(f"/{owner.login}/clip/{clip.id}", status_code=303)
            except ClipRefused as refused:
                message = refused.message
        return await templating.render(request, "vod_clip_error.html", status_code=404 if owner is None else 400,
                                       message=message, login=login)

    return router


async def _ready_clip(platform: Platform, clip_id: str) -> Clip | None:
    if not keys.valid_clip_id(clip_id):
        return None
    async with platform.db.session() as db:
        clip = await db.get(Clip, clip_id)
    return clip if clip is not None and clip.status == READY else None


def install(app: FastAPI, platform: Platform) -> None:
    """Helix routes in ``api`` processes, pages in ``web`` ones, media files in both.

    The component mounts for either role (the default); splitting here keeps a web-only
    process from answering two Helix endpoints when it answers no other.
    """
    settings = platform.settings
    if settings.has_role("api"):
        helix = APIRouter()
        helix.include_router(videos_router)
        helix.include_router(clips_router)
        app.include_router(helix, prefix="/helix", tags=["helix"])
        app.include_router(helix, prefix="/mock", include_in_schema=False)
    app.include_router(build_router(platform, pages=settings.has_role("web")))
