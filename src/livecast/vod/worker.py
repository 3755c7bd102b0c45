"""The ``worker`` role's VOD service: runs clip and highlight jobs and enforces retention.

Jobs come from :mod:`livecast.vod.jobs`; a bus message wakes the loop as soon as one is
enqueued, and a slow poll catches anything the bus missed (a worker that was restarting).
Several workers may run against one database: each claim is exclusive. A failing job is
retried with backoff and marked ``failed`` in the end, and its clip with it, so
``GET /helix/clips`` never waits for a clip that will not come.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from livecast import metrics
from livecast.bus import Subscription
from livecast.logs import event
from livecast.platform import Platform
from livecast.store.base import new_id, utcnow
from livecast.vod import jobs, service, stats
from livecast.vod.models import FAILED, PROCESSING, Clip, Video, VodJob
from livecast.waits import until_set

log = logging.getLogger("livecast.vod")

POLL_S = 1.0
CONCURRENCY = 2  # ffmpeg cuts at once per worker process


class VodWorker:
    name = "vod-worker"

    def __init__(self, platform: Platform, *, concurrency: int = CONCURRENCY) -> None:
        self.platform = platform
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{new_id()}"
        self.concurrency = concurrency
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._sub: Subscription | None = None
        self.processed = 0
        self._swept_at = 0.0
        self.handlers: dict[str, Callable[[Platform, str], Awaitable[str]]] = {
            "clip": _build_clip,
            "highlight": service.build_highlight,
        }

    async def start(self) -> dict[str, int]:
        self._sub = await self.platform.bus.subscribe(jobs.WAKE_CHANNEL)
        self._tasks.append(asyncio.create_task(self._listen(self._sub)))
        for _ in range(self.concurrency):
            self._tasks.append(asyncio.create_task(self._loop()))
        return {}

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.close()

    async def _listen(self, sub: Subscription) -> None:
        async for _channel, _data in sub:
            self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                ran = await self.run_due()
                if time.monotonic() - self._swept_at > self.platform.settings.vod_retention_interval:
                    self._swept_at = time.monotonic()
                    removed = await service.sweep_retention(self.platform)
                    finished = await service.finalize_orphans(self.platform)
                    if removed or finished:
                        event(log, "vod retention", deleted=removed, orphans_finished=finished)
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.errors.labels("vod_worker").inc()
                log.exception("vod jobs failed")
                ran = 0
            if not ran:
                self._wake.clear()
                await until_set(self._wake, POLL_S)

    async def run_due(self) -> int:
        """Claim and run jobs that are due, one at a time; returns how many ran."""
        done = 0
        while True:
            now = utcnow()
            async with self.platform.db.session() as db:
                claimed = await jobs.claim(db, self.worker_id, now, limit=1)
            if not claimed:
                return done
            await self._run_one(claimed[0])
            done += 1

    async def _run_one(self, job_id: str) -> None:
        async with self.platform.db.session() as db:
            job = await db.get(VodJob, job_id)
            if job is None:
                return
            kind, ref = job.kind, job.ref
        handler = self.handlers.get(kind)
        started = time.perf_counter()
        try:
            if handler is None:
                raise ValueError(f"unknown job kind {kind!r}")
            outcome = await handler(self.platform, ref)
        except service.NotYet as early:
            stats.jobs_done.labels(kind, "not_yet").inc()
            async with self.platform.db.session() as db:
                await jobs.postpone(db, job_id, self.worker_id, utcnow(), early.delay)
            return
        except Exception as exc:
            log.warning("vod job %s (%s %s) failed: %s", job_id, kind, ref, exc)
            stats.jobs_done.labels(kind, "error").inc()
            async with self.platform.db.session() as db:
                failed = await jobs.retry_later(db, job_id, self.worker_id, utcnow(), f"{type(exc).__name__}: {exc}")
                if failed:
                    await _mark_failed(db, kind, ref, str(exc))
            return
        async with self.platform.db.session() as db:
            await jobs.finish(db, job_id, self.worker_id, utcnow())
        self.processed += 1
        stats.jobs_done.labels(kind, outcome).inc()
        stats.job_seconds.labels(kind).observe(time.perf_counter() - started)
        event(log, "vod job", kind=kind, ref=ref, outcome=outcome, seconds=round(time.perf_counter() - started, 3))


async def _build_clip(platform: Platform, clip_id: str) -> str:
    from livecast.clips.cut import build_clip

    return await build_clip(platform, clip_id)


async def _mark_failed(db: AsyncSession, kind: str, ref: str, error: str) -> None:
    """A job out of retries takes its clip or highlight with it, so nobody waits for it."""
    if kind == "clip":
        await db.execute(update(Clip).where(Clip.id == ref, Clip.status == PROCESSING)
                         .values(status=FAILED, error=error[:500]))
    elif kind == "highlight":
        await db.execute(update(Video).where(Video.id == ref, Video.status == PROCESSING).values(status=FAILED))


def create_service(platform: Platform) -> VodWorker:
    return VodWorker(platform)
