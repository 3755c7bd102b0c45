"""Renewal and expiry jobs: durable, exclusive between workers, and safe across a crash."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from livecast.bus.memory import MemoryBus
from livecast.config import load_settings
from livecast.identity import service as identity
from livecast.platform import Platform
from livecast.storage import create_store
from livecast.store.base import utcnow
from livecast.store.db import Database
from livecast.subscriptions import jobs, ledger, service
from livecast.subscriptions.models import Charge, Job, Subscription
from livecast.subscriptions.worker import SubscriptionWorker


async def open_platform(url: str, tmp_path: Path) -> Platform:
    """A second "process": its own engine and bus over the same database."""
    settings = load_settings({}, data_dir=str(tmp_path))
    bus = MemoryBus()
    await bus.start()
    return Platform(settings=settings, db=Database(url), bus=bus, storage=create_store(f"file://{tmp_path}/s"))


@pytest.fixture
async def two(database: Database, tmp_path: Path) -> AsyncIterator[tuple[Platform, Platform]]:
    a = await open_platform(database.url, tmp_path)
    b = await open_platform(database.url, tmp_path)
    yield a, b
    for p in (a, b):
        await p.bus.close()
        await p.db.close()


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


async def seed(platform: Platform, n: int, start: dt.datetime) -> tuple[str, list[str]]:
    async with platform.db.session() as db:
        channel, _ = await identity.create_user(db, "chan")
        viewers = [(await identity.create_user(db, f"viewer{i}"))[0].id for i in range(n)]
    for i, user_id in enumerate(viewers):
        async def buy(db: object, out: service.Outbox, user_id: str = user_id) -> object:
            return await service.subscribe(db, out, platform.settings, channel_id=channel.id,  # type: ignore[arg-type]
                                           user_id=user_id, tier="1000", payment=service.sandbox_payment(),
                                           now=start)
        await service.run(platform, buy)
        if i % 3 == 2:  # every third viewer cancels: expiry instead of renewal
            async def leave(db: object, out: service.Outbox, user_id: str = user_id) -> object:
                return await service.cancel(db, out, channel_id=channel.id, user_id=user_id)  # type: ignore[arg-type]
            await service.run(platform, leave)
    return channel.id, viewers


async def test_two_workers_run_each_job_once(two: tuple[Platform, Platform]) -> None:
    a, b = two
    start = utcnow()
    _channel, viewers = await seed(a, 12, start)
    clock = Clock(start + service.PERIOD + dt.timedelta(minutes=1))
    wa, wb = SubscriptionWorker(a, clock=clock), SubscriptionWorker(b, clock=clock)
    ran = await asyncio.gather(wa.run_due(), wb.run_due(), wa.run_due(), wb.run_due())
    assert sum(ran) == 12
    async with a.db.session() as db:
        subs = {s.user_id: s for s in (await db.execute(select(Subscription))).scalars()}
        charges = (await db.execute(select(func.count()).select_from(Charge))).scalar()
        done = (await db.execute(select(func.count()).select_from(Job).where(Job.status == "done"))).scalar()
        pending = (await db.execute(select(Job).where(Job.status == "pending"))).scalars().all()
        assert await ledger.unbalanced_transactions(db) == []
    renewed = [v for i, v in enumerate(viewers) if i % 3 != 2]
    expired = [v for i, v in enumerate(viewers) if i % 3 == 2]
    assert all(subs[v].state == "active" and subs[v].cumulative_months == 2 for v in renewed)
    assert all(subs[v].state == "expired" and subs[v].cumulative_months == 1 for v in expired)
    assert charges == 12 + len(renewed)
    assert done == 12
    assert len(pending) == len(renewed)  # each renewal scheduled its next period end
    assert await wa.run_due() + await wb.run_due() == 0  # nothing due twice


async def test_jobs_survive_a_restart_and_a_crashed_worker(database: Database, tmp_path: Path) -> None:
    first = await open_platform(database.url, tmp_path)
    start = utcnow()
    channel, (viewer,) = await seed(first, 1, start)
    # the process stops before the period ends: the job is only a row in the database
    worker = SubscriptionWorker(first, clock=Clock(start), poll_interval=0.01)
    await worker.start()
    await asyncio.sleep(0.05)
    await worker.stop()
    assert worker.processed == 0
    await first.db.close()
    await first.bus.close()

    second = await open_platform(database.url, tmp_path)  # "after the restart"
    due = start + service.PERIOD + dt.timedelta(seconds=5)
    try:
        async with second.db.session() as db:  # a worker claims the job, then dies
            assert len(await jobs.claim(db, "crashed-worker", due)) == 1
        survivor = SubscriptionWorker(second, clock=Clock(due))
        assert await survivor.run_due() == 0  # leased to the dead worker
        survivor.clock = Clock(due + jobs.LEASE + dt.timedelta(seconds=1))
        assert await survivor.run_due() == 1
        async with second.db.session() as db:
            sub = await service.get_subscription(db, channel, viewer)
            assert sub is not None and sub.cumulative_months == 2
            assert (await db.execute(select(func.count()).select_from(Charge))).scalar() == 2
            # the dead worker waking up cannot finish what it no longer holds
            first_job = (await db.execute(select(Job).order_by(Job.run_at))).scalars().first()
            assert first_job is not None and first_job.status == "done" and first_job.attempts == 2
            assert not await jobs.finish(db, first_job.id, "crashed-worker", due)
        # the service runs as role "worker" in a real process too
        from livecast.server import SERVICES

        assert ("worker", "livecast.subscriptions.worker:create_service") in SERVICES
    finally:
        await second.db.close()
        await second.bus.close()
