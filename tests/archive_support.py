"""A channel that is live and archiving, for the tests that take its storage away.

The storage-outage tests (``tests/test_vod_storage.py``) and the full-disk and shutdown tests
(``tests/test_faults_delivery.py``) start the same way: a user goes live from a constant-bitrate
FLV that the test feeds by hand (so the test, not a clock, decides when each second of media
arrives), and the first segment reaches storage before the fault is injected. The tests that
end the stream after the fault end it the same way too. Both live here once, so that every
such test sets up the same situation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from livecast.ingest.pipeline import StreamInfo
from livecast.media.flvsource import FlvTagReader, Tag
from livecast.media.service import MediaService, StreamSession
from livecast.packager.live import LiveStream
from livecast.vod.archive import Archiver, Recording
from livecast.vod.models import Video, VodSegment
from tests.conftest import Server, wait_for

SECONDS = 16.0
QUEUE = 1024 * 1024  # the smallest archive queue: about a segment and a half of this source


def feed(session: StreamSession, tags: list[Tag], start: float, stop: float) -> None:
    """A burst of the source's tags in [start, stop) seconds (faster than real time)."""
    for tag in tags:
        if start <= tag.timestamp / 1000 < stop:
            session.feed(tag.raw)


@dataclass
class ArchivingChannel:
    """A channel live from an FLV file and being recorded; ``feed`` sends more of the file."""

    server: Server
    user: dict[str, Any]
    media: MediaService
    archiver: Archiver
    session: StreamSession
    tags: list[Tag]

    def feed(self, start: float, stop: float) -> None:
        feed(self.session, self.tags, start, stop)

    def live(self) -> LiveStream:
        """The origin's side of the stream, which keeps serving whatever happens to storage."""
        live = self.media.stream(self.user["login"])
        assert live is not None
        return live


async def source_rows(server: Server) -> list[VodSegment]:
    """The archive's rows for the source rendition, in order (each of these tests records one video)."""
    async with server.platform.db.session() as db:
        return list((await db.execute(select(VodSegment).where(VodSegment.rendition == "source")
                                      .order_by(VodSegment.seq))).scalars().all())


async def start_archiving(server: Server, login: str, flv: bytes) -> ArchivingChannel:
    """A new user ``login`` goes live from ``flv``; returns once its first segment is archived,
    so that a fault injected next meets a recording that storage has already served."""
    user = await server.create_user(login)
    media = server.platform.state["media"]
    archiver = server.platform.state["vod.archiver"]
    assert isinstance(media, MediaService) and isinstance(archiver, Archiver)
    info = StreamInfo(stream_id=f"s-{login}", user_id=user["user_id"], login=login, broadcaster_type="")
    session = await media.open_stream(info)
    reader = FlvTagReader()
    tags = reader.feed(flv)
    assert reader.header is not None
    session.feed(reader.header)
    channel = ArchivingChannel(server, user, media, archiver, session, tags)
    channel.feed(0, 4)
    await wait_for(lambda: source_rows(server), 20)  # the first segment is archived
    return channel


async def finish_after_the_fault(channel: ArchivingChannel, rec: Recording) -> Video:
    """Once storage takes writes again, and the source has been fed up to 10 s: the rest of the
    source, then the end of the stream; returns the completed video.

    The rest goes one segment at a time, as a live source would send it, each waiting for the
    archive to take it, so that only the fault (never this burst) can overflow the queue."""
    live = channel.live()
    await wait_for(lambda: not rec.queue, 30)  # what the queue held is stored now
    for second in range(10, int(SECONDS) + 1, 2):
        channel.feed(second, second + 2)
        if second < SECONDS:
            opened = second // 2 + 1  # the segment that starts at ``second`` exists
            await wait_for(lambda: live.segmenters["source"].next_msn >= opened, 20)  # noqa: B023
        await wait_for(lambda: not rec.queue, 30)
    await channel.session.close()
    user_id = channel.user["user_id"]

    async def ready() -> Video | None:
        async with channel.server.platform.db.session() as db:
            v = (await db.execute(select(Video).where(Video.user_id == user_id))).scalars().first()
        return v if v is not None and v.status == "ready" else None

    video: Video = await wait_for(ready, 60)
    return video


async def only_video(server: Server) -> Video:
    """The one video these tests record."""
    async with server.platform.db.session() as db:
        return (await db.execute(select(Video))).scalars().one()
