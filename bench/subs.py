"""Subscription payments: Stripe webhook events applied per second, exactly once, on PostgreSQL.

Seeds a fresh PostgreSQL database with one channel and N viewers (default 400; ``--quick``
100), then delivers N distinct ``checkout.session.completed`` events through the webhook
service (verify signature, parse, record the event, lock the payment, charge, book the ledger,
start the subscription, schedule its period-end job), 16 at a time; then delivers every event
again (the duplicate path); then N sandbox purchases through the service. Latencies are per
event. Baseline, in the same run on the same database: the least any exactly-once design must
do per event, inserting the event-id row in its own transaction; ratios are throughput of the
baseline over throughput of each path (how many bare inserts one event costs).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.common import percentile, table

PG_ADMIN = os.environ.get("LIVECAST_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
SECRET = "whsec_bench"
CONCURRENCY = 16


async def _timed(items: list[Any], fn: Callable[[Any], Awaitable[None]]) -> dict[str, float]:
    latencies: list[float] = []
    queue = list(items)

    async def runner() -> None:
        while queue:
            item = queue.pop()
            t0 = time.perf_counter()
            await fn(item)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(runner() for _ in range(CONCURRENCY)))
    wall = time.perf_counter() - start
    return {"per_s": round(len(items) / wall, 1), "p50_ms": round(percentile(latencies, 50) * 1000, 2),
            "p99_ms": round(percentile(latencies, 99) * 1000, 2)}


async def main(args: list[str]) -> dict[str, Any]:
    import asyncpg
    from sqlalchemy import func, select

    from livecast.bus.memory import MemoryBus
    from livecast.config import load_settings
    from livecast.identity import service as identity
    from livecast.platform import Platform
    from livecast.storage import create_store
    from livecast.store.db import Database
    from livecast.subscriptions import ledger, service, webhooks
    from livecast.subscriptions.models import Charge, ProviderEvent
    from livecast.subscriptions.providers import stripe

    n = 100 if "--quick" in args else 400
    name = "livecast_bench_subs_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + name
    db = Database(url)
    bus = MemoryBus()
    try:
        await db.upgrade()
        tmp = Path("/tmp") / name
        platform = Platform(settings=load_settings({}, data_dir=str(tmp), stripe_webhook_secret=SECRET), db=db,
                            bus=bus, storage=create_store(f"file://{tmp}/s"))
        async with db.session() as s:
            channel = (await identity.create_user(s, "benchchan"))[0].id
            viewers = [(await identity.create_user(s, f"bv{i}"))[0].id for i in range(2 * n)]

        async def baseline(i: int) -> None:
            async with db.session() as s:
                s.add(ProviderEvent(provider="baseline", event_id=f"b{i}", type="x", ref="", payload={}))

        bodies = []
        for i in range(n):
            event = {"id": f"evt_{i}", "type": "checkout.session.completed", "data": {"object": {
                "id": f"cs_{i}", "payment_intent": f"pi_{i}", "payment_status": "paid", "amount_total": 499,
                "currency": "usd", "metadata": {"livecast_kind": "subscribe", "channel_id": channel,
                                                "payer_id": viewers[i], "tier": "1000", "quantity": "1"}}}}
            body = json.dumps(event).encode()
            bodies.append((body, stripe.sign(body, SECRET)))
        statuses: list[str] = []

        async def deliver(item: tuple[bytes, str]) -> None:
            body, header = item
            stripe.verify(body, header, SECRET)
            statuses.append(await webhooks.handle_stripe(platform, stripe.parse_event(body)))

        async def sandbox(user_id: str) -> None:
            await service.run(platform, lambda d, o: service.subscribe(
                d, o, platform.settings, channel_id=channel, user_id=user_id, tier="1000",
                payment=service.sandbox_payment()))

        rows = [{"path": "baseline: insert event row", **await _timed(list(range(n)), baseline)}]
        rows.append({"path": "stripe webhook, new event", **await _timed(bodies, deliver)})
        first = statuses.count("processed")
        rows.append({"path": "stripe webhook, duplicate", **await _timed(bodies, deliver)})
        rows.append({"path": "sandbox purchase", **await _timed(viewers[n:], sandbox)})
        base = rows[0]["per_s"]
        for row in rows:
            row["x_baseline"] = round(base / row["per_s"], 2)
        async with db.session() as s:
            charges = (await s.execute(select(func.count()).select_from(Charge))).scalar()
            unbalanced = await ledger.unbalanced_transactions(s)
        assert first == n and statuses.count("duplicate") == n and charges == 2 * n and not unbalanced
        print(table(rows))
        print(f"\n{n} events, {CONCURRENCY} concurrent; every event applied once ({charges} charges), ledger balanced")
        return {"events": n, "concurrency": CONCURRENCY, "rows": rows}
    finally:
        await bus.close()
        await db.close()
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
