"""The EventSub worker (role ``worker``): dispatches bus events and delivers webhooks.

Deliveries come from the durable outbox, oldest first and one at a time per subscription
(the head of each subscription's queue), so messages arrive in order and a restart resumes
where it stopped. A failed attempt is retried with exponential backoff; after
``max_attempts`` the subscription is revoked with ``notification_failures_exceeded``.
Callback verification (the challenge) runs here too, so it survives restarts as well.
Several workers may run: each delivers (a per-message lock in the bus keeps them apart), and
one of them, holding a lease in the bus, dispatches events into the outbox.

Events come from the bus's event stream through the consumer group ``eventsub``, not from
pub/sub: the group remembers how far dispatching got and which entries a dispatcher was
handed but never acknowledged, so an event published while no dispatcher runs (every worker
restarting, killed, or not started yet) waits in the stream, and one a dispatcher died
holding is taken over (``stream_claim``). An entry is acknowledged only once its
notifications are durable: outbox rows committed, WebSocket messages in their session's
replay log. Dispatch is therefore at least once, made harmless by ids derived from the
entry (``dispatch.message_id``).

The lease is kept for order only: one dispatcher at a time turns the stream into outbox rows
in stream order. It no longer guards against loss, so a stopping leader simply finishes its
current event, acknowledges, gives the lease up and wakes the standbys (the marker handover
this replaced existed because pub/sub forgot what nobody was listening for). A worker that
becomes leader first claims every entry other consumers hold, since whoever held them lost
the lease (crashed, killed, or cut off); after that it claims only entries idle for
``claim_idle_s``, which only a dispatcher that lost the lease mid-read can leave behind. A
worker stopped mid-delivery leaves its message pending in the outbox (only a completed POST
marks it delivered), so another worker, or the next start, sends it again with the same
``message_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import secrets
from typing import Any

import httpx
from sqlalchemy import delete, func, select

from livecast import metrics
from livecast.api.eventsub import catalog, service
from livecast.api.eventsub.dispatch import dispatch
from livecast.api.eventsub.models import EventSubMessage, EventSubSubscription
from livecast.api.eventsub.signing import sign
from livecast.bus import EVENT_STREAM, StreamEntry
from livecast.bus.memory import MemoryBus
from livecast.logs import event
from livecast.outage import is_backend_outage
from livecast.platform import Platform
from livecast.store.base import utcnow
from livecast.waits import until_set

log = logging.getLogger("livecast.eventsub")
LEASE_KEY = "eventsub:dispatcher"
GROUP = "eventsub"  # the dispatchers' consumer group on the event stream
LEASE_WAKE = b"lease"  # on service.WAKE_CHANNEL: a leader gave the lease up, standbys try now
STOP_WAIT_S = 5.0  # a stopping leader's time to finish the event it is dispatching
CONSUMER_PRUNE_IDLE_S = 3600.0  # consumers (one per worker start) forgotten after this long unused
DISPATCH_RETRY_MIN_S, DISPATCH_RETRY_MAX_S = 0.25, 2.0


def event_key(entry: StreamEntry) -> str:
    """The outbox key of a stream entry: its id, plus a digest of its data, so that an id
    reused after the stream was lost (Redis restarted empty with the clock behind) cannot
    pass a new event off as an old one and have its notifications dropped as duplicates."""
    return f"{entry.id}/{hashlib.blake2b(entry.data, digest_size=8).hexdigest()}"


class EventSubWorker:
    name = "eventsub"

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.retry_base = 1.0  # seconds; doubles per attempt
        self.retry_cap = 600.0
        self.max_attempts = 8
        self.poll_interval = 1.0
        self.timeout = 10.0
        self.worker_id = secrets.token_hex(8)  # also this worker's consumer name in the group
        self.lease_s = 6.0
        self.leader = False
        self.claim_idle_s = 15.0  # an entry another consumer held this long is taken over
        self.batch = 100  # stream entries read at a time
        self.read_block_s = 1.0
        self.retention = dt.timedelta(days=1)  # delivered and failed messages are kept this long
        self._swept_at = 0.0
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.client: httpx.AsyncClient | None = None
        self._leading = asyncio.Event()  # set while leader: the dispatch loop waits on it
        self._lease_wake = asyncio.Event()
        self._took_over = False  # just became leader: claim what the last one left first
        self._stopping = False
        self._drain_after = False  # set by stop(): after_stop() dispatches what came later
        self._in_dispatch = False  # between reading entries and acknowledging them
        self._lease_lock = asyncio.Lock()  # a renewal's stale read must not undo a takeover

    async def start(self) -> dict[str, int]:
        self.client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        await self._renew_lease()
        wakes = await self.platform.bus.subscribe(service.WAKE_CHANNEL)
        self.tasks = [
            asyncio.create_task(self._lease_loop()),
            asyncio.create_task(self._consume()),
            asyncio.create_task(self._wakeups(wakes)),
            asyncio.create_task(self._deliver_loop()),
        ]
        self._subs = (wakes,)
        return {}

    async def _renew_lease(self) -> None:
        """One dispatcher per cluster: hold ``eventsub:dispatcher`` in the bus, or stand by."""
        async with self._lease_lock:
            await self._renew_lease_locked()

    async def _renew_lease_locked(self) -> None:
        me = self.worker_id.encode()
        if self._stopping:
            leading = False
        elif await self.platform.bus.set(LEASE_KEY, me, ttl=self.lease_s, only_if_absent=True):
            leading = True
        elif await self.platform.bus.get(LEASE_KEY) == me:
            await self.platform.bus.set(LEASE_KEY, me, ttl=self.lease_s)
            leading = True
        else:
            leading = False
        self._set_leader(leading)

    def _set_leader(self, leading: bool) -> None:
        if leading and not self.leader:
            self._took_over = True
            event(log, "eventsub dispatch taken over", worker=self.worker_id)
        self.leader = leading
        if leading:
            self._leading.set()
        else:
            self._leading.clear()

    async def _lease_loop(self) -> None:
        while True:
            await until_set(self._lease_wake, self.lease_s / 3)
            self._lease_wake.clear()
            try:
                await self._renew_lease()
            except Exception:
                self._set_leader(False)
                log.exception("eventsub lease renewal failed")

    async def stop(self) -> None:
        """Finish the event being dispatched, acknowledge, and give the lease to a standby.

        Nothing depends on this for safety: what a stop cuts short stays pending in the
        group and the next leader claims it. It only spares the standbys the wait for the
        lease to lapse, and the event in hand a second dispatch.
        """
        self._stopping = True
        was_leader = self.leader
        lease_loop, consume = (self.tasks[0], self.tasks[1]) if self.tasks else (None, None)
        if lease_loop is not None:
            lease_loop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await lease_loop
        if consume is not None:
            if not self._in_dispatch:
                # Waiting in a blocking read (or for the lease): nothing in hand to finish, and
                # waiting out the read would add up to read_block_s to every stop. Entries a
                # cut-off read had already assigned to us stay pending for the next leader.
                consume.cancel()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(consume), STOP_WAIT_S)
        self._drain_after = was_leader and isinstance(self.platform.bus, MemoryBus)
        await self.after_stop()  # now, and again once the other services have stopped
        if was_leader:
            with contextlib.suppress(Exception):
                async with self._lease_lock:
                    if await self.platform.bus.get(LEASE_KEY) == self.worker_id.encode():
                        await self.platform.bus.delete(LEASE_KEY)
                self.leader = False
                await self.platform.bus.publish(service.WAKE_CHANNEL, LEASE_WAKE)
                event(log, "eventsub dispatch handed over", worker=self.worker_id)
        for sub in self._subs:
            await sub.close()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.client is not None:
            await self.client.aclose()

    async def after_stop(self) -> None:
        """With the in-process bus, dispatch what the event stream holds into the outbox, for
        the next start: from :meth:`stop`, and once every service of this process has stopped
        (the runner calls it), for what they published after this worker (an ingest's
        ``stream.offline`` for each stream it ended)."""
        if self._drain_after:
            try:
                await asyncio.wait_for(self._drain_local(), STOP_WAIT_S)
            except Exception:  # a database outage outlasting the stop: what is left is lost with us
                log.warning("eventsub: stopped with events still undispatched (in-process bus)")

    async def _drain_local(self) -> None:
        """With the in-process bus no other process can take the stream over: what it still
        holds would die with this one, so dispatch it all before stopping (within STOP_WAIT_S),
        and again in :meth:`after_stop`."""
        bus = self.platform.bus
        while True:
            entries = await bus.stream_claim(EVENT_STREAM, GROUP, self.worker_id, 0.0, self.batch)
            if not entries:
                entries = await bus.stream_read_group(EVENT_STREAM, GROUP, self.worker_id, self.batch, 0.0)
            if not entries:
                return
            await self._dispatch_all(entries, final=True)

    async def _next_entries(self, claim_idle: float | None) -> list[StreamEntry]:
        """Entries to dispatch: claimed ones (idle at least ``claim_idle``) when asked, else new ones."""
        bus = self.platform.bus
        if claim_idle is not None:
            return await bus.stream_claim(EVENT_STREAM, GROUP, self.worker_id, claim_idle, self.batch)
        return await bus.stream_read_group(EVENT_STREAM, GROUP, self.worker_id, self.batch, self.read_block_s)

    async def _consume(self) -> None:
        """The dispatch loop: while leader, claim what others left, then read new entries."""
        loop = asyncio.get_running_loop()
        next_claim = 0.0
        claim_idle: float | None = None
        while not self._stopping:
            if not self.leader:
                await until_set(self._leading, 1.0)
                continue
            if self._took_over:
                self._took_over = False
                claim_idle = 0.0  # whoever holds entries now lost the lease: take them all
            elif claim_idle is None and loop.time() >= next_claim:
                claim_idle = self.claim_idle_s
            try:
                entries = await self._next_entries(claim_idle)
                if claim_idle is not None and len(entries) < self.batch:
                    claim_idle, next_claim = None, loop.time() + self.claim_idle_s / 3
                    with contextlib.suppress(Exception):
                        await self.platform.bus.stream_prune_consumers(EVENT_STREAM, GROUP,
                                                                       CONSUMER_PRUNE_IDLE_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.errors.labels("eventsub_dispatch").inc()
                log.warning("eventsub: reading the event stream failed: %s", exc)
                await asyncio.sleep(1.0)
                continue
            await self._dispatch_all(entries)

    async def _dispatch_all(self, entries: list[StreamEntry], final: bool = False) -> None:
        """Dispatch in order and acknowledge what was dispatched, also when cut short: a worker
        that lost the lease or is stopping leaves the rest pending, for the next leader."""
        done: list[str] = []
        self._in_dispatch = True
        try:
            for entry in entries:
                if not final and (not self.leader or self._stopping):
                    break
                await self._dispatch_retrying(entry)
                done.append(entry.id)
        finally:
            if done:
                try:
                    await self.platform.bus.stream_ack(EVENT_STREAM, GROUP, done)
                except Exception as exc:  # pending still: dispatched again later, under the same ids
                    log.warning("eventsub: acknowledging %d events failed: %s", len(done), exc)
            self._in_dispatch = False

    async def _dispatch_retrying(self, entry: StreamEntry) -> None:
        """Dispatch one event, waiting out a database outage rather than dropping the event.

        The event was accepted (its producer's transaction committed and it was appended to
        the stream); if the outbox cannot be written now, later events wait behind it in the
        stream, in order, until the database answers. A bug (anything but an outage) is
        logged and that one event skipped, so it cannot block the rest.
        """
        topic, key = entry.channel, event_key(entry)  # the key is the same for every try and dispatcher
        delay = DISPATCH_RETRY_MIN_S
        while True:
            try:
                await dispatch(self.platform, topic, entry.data, key)
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
        async for _topic, data in wakes:
            if data == LEASE_WAKE:
                self._lease_wake.set()
            else:
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
            await until_set(self.wake, self.poll_interval)
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
