"""The archive on both storage backends (files and a local S3 server), through a storage outage.

The outage is real, not mocked: the file store's root is replaced by a plain file (every
write fails with ENOTDIR), and the S3 store talks to moto through a TCP proxy that is shut
and reopened. Live media keeps flowing throughout; the archive's bounded spool holds what it
can, records the rest as a gap, and completes the VOD once storage is back. A process stopped
during the outage keeps its spool on disk, and the next one finishes the VOD from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import m3u8
import pytest
from sqlalchemy import select

from livecast.vod import stats
from livecast.vod.archive import Archiver, Resumed
from livecast.vod.models import Video, VodSegment
from livecast.vod.spool import SPOOL_DIR, Spool, SpooledSegment
from tests.archive_support import QUEUE, SECONDS, finish_after_the_fault, only_video, start_archiving
from tests.conftest import Server, start_server, wait_for
from tests.test_storage import s3_endpoint  # noqa: F401  (the session's moto server)
from tests.vod_support import frame_numbers, make_flv, probe


@dataclass
class Backend:
    url: str
    down: Callable[[], Awaitable[None]]
    up: Callable[[], Awaitable[None]]


class TcpProxy:
    """Forwards a local port to moto; ``close`` is an outage (refused connections), ``open`` ends it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for writer in list(self.writers):
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}


