"""The EventSub worker (role ``worker``): dispatches bus events and delivers webhooks.

Deliveries come from the durable outbox, oldest first and one at a time per subscription
(the head of each subscription's queue), so messages arrive in order and a restart resumes
where it stopped. A failed attempt is retried with exponential backoff; after
``max_attempts`` the subscription is revoked with ``notification_failures_exceeded``.
Callback verification (the challenge) runs here too, so it survives restarts as well.
Several workers may run: each delivers (a per-message lock in the bus keeps them apart), and
one of them, holding a lease in the bus, dispatches events into the outbox.

Events arrive by pub/sub, which keeps no history, so the dispatcher's lease cannot simply
lapse when its worker stops: the events published until a standby noticed would reach no
dispatcher. A stopping leader hands over instead: it publishes a marker among the events
(``event._handover``); every worker sees it at the same place in the one ordered stream, so
the old leader dispatches everything before it and then stops, and the first standby to
claim the marker dispatches everything after it. A worker stopped mid-delivery leaves its
message pending in the outbox (only a completed POST marks it delivered), so another
worker, or the next start, sends it again with the same ``message_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import secrets
import uuid
from typing import Any

import httpx
from sqlalchemy import delete, func, select

from livecast import metrics
from livecast.api.eventsub import catalog, service
from livecast.api.eventsub.dispatch import dispatch
from livecast.api.eventsub.models import EventSubMessage, EventSubSubscription
from livecast.api.eventsub.signing import sign
from livecast.logs import event
from livecast.outage import is_backend_outage
from livecast.platform import Platform
from livecast.store.base import utcnow

log = logging.getLogger("livecast.eventsub")
LEASE_KEY = "eventsub:dispatcher"
HANDOVER_TOPIC = "event._handover"  # not an EventSub type: dispatch ignores it
HANDOVER_KEY = "eventsub:handover:"  # + token: the standby that claimed a leader's marker
HANDOVER_WAIT_S = 5.0
DISPATCH_RETRY_MIN_S, DISPATCH_RETRY_MAX_S = 0.25, 2.0


class EventSubWorker:
    name = "eventsub"

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.retry_base = 1.0  # seconds; doubles per attempt
        self.retry_cap = 600.0
        self.max_attempts = 8
        self.poll_interval = 1.0
        self.timeout = 10.0
        self.worker_id = secrets.token_hex(8)
        self.lease_s = 6.0
        self.leader = False
        self.retention = dt.timedelta(days=1)  # delivered and failed messages are kept this long
        self._swept_at = 0.0
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.client: httpx.AsyncClient | None = None
        self._handover_token = b""
        self._handed_over = asyncio.Event()
        self._lease_lock = asyncio.Lock()  # a renewal's stale read must not undo a takeover

    async def start(self) -> dict[str, int]:
        self.client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        await self._renew_lease()
        events = await self.platform.bus.subscribe("event.*")
        wakes = await self.platform.bus.subscribe(service.WAKE_CHANNEL)
        self.tasks = [
            asyncio.create_task(self._lease_loop()),
            asyncio.create_task(self._consume(events)),
            asyncio.create_task(self._wakeups(wakes)),
            asyncio.create_task(self._deliver_loop()),
        ]
        self._subs = (events, wakes)
        return {}

    async def _renew_lease(self) -> None:
        """One dispatcher per cluster: hold ``eventsub:dispatcher`` in the bus, or stand by."""
        async with self._lease_lock:
            await self._renew_lease_locked()

    async def _renew_lease_locked(self) -> None:
        me = self.worker_id.encode()
        if await self.platform.bus.set(LEASE_KEY, me, ttl=self.lease_s, only_if_absent=True):
            self.leader = True
        elif await self.platform.bus.get(LEASE_KEY) == me:
            await self.platform.bus.set(LEASE_KEY, me, ttl=self.lease_s)
            self.leader = True
        else:
            self.leader = False

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self._renew_lease()
            except Exception:
                self.leader = False
                log.exception("eventsub lease renewal failed")

    async def stop(self) -> None:
        lease_loop = self.tasks[0] if self.tasks else None
        if lease_loop is not None:
            lease_loop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await lease_loop
        if self.leader:
            with contextlib.suppress(Exception):
                await self._hand_over()
        for sub in self._subs:
            await sub.close()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.client is not None:
            await self.client.aclose()

    async def _hand_over(self) -> None:
        """Stop dispatching at a marker in the event stream that a standby resumes from."""
        token = secrets.token_hex(8)
        self._handover_token = token.encode()
        # Standbys' lease renewals must not take over at some other place in the stream.
        await self.platform.bus.set(LEASE_KEY, b"handover:" + self._handover_token, ttl=self.lease_s)
        await self.platform.bus.publish(HANDOVER_TOPIC, self._handover_token)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._handed_over.wait(), HANDOVER_WAIT_S)
        if await self.platform.bus.get(LEASE_KEY) == b"handover:" + self._handover_token:
            await self.platform.bus.delete(LEASE_KEY)  # no standby took it: the next worker may
        event(log, "eventsub dispatch handed over", worker=self.worker_id, at_marker=self._handed_over.is_set())

    async def _handover_seen(self, token: bytes) -> bool:
        """A leader's handover marker; True when it was ours (everything before it is dispatched)."""
        if token == self._handover_token:
            self.leader = False
            self._handed_over.set()
            return True
        me = self.worker_id.encode()
        async with self._lease_lock:
            if not self.leader and await self.platform.bus.set(HANDOVER_KEY + token.decode(errors="replace"), me,
                                                               ttl=60, only_if_absent=True):
                await self.platform.bus.set(LEASE_KEY, me, ttl=self.lease_s)
                self.leader = True
                event(log, "eventsub dispatch taken over", worker=self.worker_id)
        return False

    async def _consume(self, events: Any) -> None:
        async for topic, data in events:
            if topic == HANDOVER_TOPIC:
                if await self._handover_seen(data):
                    return
                continue
            if not self.leader:
                continue
            await self._dispatch_retrying(topic, data)

    async def _dispatch_retrying(self, topic: str, data: bytes) -> None:
        """Dispatch one event, waiting out a database outage rather than dropping the event.

        The event was accepted (its producer's transaction committed and it was published);
        if the outbox cannot be written now, later events wait behind it in the bus
        subscription, in order, until the database answers. A bug (anything but an outage) is
        logged and that one event skipped, so it cannot block the rest.
        """
        key = uuid.uuid4().hex  # the same for every try: a retry after a lost commit is a no-op
        delay = DISPATCH_RETRY_MIN_S
        while True:
            try:
                await dispatch(self.platform, topic, data, key)
                if delay > DISPATCH_RETRY_MIN_S:
                    event(log, "eventsub dispatch resumed", topic=topic)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.errors.labels("eventsub_dispatch").inc()
                if not is_backend_outage(exc):
                    log.exception("eventsub dispatch failed for %s", topic)
                    return
                if delay == DISPATCH_RETRY_MIN_S:
                    log.warning("eventsub dispatch of %s waiting for the database: %s", topic, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, DISPATCH_RETRY_MAX_S)

    async def _wakeups(self, wakes: Any) -> None:
        async for _topic, _data in wakes:
            self.wake.set()

    async def _deliver_loop(self) -> None:
        while True:
            try:
                busy = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.errors.labels("eventsub_worker").inc()
                log.exception("eventsub worker pass failed")
                busy = False
            if busy:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.poll_interval)
            self.wake.clear()

    async def run_once(self) -> bool:
        """One pass: verify pending callbacks, deliver each subscription's due head message."""
        did = await self._verify_pending()
        await self._sweep()
        async with self.platform.db.session() as db:
            heads = select(func.min(EventSubMessage.id)).where(EventSubMessage.status == "pending").group_by(
                EventSubMessage.subscription_id
            )
            rows = (
                await db.execute(
                    select(EventSubMessage, EventSubSubscription)
                    .join(EventSubSubscription, EventSubSubscription.id == EventSubMessage.subscription_id)
                    .where(EventSubMessage.id.in_(heads), EventSubMessage.next_attempt_at <= utcnow())
                    .order_by(EventSubMessage.id)
                    .limit(200)
                )
            ).all()
        if not rows:
            return did
        sem = asyncio.Semaphore(32)

        async def one(msg: EventSubMessage, sub: EventSubSubscription) -> None:
            async with sem:
                await self._deliver(msg, sub)

        await asyncio.gather(*(one(m, s) for m, s in rows))
        return True

    async def _sweep(self) -> None:
        """Forget finished messages after ``retention``, at most once a minute."""
        now = asyncio.get_running_loop().time()
        if now - self._swept_at < 60:
            return
        self._swept_at = now
        async with self.platform.db.session() as db:
            await db.execute(
                delete(EventSubMessage).where(EventSubMessage.status.in_(("delivered", "failed")),
                                              EventSubMessage.created_at < utcnow() - self.retention)
            )

    async def _post(self, sub: EventSubSubscription, message_id: str, kind: str, body: bytes,
                    attempt: int) -> httpx.Response:
        assert self.client is not None
        stamp = catalog.timestamp(utcnow())
        headers = {
            "Content-Type": "application/json",
            "Twitch-Eventsub-Message-Id": message_id,
            "Twitch-Eventsub-Message-Retry": str(attempt),
            "Twitch-Eventsub-Message-Type": kind,
            "Twitch-Eventsub-Message-Signature": sign(sub.secret, message_id, stamp, body),
            "Twitch-Eventsub-Message-Timestamp": stamp,
            "Twitch-Eventsub-Subscription-Type": sub.type,
            "Twitch-Eventsub-Subscription-Version": sub.version,
        }
        return await self.client.post(sub.callback, content=body, headers=headers)

    async def _deliver(self, msg: EventSubMessage, sub: EventSubSubscription) -> None:
        lock = f"eventsub:delivering:{msg.id}"
        if not await self.platform.bus.set(lock, b"1", ttl=self.timeout + 5, only_if_absent=True):
            return  # another worker has it
        error = ""
        try:
            async with self.platform.db.session() as db:  # our read may predate another worker's delivery
                fresh = await db.get(EventSubMessage, msg.id)
            if fresh is None or fresh.status != "pending" or fresh.attempts != msg.attempts:
                return
            try:
                response = await self._post(sub, msg.message_id, msg.kind, msg.body.encode(), msg.attempts)
                ok = 200 <= response.status_code < 300
                if not ok:
                    error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                ok, error = False, f"{type(exc).__name__}: {exc}"[:250]
            async with self.platform.db.session() as db:
                row = await db.get(EventSubMessage, msg.id)
                if row is None or row.status != "pending":
                    return
                row.attempts += 1
                if ok:
                    row.status = "delivered"
                    metrics.eventsub_deliveries.labels("delivered").inc()
                    return
                row.last_error = error
                metrics.eventsub_deliveries.labels("failed").inc()
                if msg.kind == "revocation":
                    row.status = "failed"  # a revocation is sent once, as on Twitch
                    return
                if row.attempts >= self.max_attempts:
                    row.status = "failed"
                    live = await db.get(EventSubSubscription, sub.id)
                    if live is not None and live.status == "enabled":
                        event(log, "eventsub: revoking after failures", subscription=sub.id, error=error)
                        await service.revoke(db, self.platform.bus, live, "notification_failures_exceeded")
                    return
                delay = min(self.retry_cap, self.retry_base * 2 ** (row.attempts - 1))
                row.next_attempt_at = utcnow() + dt.timedelta(seconds=delay)
        finally:
            await self.platform.bus.delete(lock)

    async def _verify_pending(self) -> bool:
        async with self.platform.db.session() as db:
            pending = list(
                (
                    await db.execute(
                        select(EventSubSubscription).where(EventSubSubscription.status == service.PENDING).limit(50)
                    )
                ).scalars()
            )
        if not pending:
            return False
        await asyncio.gather(*(self._verify(sub) for sub in pending))
        return True

    async def _verify(self, sub: EventSubSubscription) -> None:
        if not await self.platform.bus.set(f"eventsub:verifying:{sub.id}", b"1", ttl=self.timeout + 5,
                                           only_if_absent=True):
            return
        challenge = secrets.token_urlsafe(24)
        body = json.dumps({"challenge": challenge, "subscription": service.subscription_json(sub)},
                          separators=(",", ":")).encode()
        try:
            response = await self._post(sub, service.new_uuid(), "webhook_callback_verification", body, 0)
            ok = response.status_code == 200 and response.text == challenge
        except httpx.HTTPError:
            ok = False
        async with self.platform.db.session() as db:
            row = await db.get(EventSubSubscription, sub.id)
            if row is not None and row.status == service.PENDING:
                row.status = "enabled" if ok else "webhook_callback_verification_failed"
        event(log, "eventsub: callback verification", subscription=sub.id, ok=ok)


def create_service(platform: Platform) -> EventSubWorker:
    return EventSubWorker(platform)
