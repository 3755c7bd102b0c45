"""The archive on both storage backends (files and a local S3 server), through a storage outage.

The outage is real, not mocked: the file store's root is replaced by a plain file (every
write fails with ENOTDIR), and the S3 store talks to moto through a TCP proxy that is shut
and reopened. Live media keeps flowing throughout; the archive's bounded queue holds what it
can, records the rest as a gap, and completes the VOD once storage is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import m3u8
import pytest
from sqlalchemy import select

from livecast.ingest.pipeline import StreamInfo
from livecast.media.flvsource import FlvTagReader, Tag
from livecast.media.service import MediaService, StreamSession
from livecast.vod.archive import Archiver
from livecast.vod.models import Video, VodSegment
from tests.conftest import Server, start_server, wait_for
from tests.test_storage import s3_endpoint  # noqa: F401  (the session's moto server)
from tests.vod_support import frame_numbers, make_flv, probe

SECONDS = 16.0
QUEUE = 1024 * 1024  # the smallest archive queue: about a segment and a half of this source


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


def feed(session: StreamSession, tags: list[Tag], start: float, stop: float) -> None:
    """A burst of the source's tags in [start, stop) seconds (faster than real time)."""
    for tag in tags:
        if start <= tag.timestamp / 1000 < stop:
            session.feed(tag.raw)


async def test_archive_survives_storage_outage(backend: Backend, cbr_flv: bytes, tmp_path: Path) -> None:
    server: Server = await start_server(tmp_path, storage_url=backend.url, archive_queue_bytes=QUEUE)
    try:
        user = await server.create_user("archivist")
        media = server.platform.state["media"]
        archiver = server.platform.state["vod.archiver"]
        assert isinstance(media, MediaService) and isinstance(archiver, Archiver)
        info = StreamInfo(stream_id="s-archivist", user_id=user["user_id"], login="archivist", broadcaster_type="")
        session = await media.open_stream(info)
        reader = FlvTagReader()
        tags = reader.feed(cbr_flv)
        assert reader.header is not None
        session.feed(reader.header)

        async def stored_seconds() -> float:
            async with server.platform.db.session() as db:
                rows = (await db.execute(select(VodSegment).where(VodSegment.rendition == "source"))).scalars().all()
            return sum(r.duration for r in rows)

        feed(session, tags, 0, 4)
        await wait_for(lambda: stored_seconds(), 20)  # the first segment is archived
        await backend.down()
        feed(session, tags, 4, 10)
        live = media.stream("archivist")
        assert live is not None
        # the live stream goes on while storage is down: the origin serves new segments
        await wait_for(lambda: live.segmenters["source"].next_msn >= 5, 20)
        async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
            r = await http.get("/hls/archivist/source/playlist.m3u8")
            assert r.status_code == 200 and "seg3.m4s" in r.text
        rec = next(iter(archiver.recordings))
        await wait_for(lambda: rec.gaps >= 1, 20)  # the queue overflowed: the oldest waiting segment is a gap
        assert archiver.pending_bytes <= QUEUE
        await backend.up()
        await wait_for(lambda: not rec.queue, 30)  # what the queue held is stored now
        for second in range(10, int(SECONDS) + 1, 2):  # the rest one segment at a time, as a live source would
            feed(session, tags, second, second + 2)
            if second < SECONDS:
                opened = second // 2 + 1  # the segment that starts at ``second`` exists
                await wait_for(lambda: live.segmenters["source"].next_msn >= opened, 20)  # noqa: B023
            await wait_for(lambda: not rec.queue, 30)
        await session.close()

        async def ready() -> Video | None:
            async with server.platform.db.session() as db:
                v = (await db.execute(select(Video).where(Video.user_id == user["user_id"]))).scalars().first()
            return v if v is not None and v.status == "ready" else None

        video = await wait_for(ready, 60)
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
