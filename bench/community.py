"""Channel points on PostgreSQL: concurrent bets on one prediction, redemptions, and settlement.

Seeds a fresh PostgreSQL database with one live channel and N funded viewers (default 2,000;
``--quick`` 500). Then, all N at once (up to the connection pool): one bet each on a single
prediction (every bet takes that prediction's row lock, the worst case), one redemption each
of one reward, and the settlement of the prediction (proportional payout to every winner in
one transaction). Baseline, in the same run: the bare conditional debit (``UPDATE balances SET
balance = balance - x WHERE balance >= x`` plus its ledger row) per viewer in its own
transaction, the least any spend must cost; ratios are baseline throughput over each path's.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.common import percentile, table

PG_ADMIN = os.environ.get("LIVECAST_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _all_at_once(items: list[Any], fn: Callable[[Any], Awaitable[None]]) -> dict[str, float]:
    latencies: list[float] = []

    async def one(item: Any) -> None:
        t0 = time.perf_counter()
        await fn(item)
        latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in items))
    wall = time.perf_counter() - start
    return {"per_s": round(len(items) / wall, 1), "p50_ms": round(percentile(latencies, 50) * 1000, 2),
            "p99_ms": round(percentile(latencies, 99) * 1000, 2), "wall_s": round(wall, 2)}


async def main(args: list[str]) -> dict[str, Any]:
    import asyncpg
    from sqlalchemy import insert

    from livecast.community import points, predictions, rewards
    from livecast.config import load_settings
    from livecast.identity.models import User
    from livecast.ingest.models import Stream
    from livecast.platform import Platform
    from livecast.store.base import utcnow

    count = 500 if "--quick" in args else 2000
    name = "livecast_bench_" + uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        with tempfile.TemporaryDirectory() as tmp:
            platform = await Platform.open(load_settings({}, data_dir=str(Path(tmp)), database_url=url))
            try:
                cid = "900000000001"
                users = [str(10**11 + i) for i in range(count)]
                async with platform.db.session() as db:
                    db.add(User(id=cid, login="caster", display_name="Caster", broadcaster_type="partner"))
                    await db.flush()
                    db.add(Stream(user_id=cid, status="live"))
                    await db.execute(insert(User), [{"id": u, "login": f"v{i}", "display_name": f"v{i}",
                                                     "created_at": utcnow()} for i, u in enumerate(users)])
                    await points.credit_many(db, cid, [(u, 10_000, f"grant:{u}") for u in users], "grant")

                async def debit(user: str) -> None:
                    async with platform.db.session() as db:
                        await points.debit(db, cid, user, 1, "bench")

                baseline = await _all_at_once(users, debit)

                async def create(db: Any, out: points.Outbox) -> tuple[str, list[str]]:
                    pred = await predictions.create(db, out, channel_id=cid, title="bench", outcomes=["a", "b", "c"],
                                                    window=1800)
                    return pred.id, [o["id"] for o in (await predictions.helix_doc(db, pred))["outcomes"]]

                pid, outcomes = await points.run(platform, create)
                rng = random.Random(1)

                async def bet(user: str) -> None:
                    outcome, amount = rng.choice(outcomes), rng.randint(1, 5000)
                    await points.run(platform, lambda db, out: predictions.bet(
                        db, out, prediction_id=pid, user_id=user, outcome_id=outcome, amount=amount))

                bets = await _all_at_once(users, bet)
                t0 = time.perf_counter()
                await points.run(platform, lambda db, out: predictions.resolve(
                    db, out, channel_id=cid, prediction_id=pid, winning_outcome_id=outcomes[0]))
                settle_s = time.perf_counter() - t0

                async def make_reward(db: Any, out: points.Outbox) -> str:
                    return (await rewards.create(db, channel_id=cid, client_id="", body={"title": "b", "cost": 10})).id

                reward_id = await points.run(platform, make_reward)

                async def redeem(user: str) -> None:
                    await points.run(platform, lambda db, out: rewards.redeem(
                        db, out, channel_id=cid, reward_id=reward_id, user_id=user))

                redemptions = await _all_at_once(users, redeem)
                async with platform.db.session() as db:
                    held, moved = await points.totals(db, cid)
                assert held == moved == count * 10_000 - count - count * 10, (held, moved)
            finally:
                await platform.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    rows = [
        {"path": "baseline: conditional debit", **baseline, "ratio": 1.0},
        {"path": "bet on one prediction", **bets, "ratio": round(baseline["per_s"] / bets["per_s"], 2)},
        {"path": "redeem one reward", **redemptions,
         "ratio": round(baseline["per_s"] / redemptions["per_s"], 2)},
    ]
    print(f"community on PostgreSQL, {count} viewers all at once\n")
    print(table(rows))
    print(f"\nsettlement of {count} bets (proportional payout, one transaction): {settle_s:.2f} s; ledger exact")
    return {"viewers": count, "rows": rows, "settle_s": round(settle_s, 3)}
