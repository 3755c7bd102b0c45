"""Helix videos and clips without media: Twitch's shapes and errors, ids that look like paths,
retention, and the clip job queue on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from livecast.store.base import utcnow
from livecast.store.db import Database
from livecast.vod import jobs
from livecast.vod.models import HIGHLIGHT, READY, RECORDING, Video, VodJob, VodSegment
from livecast.vod.playlist import twitch_duration
from livecast.vod.service import sweep_retention
from tests.conftest import Server, wait_for


def _headers(user: dict[str, Any]) -> dict[str, str]:
    return {"Client-Id": user["client_id"], "Authorization": f"Bearer {user['token']}"}


async def _video(server: Server, user_id: str, video_id: str, *, seconds: float = 3723.0, status: str = READY,
                 created: dt.datetime | None = None, expires: dt.datetime | None = None, type: str = "archive",
                 deleted: bool = False) -> None:
    """A stored past broadcast: a row, one segment row and its objects."""
    created = created or utcnow()
    async with server.platform.db.session() as db:
        db.add(Video(id=video_id, user_id=user_id, stream_id="9" + video_id, type=type, status=status,
                     title=f"video {video_id}", duration=seconds, created_at=created, published_at=created,
                     expires_at=expires, renditions={"source": {"codecs": "avc1.64000c"}},
                     deleted_at=utcnow() if deleted else None))
    async with server.platform.db.session() as db:
        db.add(VodSegment(video_id=video_id, rendition="source", seq=0, init_id=1, offset=0.0, duration=seconds,
                          start_at=created, size=3))
    await server.platform.storage.put(f"vods/{video_id}/source/init1.mp4", b"init")
    await server.platform.storage.put(f"vods/{video_id}/source/0.m4s", b"seg")


def test_twitch_duration_format() -> None:
    assert twitch_duration(3723.9) == "1h2m3s"
    assert twitch_duration(240) == "4m0s"
    assert twitch_duration(17.2) == "17s"
    assert twitch_duration(0) == "0s"


async def test_clip_errors_like_twitch(server: Server) -> None:
    alice = await server.create_user("alice")
    bob = await server.create_user("bob")
    no_clips = await server.create_user("noscope", scopes=["chat:read"])
    await _video(server, bob["user_id"], "700000000001")
    await _video(server, bob["user_id"], "700000000002", deleted=True)
    async with httpx.AsyncClient(base_url=server.http_url, headers=_headers(alice)) as http:
        # an offline channel without any VOD
        r = await http.post("/helix/clips", params={"broadcaster_id": alice["user_id"]})
        assert r.status_code == 404
        assert r.json() == {"error": "Not Found", "status": 404,
                            "message": "The broadcaster in the broadcaster_id query parameter must be broadcasting live."}
        # durations outside 5..60 s
        for duration in ("0", "600", "4.9", "60.5"):
            r = await http.post("/helix/clips", params={"broadcaster_id": bob["user_id"], "duration": duration})
            assert r.status_code == 400 and "duration" in r.json()["message"], duration
        # someone else's deleted VOD, and a VOD that is not the broadcaster's, are simply not found
        r = await http.post("/helix/clips", params={"broadcaster_id": bob["user_id"], "vod_id": "700000000002",
                                                    "vod_offset": 10})
        assert r.status_code == 404 and r.json()["message"] == "The VOD in vod_id was not found"
        r = await http.post("/helix/clips", params={"broadcaster_id": alice["user_id"], "vod_id": "700000000001",
                                                    "vod_offset": 10})
        assert r.status_code == 404
        # an offset that leaves less than 5 s, a negative one, a missing one
        for offset in ("3720", "-1", "nan", "inf"):
            r = await http.post("/helix/clips", params={"broadcaster_id": bob["user_id"], "vod_id": "700000000001",
                                                        "vod_offset": offset})
            assert r.status_code == 400, offset
        r = await http.post("/helix/clips", params={"broadcaster_id": bob["user_id"], "vod_id": "700000000001"})
        assert r.status_code == 400
        r = await http.post("/helix/clips", params={"broadcaster_id": "not-a-user"})
        assert r.status_code == 400
        r = await http.post("/helix/clips", params={"broadcaster_id": bob["user_id"]},
                            headers=_headers(no_clips))
        assert r.status_code == 401 and r.json()["message"] == "Missing scope: clips:edit"
        # a good VOD clip is accepted at once
        r = await http.post("/helix/clips", params={"broadcaster_id": bob["user_id"], "vod_id": "700000000001",
                                                    "vod_offset": 60, "duration": 15})
        assert r.status_code == 202
        (created,) = r.json()["data"]
        assert created["edit_url"] == f"{server.http_url}/bob/clip/{created['id']}?edit=1"
        # ... and is not listed until it is ready (this server has nothing to cut it from)
        r = await http.get("/helix/clips", params={"id": created["id"]})
        assert r.status_code == 200 and r.json() == {"data": [], "pagination": {}}
        r = await http.get("/helix/clips", params={"broadcaster_id": bob["user_id"], "game_id": "1"})
        assert r.status_code == 400
        r = await http.get("/helix/clips", params={"broadcaster_id": bob["user_id"], "started_at": "yesterday"})
        assert r.status_code == 400


PATH_LIKE = [
    "/vods/..%2F..%2Fetc/master.m3u8", "/vods/%2e%2e/source/playlist.m3u8", "/vods/700000000003/..%2F..%2F/0.m4s",
    "/vods/700000000003/source/..%2Finit1.mp4", "/vods/700000000003/source/%2E%2E%2F%2E%2E%2Fx.m4s",
    "/vods/700000000003/source/-1.m4s", "/clips/..%2F..%2Fetc%2Fpasswd/clip.mp4", "/clips/abc/..%2Fclip.mp4",
    "/vods/700000000003/..%5Csource/playlist.m3u8", "/vods/700000000003/thumb-1x1.jpg%2F..",
    "/vods/700000000003/source/..%2F..%2F..%2Fsecret.m4s", "/embed/clip/..%2F..%2Fsecret",
]


async def test_path_like_ids_never_reach_storage(server: Server, tmp_path: Path) -> None:
    user = await server.create_user("pathy")
    await _video(server, user["user_id"], "700000000003")
    secret = tmp_path / "var" / "secret.m4s"
    secret.write_bytes(b"must not be served")
    async with httpx.AsyncClient(base_url=server.http_url, headers=_headers(user)) as http:
        for path in PATH_LIKE:
            r = await http.get(path)
            assert r.status_code == 404 and b"must not be served" not in r.content, path
        r = await http.get("/helix/videos", params={"id": "../../secret"})
        assert r.status_code == 404
        r = await http.post("/helix/clips", params={"broadcaster_id": user["user_id"], "vod_id": "../secret",
                                                    "vod_offset": 1})
        assert r.status_code == 404
        # the well-formed path to the same video works
        assert (await http.get("/vods/700000000003/source/0.m4s")).content == b"seg"


async def test_videos_on_postgres(pg_server: Server) -> None:
    await test_get_and_delete_videos(pg_server)


async def test_get_and_delete_videos(server: Server) -> None:
    owner = await server.create_user("owner")
    other = await server.create_user("other")
    base = utcnow() - dt.timedelta(hours=1)
    for i in range(3):
        await _video(server, owner["user_id"], f"70000000001{i}", created=base + dt.timedelta(minutes=i))
    await _video(server, owner["user_id"], "700000000020", type=HIGHLIGHT, seconds=42)
    await _video(server, owner["user_id"], "700000000021", status=RECORDING)
    async with httpx.AsyncClient(base_url=server.http_url, headers=_headers(owner)) as http:
        r = await http.get("/helix/videos", params={"user_id": owner["user_id"], "type": "archive", "first": 2})
        page = r.json()
        assert [v["id"] for v in page["data"]] == ["700000000021", "700000000012"]  # newest first
        doc = page["data"][1]
        assert doc["duration"] == "1h2m3s" and doc["type"] == "archive" and doc["user_login"] == "owner"
        assert doc["stream_id"] == "9700000000012" and doc["viewable"] == "public" and doc["muted_segments"] is None
        assert doc["url"].endswith("/videos/700000000012") and doc["thumbnail_url"] == ""
        r = await http.get("/helix/videos", params={"user_id": owner["user_id"], "type": "archive", "first": 2,
                                                    "after": page["pagination"]["cursor"]})
        assert [v["id"] for v in r.json()["data"]] == ["700000000011", "700000000010"]
        assert r.json()["pagination"] == {}
        r = await http.get("/helix/videos", params={"id": ["700000000020", "700000000011"]})
        assert sorted(v["id"] for v in r.json()["data"]) == ["700000000011", "700000000020"]
        assert {v["type"] for v in r.json()["data"]} == {"archive", "highlight"}
        assert (await http.get("/helix/videos", params={"id": "700000000099"})).status_code == 404
        assert (await http.get("/helix/videos")).status_code == 400
        assert (await http.get("/helix/videos", params={"user_id": "1", "game_id": "2"})).status_code == 400
        assert (await http.get("/helix/videos", params={"user_id": "1", "after": "garbage!"})).status_code == 400

        # deletion: only the owner, never while recording, all or nothing
        r = await http.delete("/helix/videos", params={"id": "700000000010"}, headers=_headers(other))
        assert r.status_code == 403
        assert await server.platform.storage.get("vods/700000000010/source/0.m4s") == b"seg"
        r = await http.delete("/helix/videos", params={"id": "700000000021"})
        assert r.status_code == 400
        r = await http.delete("/helix/videos", params={"id": ["700000000010", "700000000011"]})
        assert r.status_code == 200 and r.json() == {"data": ["700000000010", "700000000011"]}
        assert await server.platform.storage.list("vods/700000000010/") == []
        assert (await http.get("/vods/700000000010/source/playlist.m3u8")).status_code == 404
        assert (await http.get("/helix/videos", params={"id": "700000000010"})).status_code == 404
        assert (await http.delete("/helix/videos", params={"id": "700000000010"})).status_code == 404


async def test_retention_by_channel_type(server: Server) -> None:
    s = server.platform.settings
    assert s.vod_partner_retention_days > s.vod_retention_days > 0
    user = await server.create_user("keeper")
    old = utcnow() - dt.timedelta(days=s.vod_retention_days + 1)
    await _video(server, user["user_id"], "700000000030", created=old, expires=utcnow() - dt.timedelta(hours=1))
    await _video(server, user["user_id"], "700000000031", created=old, expires=utcnow() + dt.timedelta(days=50))
    await _video(server, user["user_id"], "700000000032", created=old, type=HIGHLIGHT)
    await _video(server, user["user_id"], "700000000033", created=old, status=RECORDING,
                 expires=utcnow() - dt.timedelta(hours=1))
    assert await sweep_retention(server.platform) == 1
    assert await server.platform.storage.list("vods/700000000030/") == []
    for kept in ("700000000031", "700000000032", "700000000033"):
        assert await server.platform.storage.list(f"vods/{kept}/") != []
    async with server.platform.db.session() as db:
        gone = await db.get(Video, "700000000030")
        assert gone is not None and gone.deleted_at is not None  # a tombstone answers "not found" forever


async def test_orphaned_recording_becomes_a_vod(server: Server) -> None:
    from livecast.ingest.models import Stream
    from livecast.vod.service import finalize_orphans

    user = await server.create_user("crashed")
    ended = utcnow() - dt.timedelta(hours=1)
    async with server.platform.db.session() as db:
        db.add(Stream(id="9700000000040", user_id=user["user_id"], status="offline", ended_at=ended))
        db.add(Stream(id="9700000000041", user_id=user["user_id"], status="live"))
    await _video(server, user["user_id"], "700000000040", status=RECORDING)
    await _video(server, user["user_id"], "700000000041", status=RECORDING)
    assert await finalize_orphans(server.platform) == 1
    async with server.platform.db.session() as db:
        done, live = await db.get(Video, "700000000040"), await db.get(Video, "700000000041")
        assert done is not None and done.status == READY and done.ended_at == ended
        assert live is not None and live.status == RECORDING


async def test_job_queue_claims_once_and_backs_off(database: Database) -> None:
    now = utcnow()
    async with database.session() as db:
        for i in range(6):
            await jobs.enqueue(db, "clip", f"clip{i}", run_at=now)

    async def claim(worker: str) -> list[str]:
        async with database.session() as db:
            return await jobs.claim(db, worker, now, limit=2)

    batches = await asyncio.gather(*(claim(f"w{i}") for i in range(4)))
    claimed = [j for batch in batches for j in batch]
    assert len(claimed) == len(set(claimed)) == 6  # every job once, nobody twice
    owner = {j: f"w{i}" for i, batch in enumerate(batches) for j in batch}
    first = claimed[0]
    async with database.session() as db:
        assert await jobs.finish(db, first, "somebody-else", now) is False  # not our lease
        assert await jobs.finish(db, first, owner[first], now) is True
        await jobs.postpone(db, claimed[1], owner[claimed[1]], now, 0.5)
        assert await jobs.retry_later(db, claimed[2], owner[claimed[2]], now, "boom") is False
    async with database.session() as db:
        postponed = await db.get(VodJob, claimed[1])
        failed_once = await db.get(VodJob, claimed[2])
        assert postponed is not None and postponed.status == "pending" and postponed.attempts == 0
        assert failed_once is not None and failed_once.status == "pending" and failed_once.run_at > now
        assert failed_once.last_error == "boom"
    # a worker that died: its lease runs out and another worker takes the job
    later = now + jobs.LEASE + dt.timedelta(seconds=1)
    async with database.session() as db:
        retaken = await jobs.claim(db, "w-new", later, limit=10)
    assert claimed[3] in retaken and first not in retaken


async def test_get_clips_by_game_and_dates_with_pages(server: Server) -> None:
    from livecast.vod.models import Clip

    caster = await server.create_user("clipped")
    viewer = await server.create_user("viewer")
    base = utcnow() - dt.timedelta(days=3)
    async with server.platform.db.session() as db:
        for i in range(5):
            db.add(Clip(id=f"clip{i}", broadcaster_id=caster["user_id"], creator_id=viewer["user_id"],
                        video_id=None, game_id="33" if i % 2 else "44", title=f"clip {i}", status=READY,
                        view_count=10 * i, duration=30.0, created_at=base + dt.timedelta(days=i % 3)))
        db.add(Clip(id="unfinished", broadcaster_id=caster["user_id"], game_id="33", status="processing"))
    await server.platform.storage.put("clips/clip1.mp4", b"\x00\x00\x00\x18ftypmp42 mp4 clip bytes")
    async with httpx.AsyncClient(base_url=server.http_url, headers=_headers(viewer)) as http:
        r = await http.get("/helix/clips", params={"broadcaster_id": caster["user_id"], "first": 2})
        page = r.json()
        assert [c["id"] for c in page["data"]] == ["clip4", "clip3"]  # most viewed first
        doc = page["data"][0]
        assert doc["creator_name"] == "viewer" and doc["broadcaster_name"] == "clipped"
        assert doc["url"] == f"{server.http_url}/clipped/clip/clip4" and doc["is_featured"] is False
        assert doc["video_id"] == "" and doc["vod_offset"] is None and doc["duration"] == 30.0
        r = await http.get("/helix/clips", params={"broadcaster_id": caster["user_id"], "first": 2,
                                                   "after": page["pagination"]["cursor"]})
        assert [c["id"] for c in r.json()["data"]] == ["clip2", "clip1"]
        r = await http.get("/helix/clips", params={"game_id": "33"})
        assert [c["id"] for c in r.json()["data"]] == ["clip3", "clip1"]  # never the unfinished one
        day1 = (base + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        day2 = (base + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        r = await http.get("/helix/clips", params={"broadcaster_id": caster["user_id"], "started_at": day1,
                                                   "ended_at": day2})
        assert [c["id"] for c in r.json()["data"]] == ["clip4", "clip1"]
        # views: a play from the start counts, a seek (a later range) does not
        assert (await http.get("/clips/clip1/clip.mp4")).status_code == 200
        r = await http.get("/clips/clip1/clip.mp4", headers={"Range": "bytes=4-7"})
        assert r.status_code == 206 and r.content == b"ftyp" and r.headers["content-range"] == "bytes 4-7/27"
        r = await http.get("/helix/clips", params={"id": "clip1"})
        assert r.json()["data"][0]["view_count"] == 11
        page_html = await http.get("/clipped/clip/clip1")
        assert page_html.status_code == 200 and "/clips/clip1/clip.mp4" in page_html.text
        assert (await http.get("/someoneelse/clip/clip1")).status_code == 404
        embed = await http.get("/embed/clip/clip1")
        assert embed.status_code == 200 and "<video" in embed.text


def test_live_buffer_is_bounded_by_seconds() -> None:
    from livecast.vod.archive import Buffered, LiveBuffer

    buffer = LiveBuffer(10.0)
    for seq in range(100):
        buffer.add(Buffered(seq, 1, b"init", b"x" * 1000, seq * 2.0, 2.0))
    held = [item.seq for item in buffer.items]
    assert held == list(range(95, 100))  # the newest 10 s and nothing older
    assert buffer.nbytes == 5000 and buffer.get(94) is None and buffer.get(99) is not None


async def test_clip_out_of_retries_is_marked_failed(server: Server) -> None:
    from livecast.vod.models import Clip

    user = await server.create_user("lossy")
    await _video(server, user["user_id"], "700000000050", seconds=20.0)
    await server.platform.storage.delete_prefix("vods/700000000050/")  # its media is gone
    async with server.platform.db.session() as db:
        db.add(Clip(id="doomed", broadcaster_id=user["user_id"], video_id="700000000050", status="processing",
                    duration=5.0, vod_offset=1.0))
        job = await jobs.enqueue(db, "clip", "doomed")
        job.attempts = jobs.MAX_ATTEMPTS - 1  # this is its last try
    await jobs.wake(server.platform)

    async def failed() -> Clip | None:
        async with server.platform.db.session() as db:
            clip = await db.get(Clip, "doomed")
        return clip if clip is not None and clip.status == "failed" else None

    clip = await wait_for(failed, 20)
    assert "missing" in clip.error
    async with server.platform.db.session() as db:
        row = (await db.execute(select(VodJob).where(VodJob.ref == "doomed"))).scalars().one()
    assert row.status == "failed" and "FileNotFoundError" in row.last_error


async def test_helix_in_api_processes_pages_in_web_ones(tmp_path: Path) -> None:
    from tests.conftest import start_server

    for roles, helix_status, page_marker in (("api", 401, False), ("web", 404, True)):
        srv = await start_server(tmp_path / roles, roles=roles)
        try:
            async with httpx.AsyncClient(base_url=srv.http_url) as http:
                assert (await http.get("/helix/videos", params={"user_id": "1"})).status_code == helix_status
                page = await http.get("/videos/123")
                assert page.status_code == 404 and ("<html" in page.text) == page_marker
                assert (await http.get("/vods/123/master.m3u8")).status_code == 404
        finally:
            await srv.runner.stop()


async def test_forged_cursors_are_400(pg_server: Server) -> None:
    from livecast.api.helix import pagination

    user = await pg_server.create_user("cursed")
    async with httpx.AsyncClient(base_url=pg_server.http_url, headers=_headers(user)) as http:
        huge = pagination.encode(10**30, "x")
        for path, params in (("/helix/clips", {"broadcaster_id": user["user_id"], "after": huge}),
                             ("/helix/videos", {"user_id": user["user_id"], "sort": "views", "after": huge}),
                             ("/helix/videos", {"user_id": user["user_id"], "after": pagination.encode("x", "y")})):
            r = await http.get(path, params=params)
            assert r.status_code == 400, (path, r.text)
