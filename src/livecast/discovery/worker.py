"""The discovery worker (role ``worker``): viewer counts, analytics samples, search index,
and go-live notification fan-out.

Every ``count_interval`` seconds one worker in the cluster (whoever claims the tick on the
bus) reads each live stream's distinct viewers from the bus, writes ``Stream.viewer_count``
(what ``GET /helix/streams`` shows) and adds an analytics sample. ``event.stream.online``
starts a fan-out task; the claim key makes it run once per stream even with several workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update

from livecast import metrics
from livecast.discovery import analytics, notifications, search, viewers
from livecast.ingest.models import Stream
from livecast.logs import event
from livecast.platform import Platform

log = logging.getLogger("livecast.discovery")

LIVE = ("live", "reconnecting")
COUNT_BATCH = 1000  # channels per bus round trip


class DiscoveryWorker:
    name = "discovery"

    def __init__(self, platform: Platform, *, count_interval: float = 10.0, reindex_interval: float = 30.0) -> None:
        self.platform = platform
        self.count_interval = count_interval
        self.reindex_interval = reindex_interval
        self.chat: Counter[str] = Counter()  # channel id -> messages since the last tick
        self.tasks: list[asyncio.Task[None]] = []
        self.fanouts: set[asyncio.Task[int]] = set()
        self._subs: list[Any] = []

    async def start(self) -> dict[str, int]:
        bus = self.platform.bus
        online = await bus.subscribe("event.stream.online")
        chat = await bus.subscribe("event.channel.chat.message")
        self._subs = [online, chat]
        self.tasks = [
            asyncio.create_task(self._online(online)),
            asyncio.create_task(self._chat(chat)),
            asyncio.create_task(self._every(self.count_interval, self.tick)),
            asyncio.create_task(self._every(self.reindex_interval, self.reindex)),
        ]
        return {}

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.close()
        for task in [*self.tasks, *self.fanouts]:
            task.cancel()
        for task in [*self.tasks, *self.fanouts]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _every(self, interval: float, job: Any) -> None:
        while True:
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.errors.labels("discovery").inc()
                log.exception("discovery job %s failed", getattr(job, "__name__", job))
            # Wake on the interval's boundaries, so that each sample stands for one interval
            # however long the job took, and workers on every node race for the same slot.
            await asyncio.sleep(interval - time.time() % interval + 0.05)

    async def _online(self, sub: Any) -> None:
        async for _, data in sub:
            try:
                payload = json.loads(data)
                channel_id = str(payload["broadcaster_user_id"])
                stream_id = str(payload.get("id") or "")
            except (ValueError, KeyError, TypeError):
                metrics.errors.labels("discovery_event").inc()
                continue
            claim = f"discovery:notified:{stream_id or channel_id + ':' + str(int(time.time() // 60))}"
            if not await self.platform.bus.set(claim, b"1", ttl=86400, only_if_absent=True):
                continue
            task = asyncio.create_task(self.fan_out(channel_id, stream_id))
            self.fanouts.add(task)
            task.add_done_callback(self.fanouts.discard)

    async def fan_out(self, channel_id: str, stream_id: str) -> int:
        started = time.perf_counter()
        try:
            sent = await notifications.fan_out(self.platform.db.session, channel_id, stream_id)
        except Exception:
            metrics.errors.labels("discovery_fanout").inc()
            log.exception("go-live fan-out failed for %s", channel_id)
            return 0
        elapsed = time.perf_counter() - started
        metrics.notifications_sent.inc(sent)
        metrics.notification_fanout_seconds.observe(elapsed)
        event(log, "go-live notifications sent", channel_id=channel_id, followers=sent, seconds=round(elapsed, 3))
        return sent

    async def _chat(self, sub: Any) -> None:
        async for _, data in sub:
            try:
                self.chat[str(json.loads(data)["broadcaster_user_id"])] += 1
            except (ValueError, KeyError, TypeError):
                continue

    async def tick(self, now: float | None = None, *, claim: bool = True) -> dict[str, int]:
        """Write viewer counts and a sample for every live stream; returns stream id -> viewers.

        ``claim=False`` skips the once-per-interval cluster claim (for an on-demand refresh).
        """
        now = time.time() if now is None else now
        chat, self.chat = self.chat, Counter()
        slot = int(now // self.count_interval)
        if claim and not await self.platform.bus.set(
            f"discovery:tick:{slot}", b"1", ttl=self.count_interval * 3, only_if_absent=True
        ):
            return {}  # another worker owns this tick (it saw the same chat messages)
        async with self.platform.db.session() as db:
            live = (
                await db.execute(select(Stream.id, Stream.user_id, Stream.viewer_count).where(Stream.status.in_(LIVE)))
            ).all()
        counts: list[int] = []
        for i in range(0, len(live), COUNT_BATCH):
            chunk = [uid for _, uid, _ in live[i : i + COUNT_BATCH]]
            counts += await viewers.count_many(self.platform.bus, chunk, now)
        changed = [{"sid": sid, "n": n} for (sid, _, old), n in zip(live, counts, strict=True) if n != old]
        samples = {sid: (uid, n) for (sid, uid, _), n in zip(live, counts, strict=True)}
        by_stream_chat = {sid: chat.get(uid, 0) for sid, uid, _ in live}
        async with self.platform.db.session() as db:
            if changed:
                t = cast(Table, Stream.__table__)
                stmt = update(t).where(t.c.id == bindparam("sid")).values(viewer_count=bindparam("n"))
                await db.execute(stmt.execution_options(synchronize_session=False), changed)
            await analytics.record_samples(db, samples, self.count_interval, by_stream_chat)
        metrics.live_viewers.set(sum(counts))
        return {sid: n for sid, (_, n) in samples.items()}

    async def reindex(self) -> int:
        async with self.platform.db.session() as db:
            return await search.reindex(db)


def create_service(platform: Platform) -> DiscoveryWorker:
    return DiscoveryWorker(platform)