@pytest.fixture(params=["file", "s3"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "file":
        root = tmp_path / "objects"
        root.mkdir()
        parked = tmp_path / "objects.parked"

        async def down() -> None:
            root.rename(parked)
            root.write_bytes(b"storage is down")

        async def up() -> None:
            root.unlink()
            parked.rename(root)

        yield Backend(f"file://{root}", down, up)
        return
    endpoint: str = request.getfixturevalue("s3_endpoint")
    proxy = TcpProxy(int(endpoint.rsplit(":", 1)[1]))
    await proxy.open()
    bucket = f"livecast-{uuid.uuid4().hex[:8]}"
    from livecast.storage.s3 import S3Store

    await S3Store(f"s3://{bucket}?endpoint={endpoint}").ensure_bucket()
    try:
        yield Backend(f"s3://{bucket}/archive?endpoint=http://127.0.0.1:{proxy.port}", proxy.close, proxy.open)
    finally:
        await proxy.close()


@pytest.fixture(scope="module")
def cbr_flv(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    # constant 3 Mbit/s, so segments are big enough to overflow the 1 MiB queue in an outage
    return make_flv(tmp_path_factory.mktemp("flv") / "cbr.flv", SECONDS, bitrate="3M")


async def test_archive_survives_storage_outage(backend: Backend, cbr_flv: bytes, tmp_path: Path) -> None:
    # the spool as small as the memory queue, so that the outage outlasts it
    server: Server = await start_server(tmp_path, storage_url=backend.url, archive_queue_bytes=QUEUE,
                                        archive_spool_bytes=QUEUE)
    try:
        channel = await start_archiving(server, "archivist", cbr_flv)
        user, archiver = channel.user, channel.archiver
        await backend.down()
        channel.feed(4, 10)
        live = channel.live()
        # the live stream goes on while storage is down: the origin serves new segments
        await wait_for(lambda: live.segmenters["source"].next_msn >= 5, 20)
        async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
            r = await http.get("/hls/archivist/source/playlist.m3u8")
            assert r.status_code == 200 and "seg3.m4s" in r.text
        rec = next(iter(archiver.recordings))
        await wait_for(lambda: rec.gaps >= 1, 20)  # the spool overflowed: the oldest waiting segment is a gap
        assert archiver.pending_bytes <= QUEUE and archiver.spool_bytes <= QUEUE
        await backend.up()
        video = await finish_after_the_fault(channel, rec)
        async with server.platform.db.session() as db:
            rows = (await db.execute(select(VodSegment).where(VodSegment.video_id == video.id,
                                                              VodSegment.rendition == "source")
                                     .order_by(VodSegment.seq))).scalars().all()
        produced = live.segmenters["source"].next_msn
        assert [r.seq for r in rows] == list(range(produced))  # every segment is accounted for
        gaps = [r for r in rows if r.status == "gap"]
        assert gaps and video.gap_seconds == pytest.approx(sum(r.duration for r in gaps))
        assert abs(video.duration - SECONDS) <= SECONDS / 100
        # segments that waited out the outage in the queue were stored when it ended
        outage_rows = [r for r in rows if 4 <= r.offset < 10]
        assert any(r.status == "stored" for r in outage_rows)
        stored = set(await server.platform.storage.list(f"vods/{video.id}/source/"))
        assert {f"vods/{video.id}/source/{r.seq}.m4s" for r in rows if r.status == "stored"} <= stored
        assert not any(f"vods/{video.id}/source/{r.seq}.m4s" in stored for r in gaps)
        async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
            body = (await http.get(f"/vods/{video.id}/source/playlist.m3u8")).text
            assert body.count("#EXT-X-GAP") == len(gaps) and body.rstrip().endswith("#EXT-X-ENDLIST")
            pl = m3u8.loads(body)
            assert sum(s.duration for s in pl.segments) == pytest.approx(video.duration, abs=0.01)
            # the stored part plays from the backend: ffprobe reads the first segments
            first = await http.get(f"/vods/{video.id}/source/{rows[0].seq}.m4s")
            assert first.status_code == 200 and b"moof" in first.content[:64]
        info_doc = await probe(f"{server.http_url}/vods/{video.id}/source/init1.mp4")
        assert info_doc["streams"][0]["codec_name"] == "h264"
        # a clip cut from what this backend holds (the stream is over: nothing is in memory)
        headers = {"Client-Id": user["client_id"], "Authorization": f"Bearer {user['token']}"}
        async with httpx.AsyncClient(base_url=server.http_url, timeout=10, headers=headers) as http:
            r = await http.post("/helix/clips", params={"broadcaster_id": user["user_id"], "vod_id": video.id,
                                                        "vod_offset": 10.5, "duration": 5})
            assert r.status_code == 202, r.text
            clip_id = r.json()["data"][0]["id"]

            async def clip_ready() -> bool:
                got = await http.get(f"/clips/{clip_id}/clip.mp4", headers={"Range": "bytes=0-0"})
                return got.status_code == 206

            await wait_for(clip_ready, 30, 0.2)
        assert (await frame_numbers(f"{server.http_url}/clips/{clip_id}/clip.mp4"))[0] == round(10.5 * 30), [(r.offset, r.status) for r in rows]
        assert f"clips/{clip_id}.mp4" in await server.platform.storage.list("clips/")
    finally:
        await server.runner.stop()


async def _video_rows(server: Server, video_id: str) -> dict[str, list[VodSegment]]:
    async with server.platform.db.session() as db:
        rows = (await db.execute(select(VodSegment).where(VodSegment.video_id == video_id)
                                 .order_by(VodSegment.rendition, VodSegment.seq))).scalars().all()
    by: dict[str, list[VodSegment]] = {}
    for r in rows:
        by.setdefault(r.rendition, []).append(r)
    return by


async def test_stop_during_storage_outage_keeps_the_spool_and_the_next_start_finishes(
        backend: Backend, cbr_flv: bytes, tmp_path: Path) -> None:
    """SIGTERM's shutdown while storage is down: the segments storage has not taken stay in the
    node's spool and the video is parked as ``processing``, with no gaps. The next start
    retries while storage is still down, and once it is back uploads every segment and
    completes the video, leaving the spool empty."""
    spool_root = tmp_path / "var" / SPOOL_DIR
    server = await start_server(tmp_path, storage_url=backend.url)
    stopped = False
    try:
        channel = await start_archiving(server, "spooler", cbr_flv)
        archiver = channel.archiver
        await backend.down()
        channel.feed(4, 12)
        live = channel.live()
        await wait_for(lambda: live.segmenters["source"].next_msn >= 6, 20)
        rec = next(iter(archiver.recordings))
        video_id = rec.video_id
        # everything storage has not taken is on disk, none of it only in memory
        await wait_for(lambda: rec.on_disk() and archiver.spool_segments >= 3 and archiver.outage_since, 20)
        assert archiver.pending_bytes == 0 and rec.gaps == 0
        assert stats.archive_spool_bytes._value.get() == archiver.spool_bytes > 0
        loop = asyncio.get_running_loop()
        began = loop.time()
        await server.runner.stop()  # what SIGTERM runs
        stopped = True
        assert loop.time() - began < 8  # no drain wait: the spool holds the rest
        produced = {name: seg.next_msn for name, seg in live.segmenters.items()}
    finally:
        if not stopped:
            await server.runner.stop()
    spooled = sorted(p.name for p in (spool_root / video_id).glob("source.*.json"))
    assert spooled and (spool_root / video_id / "video.json").is_file()

    # The next start, storage still down: it retries, the video waits, nothing is a gap.
    server = await start_server(tmp_path, storage_url=backend.url)
    try:
        archiver = server.platform.state["vod.archiver"]
        assert isinstance(archiver, Archiver)
        await wait_for(lambda: archiver.resumed and archiver.outage_since, 10)
        video = await only_video(server)
        assert video.status == "processing" and video.gap_seconds == 0
        assert all(r.status == "stored" for rows in (await _video_rows(server, video_id)).values() for r in rows)
        assert sorted(p.name for p in (spool_root / video_id).glob("source.*.json")) == spooled
        async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
            assert "#EXT-X-ENDLIST" not in (await http.get(f"/vods/{video_id}/source/playlist.m3u8")).text

        await backend.up()

        async def ready() -> Video | None:
            v = await only_video(server)
            return v if v.status == "ready" else None

        video = await wait_for(ready, 30)
        rows = await _video_rows(server, video_id)
        assert set(rows) == set(produced)
        for name, count in produced.items():
            assert [r.seq for r in rows[name]] == list(range(count)), name  # every segment, in order
            assert all(r.status == "stored" for r in rows[name]), name
        stored = set(await server.platform.storage.list(f"vods/{video_id}/source/"))
        assert {f"vods/{video_id}/source/{r.seq}.m4s" for r in rows["source"]} <= stored
        assert video.gap_seconds == 0 and video.ended_at is not None
        assert video.duration == pytest.approx(sum(r.duration for r in rows["source"]), abs=0.01)
        assert not (spool_root / video_id).exists() and archiver.spool_bytes == archiver.spool_segments == 0
        async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
            body = (await http.get(f"/vods/{video_id}/source/playlist.m3u8")).text
            assert "#EXT-X-GAP" not in body and body.rstrip().endswith("#EXT-X-ENDLIST")
            last = rows["source"][-1].seq
            got = await http.get(f"/vods/{video_id}/source/{last}.m4s")  # spooled, uploaded after the restart
            assert got.status_code == 200 and b"moof" in got.content[:64]
            metrics_text = (await http.get("/metrics")).text
            assert "livecast_vod_archive_spool_bytes 0.0" in metrics_text
    finally:
        await server.runner.stop()


def _segment(rendition: str, seq: int, size: int) -> SpooledSegment:
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    return SpooledSegment(rendition, seq, 1, seq * 2.0, 2.0, start + dt.timedelta(seconds=seq * 2), False, size)


def test_spool_scan_keeps_complete_segments_and_removes_debris(tmp_path: Path) -> None:
    spool = Spool(tmp_path / SPOOL_DIR)
    spool.write_video("42", {"video_id": "42", "reference": "source"})
    spool.write_init("42", "source", 1, b"init")
    for seq in range(3):
        spool.write_segment("42", _segment("source", seq, 4), b"data")
    folder = tmp_path / SPOOL_DIR / "42"
    (folder / "source.3.m4s").write_bytes(b"half")  # a write interrupted before its sidecar
    (folder / ".source.4.m4s.tmp").write_bytes(b"tmp")
    (folder / "source.1.json").write_text("{not json")
    (tmp_path / SPOOL_DIR / "43").mkdir()  # no video.json: nothing to finish
    with pytest.raises(ValueError):
        spool.write_segment("../x", _segment("source", 0, 1), b"x")
    found = spool.scan()
    assert [v.video_id for v in found] == ["42"]
    assert [s.seq for s in found[0].segments] == [0, 2] and found[0].doc["reference"] == "source"
    assert found[0].segments[0] == _segment("source", 0, 4)
    assert sorted(p.name for p in folder.iterdir()) == [
        "init.source.1.mp4", "source.0.json", "source.0.m4s", "source.2.json", "source.2.m4s", "video.json"]
    assert spool.read_init("42", "source", 1) == b"init" and not (tmp_path / SPOOL_DIR / "43").exists()


async def test_spool_bound_gives_up_the_oldest_as_gaps(tmp_path: Path) -> None:
    """Past ``archive_spool_bytes`` the oldest spooled segments (not the one being uploaded)
    become gaps and their files are removed; the rest stay."""
    limit = 1024 * 1024
    server = await start_server(tmp_path, archive_spool_bytes=limit)
    try:
        archiver = server.platform.state["vod.archiver"]
        assert isinstance(archiver, Archiver) and archiver.spool is not None
        size = 300 * 1024
        archiver.spool.write_video("77", {"video_id": "77", "reference": "source"})
        for seq in range(5):
            archiver.spool.write_segment("77", _segment("source", seq, size), b"\0" * size)
        found = archiver.spool.scan()
        res = Resumed(archiver, found[0])  # not started: nothing uploads meanwhile
        res.uploading = True  # seq 0 is in flight: it is never the one given up
        archiver.resumed.add(res)
        archiver.spool_changed(found[0].nbytes, len(found[0].segments))
        assert archiver.spool_bytes == 5 * size > limit
        victims = archiver.make_spool_room()
        assert [v.seq for _, v in victims] == [1, 2]
        assert archiver.spool_bytes == 3 * size <= limit and archiver.spool_segments == 3
        assert res.gaps == 2 and [(i.seq, i.gap) for i in res.queue][:3] == [(0, False), (1, True), (2, True)]
        for owner, victim in victims:
            await owner._unspool(victim)
        assert [s.seq for s in archiver.spool.scan()[0].segments] == [0, 3, 4]
        assert archiver.make_spool_room() == []  # under the bound: nothing more
        archiver.resumed.discard(res)
        archiver.spool_changed(-archiver.spool_bytes, -archiver.spool_segments)
    finally:
        await server.runner.stop()


async def test_spool_left_by_a_killed_process_is_finished_with_its_holes_as_gaps(tmp_path: Path) -> None:
    """A process killed before its video row was written (or whose shutdown could not record
    its losses) left only the spool: the next start creates the video from ``video.json``,
    uploads what is there, records the numbers missing between them as gaps sized from the
    offsets, and completes the video."""
    server = await start_server(tmp_path)
    try:
        user = await server.create_user("crashed")
    finally:
        await server.runner.stop()
    spool = Spool(tmp_path / "var" / SPOOL_DIR)
    spool.write_video("991", {"video_id": "991", "user_id": user["user_id"], "stream_id": None, "login": "crashed",
                              "is_partner": False, "reference": "source",
                              "renditions": {"source": {"codecs": "avc1", "width": 2, "height": 2, "fps": 30.0,
                                                        "audio_only": False}}})
    spool.write_init("991", "source", 1, b"init")
    for seq in (0, 3):  # 1 and 2 died in memory
        spool.write_segment("991", _segment("source", seq, 4), b"seg" + bytes([seq]))
    server = await start_server(tmp_path)
    try:
        async def ready() -> Video | None:
            async with server.platform.db.session() as db:
                v = await db.get(Video, "991")
            return v if v is not None and v.status == "ready" else None

        video = await wait_for(ready, 15)
        rows = (await _video_rows(server, "991"))["source"]
        assert [(r.seq, r.status) for r in rows] == [(0, "stored"), (1, "gap"), (2, "gap"), (3, "stored")]
        assert [r.offset for r in rows] == [0.0, 2.0, 4.0, 6.0] and rows[1].duration == pytest.approx(2.0)
        assert video.gap_seconds == pytest.approx(4.0) and video.duration == pytest.approx(8.0)
        assert video.user_id == user["user_id"] and video.renditions["source"]["codecs"] == "avc1"
        assert await server.platform.storage.get("vods/991/source/3.m4s") == b"seg\x03"
        assert await server.platform.storage.get("vods/991/source/init1.mp4") == b"init"
        assert not (tmp_path / "var" / SPOOL_DIR / "991").exists()
    finally:
        await server.runner.stop()
