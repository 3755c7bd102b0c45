"""Durable jobs claimed under a lease: the one claiming algorithm every job table shares.

A job table has ``id``, ``status`` (pending | running | done | failed), ``run_at``,
``locked_by``, ``locked_until``, ``attempts``, ``last_error`` and ``finished_at``; each domain
keeps its own table (its own columns, indexes and retry policy) and a :class:`LeaseQueue` over it.

Claiming is one ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING id``: on PostgreSQL the
inner select takes ``FOR UPDATE SKIP LOCKED`` so workers never wait on each other's rows; on
SQLite the statement runs under the database's single writer lock, which is the same
guarantee. A claim carries a lease: if its worker dies, the job becomes claimable again when
the lease runs out. A job's effect and its ``done`` mark commit together, so a crash in
between leaves the job pending with no effect, and it runs once in the end.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession


class LeaseQueue:
    def __init__(self, model: Any, *, lease: dt.timedelta, max_attempts: int,
                 backoff: Callable[[int], float]) -> None:
        """``backoff(attempts)`` is the delay in seconds before the next try of a failed job."""
        self.model = model
        self.lease = lease
        self.max_attempts = max_attempts
        self.backoff = backoff

    async def claim(self, db: AsyncSession, worker: str, now: dt.datetime, limit: int = 10) -> list[str]:
        m = self.model
        claimable = (m.run_at <= now, or_(m.status == "pending", (m.status == "running") & (m.locked_until < now)))
        # a plain read first: an idle poll must not take SQLite's writer lock every second
        if (await db.execute(select(m.id).where(*claimable).limit(1))).first() is None:
            return []
        due = select(m.id).where(*claimable).order_by(m.run_at, m.id).limit(limit)
        if db.get_bind().dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        stmt = (
            update(m)
            .where(m.id.in_(due.scalar_subquery()))
            .values(status="running", locked_by=worker, locked_until=now + self.lease, attempts=m.attempts + 1)
            .returning(m.id)
            .execution_options(synchronize_session=False)
        )
        return [row[0] for row in (await db.execute(stmt)).all()]

    async def finish(self, db: AsyncSession, job_id: str, worker: str, now: dt.datetime) -> bool:
        """Mark our claimed job done; False if our lease was lost to another worker."""
        m = self.model
        stmt = (
            update(m)
            .where(m.id == job_id, m.locked_by == worker, m.status == "running")
            .values(status="done", finished_at=now)
            .execution_options(synchronize_session=False)
        )
        result = await db.execute(stmt)
        return bool(getattr(result, "rowcount", 0))

    async def retry_later(self, db: AsyncSession, job_id: str, worker: str, now: dt.datetime, error: str) -> bool:
        """Put a failed job back with a growing delay; returns True once it has failed for good."""
        job = await db.get(self.model, job_id)
        if job is None or job.locked_by != worker or job.status != "running":
            return False
        job.last_error = error[:500]
        if job.attempts >= self.max_attempts:
            job.status, job.finished_at = "failed", now
            return True
        job.status = "pending"
        job.run_at = now + dt.timedelta(seconds=self.backoff(job.attempts))
        return False
