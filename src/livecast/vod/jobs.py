"""The durable queue behind clips and highlights (table ``vod_jobs``).

Claiming, leases and backoff are the shared :class:`~livecast.store.leases.LeaseQueue` over
this domain's own table, so neither domain's schema or retry policy constrains the other's: a
claim is one ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)`` on PostgreSQL (the
single writer lock gives the same exclusivity on SQLite), it carries a lease so a dead
worker's job comes back, failures retry with exponential backoff, and :func:`postpone` lets a
job that is waiting for media (a live clip whose last seconds are not archived yet) come back
soon without spending an attempt. Jobs survive restarts because they are rows.

Enqueueing also publishes on the bus channel :data:`WAKE_CHANNEL`, so an idle worker starts
within milliseconds instead of at its next poll.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.platform import Platform
from livecast.store.base import utcnow
from livecast.store.leases import LeaseQueue
from livecast.vod.models import VodJob

LEASE = dt.timedelta(seconds=120)
MAX_ATTEMPTS = 6
BACKOFF_S = 2.0
WAKE_CHANNEL = "vod.jobs"

QUEUE = LeaseQueue(VodJob, lease=LEASE, max_attempts=MAX_ATTEMPTS,
                   backoff=lambda attempts: BACKOFF_S * 2 ** (attempts - 1))


async def enqueue(db: AsyncSession, kind: str, ref: str, run_at: dt.datetime | None = None) -> VodJob:
    job = VodJob(kind=kind, ref=ref, run_at=run_at or utcnow())
    db.add(job)
    await db.flush()
    return job


async def wake(platform: Platform) -> None:
    """Tell idle workers that a job is due (after the enqueueing transaction committed)."""
    await platform.bus.publish(WAKE_CHANNEL, b"1")


async def claim(db: AsyncSession, worker: str, now: dt.datetime, limit: int = 1) -> list[str]:
    return await QUEUE.claim(db, worker, now, limit)


async def finish(db: AsyncSession, job_id: str, worker: str, now: dt.datetime) -> bool:
    """Mark our claimed job done; False if the lease was lost to another worker."""
    return await QUEUE.finish(db, job_id, worker, now)


async def postpone(db: AsyncSession, job_id: str, worker: str, now: dt.datetime, delay: float) -> None:
    """Not an error, just early (media not archived yet): come back after ``delay``, attempt refunded."""
    await db.execute(
        update(VodJob)
        .where(VodJob.id == job_id, VodJob.locked_by == worker, VodJob.status == "running")
        .values(status="pending", run_at=now + dt.timedelta(seconds=delay), attempts=VodJob.attempts - 1)
        .execution_options(synchronize_session=False)
    )


async def retry_later(db: AsyncSession, job_id: str, worker: str, now: dt.datetime, error: str) -> bool:
    """Back off and retry; returns True when the job has now failed for good."""
    return await QUEUE.retry_later(db, job_id, worker, now, error)
