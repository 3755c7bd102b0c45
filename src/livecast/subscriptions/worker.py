"""The renewal and expiry runner (role ``worker``): executes due period-end jobs.

At a period's end an active, renewing subscription is charged for the next period through its
provider (the sandbox always succeeds; Stripe charges the card saved at checkout off-session);
any other entitled subscription (cancelled, gifted, unpaid) expires. Several workers may run
against one database: claims are exclusive (see jobs.py) and each job commits with its effect.

A declined renewal ends the subscription at its period end, at once (``channel.subscription.end``),
with no grace period or retry: the card was refused with nobody present, and the viewer can
subscribe again at any time (cumulative months carry over). A charge that went through but whose
job crashed before committing is not charged again: the retried job sends the same idempotency
key and gets the same PaymentIntent back, and the ledger is keyed on that PaymentIntent, so the
job's answer and Stripe's ``payment_intent.succeeded`` webhook book it once between them. An
asynchronous payment still ``processing`` leaves the subscription waiting (no benefits past the
period end) until that webhook or ``payment_intent.payment_failed`` decides it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

from livecast import metrics
from livecast.logs import event
from livecast.platform import Platform
from livecast.store.base import new_id, utcnow
from livecast.subscriptions import events, jobs, service
from livecast.subscriptions.events import Outbox
from livecast.subscriptions.models import ACTIVE, ENTITLED_STATES, Charge, Job, Subscription
from livecast.subscriptions.pricing import price_for
from livecast.subscriptions.providers import RenewalRequest, provider_for
from livecast.subscriptions.providers.base import DECLINED, PENDING, SUCCEEDED

log = logging.getLogger("livecast.subscriptions")


async def run_period_end(db: AsyncSession, out: Outbox, platform: Platform, job: Job, now: dt.datetime) -> str:
    sub = await db.get(Subscription, job.subscription_id)
    if sub is None:
        return "gone"
    locked = await service.lock_subscription(db, sub.channel_id, sub.user_id)
    if locked is None:
        return "gone"
    if locked.state not in ENTITLED_STATES or service.job_key_for(locked) != job.key:
        return "stale"  # already ended, or the period moved on (renewed, re-bought)
    if locked.state == ACTIVE and locked.auto_renew and not locked.is_gift:
        provider = provider_for(platform.settings, locked.provider)
        tier = locked.next_tier or locked.tier
        price = await price_for(db, platform.settings, locked.channel_id, tier)
        paid = await db.get(Charge, locked.charge_id) if locked.charge_id else None  # the current period's
        result = await provider.charge_renewal(RenewalRequest(
            locked.id, price.unit_amount, price.currency, service.period_key(locked), tier=tier,
            customer=locked.provider_customer, payment_method=locked.provider_payment_method,
            original_ref=paid.provider_ref if paid is not None else ""))
        if result.status == SUCCEEDED:
            if result.payment_method:
                locked.provider_payment_method = result.payment_method
            payment = service.Payment(provider.name, result.ref, result.amount, result.currency)
            await service.renew(db, out, platform.settings, locked, payment, now)
            return "renewed"
        if result.status == PENDING:
            return "pending"
        if result.status == DECLINED:
            event(log, "renewal declined", subscription=locked.id, ref=result.ref, reason=result.reason)
    await service.expire(db, out, locked, now)
    return "expired"


class SubscriptionWorker:
    name = "subscriptions"

    def __init__(self, platform: Platform, *, poll_interval: float = 1.0,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.platform = platform
        self.poll_interval = poll_interval
        self.clock = clock
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{new_id()}"
        self._task: asyncio.Task[None] | None = None
        self.processed = 0

    async def start(self) -> dict[str, int]:
        self._task = asyncio.create_task(self._loop())
        return {}

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.errors.labels("subscriptions_worker").inc()
                log.exception("subscription jobs failed")
            await asyncio.sleep(self.poll_interval)

    async def run_due(self) -> int:
        """Claim and run every job that is due now; returns how many ran."""
        done = 0
        while True:
            now = self.clock()
            async with self.platform.db.session() as db:
                claimed = await jobs.claim(db, self.worker_id, now)
            if not claimed:
                return done
            for job_id in claimed:
                await self._run_one(job_id, now)
                done += 1

    async def _run_one(self, job_id: str, now: dt.datetime) -> None:
        out = Outbox()
        try:
            async with self.platform.db.session() as db:
                job = await db.get(Job, job_id)
                if job is None:
                    return
                outcome = await run_period_end(db, out, self.platform, job, now)
                if not await jobs.finish(db, job_id, self.worker_id, now):
                    raise _LeaseLost(job_id)
        except _LeaseLost:
            return
        except Exception as exc:
            log.exception("subscription job %s failed", job_id)
            async with self.platform.db.session() as db:
                await jobs.retry_later(db, job_id, self.worker_id, now, f"{type(exc).__name__}: {exc}")
            return
        self.processed += 1
        event(log, "subscription job", job=job_id, outcome=outcome)
        await events.publish(self.platform, out)


class _LeaseLost(Exception):
    pass


def create_service(platform: Platform) -> SubscriptionWorker:
    return SubscriptionWorker(platform)
