"""Durable scheduled jobs: claimed under a lease, done in the same transaction as their effect.

Claiming is one ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING id``: on PostgreSQL the
inner select takes ``FOR UPDATE SKIP LOCKED`` so workers never wait on each other's rows; on
SQLite the statement runs under the database's single writer lock, which is the same
guarantee. A claim carries a lease: if its worker dies, the job becomes claimable again when
the lease runs out. A job's effect and its ``done`` mark commit together, so a crash in
between leaves the job pending with no effect, and it runs once in the end.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.subscriptions.models import Job

LEASE = dt.timedelta(seconds=60)
MAX_ATTEMPTS = 8


async def claim(db: AsyncSession, worker: str, now: dt.datetime, limit: int = 10) -> list[str]:
    claimable = (Job.run_at <= now,
                 or_(Job.status == "pending", (Job.status == "running") & (Job.locked_until < now)))
    # a plain read first: an idle poll must not take SQLite's writer lock every second
    if (await db.execute(select(Job.id).where(*claimable).limit(1))).first() is None:
        return []
    due = select(Job.id).where(*claimable).order_by(Job.run_at, Job.id).limit(limit)
    if db.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    stmt = (
        update(Job)
        .where(Job.id.in_(due.scalar_subquery()))
        .values(status="running", locked_by=worker, locked_until=now + LEASE, attempts=Job.attempts + 1)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    return [row[0] for row in (await db.execute(stmt)).all()]


async def finish(db: AsyncSession, job_id: str, worker: str, now: dt.datetime) -> bool:
    """Mark our claimed job done; False if our lease was lost to another worker."""
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.locked_by == worker, Job.status == "running")
        .values(status="done", finished_at=now)
        .execution_options(synchronize_session=False)
    )
    result = await db.execute(stmt)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def retry_later(db: AsyncSession, job_id: str, worker: str, now: dt.datetime, error: str) -> None:
    """Put a failed job back with a growing delay; after MAX_ATTEMPTS it stays ``failed``."""
    job = await db.get(Job, job_id)
    if job is None or job.locked_by != worker or job.status != "running":
        return
    job.last_error = error[:500]
    if job.attempts >= MAX_ATTEMPTS:
        job.status = "failed"
        job.finished_at = now
    else:
        job.status = "pending"
        job.run_at = now + dt.timedelta(seconds=30 * 2 ** job.attempts)
