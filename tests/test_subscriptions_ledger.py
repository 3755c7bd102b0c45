"""Property: whatever happens, the ledger balances and agrees with a simple model of the money."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from livecast.bus.memory import MemoryBus
from livecast.config import load_settings
from livecast.identity import service as identity
from livecast.platform import Platform
from livecast.storage import create_store
from livecast.store.base import utcnow
from livecast.store.db import Database
from livecast.subscriptions import ledger, service
from livecast.subscriptions.models import Charge, LedgerEntry, LedgerTransaction
from livecast.subscriptions.pricing import PricingError
from livecast.subscriptions.worker import SubscriptionWorker
from tests.conftest import create_pg_database, drop_pg_database

PRICES = {"1000": 499, "2000": 999, "3000": 2499}
VIEWERS = 4

tiers = st.sampled_from(["1000", "2000", "3000", "5000"])  # 5000: an unknown price, refused
viewer = st.integers(0, VIEWERS - 1)
ops = st.lists(st.one_of(
    st.tuples(st.just("subscribe"), viewer, tiers),
    st.tuples(st.just("gift"), viewer, viewer, tiers, st.booleans()),
    st.tuples(st.just("community"), viewer, st.integers(1, 3), tiers),
    st.tuples(st.just("cancel"), viewer),
    st.tuples(st.just("tier"), viewer, tiers),
    st.tuples(st.just("advance")),
    st.tuples(st.just("refund"), st.integers(0, 20)),
    st.tuples(st.just("chargeback"), st.integers(0, 20)),
    # a partial refund to a running total of pct% of the charge; a lower total than before is a
    # replayed or out-of-order event and must book nothing
    st.tuples(st.just("partial"), st.integers(0, 20), st.integers(1, 99)),
), min_size=1, max_size=14)


class Model:
    """Expected account balances, from the charges the model saw succeed."""

    def __init__(self) -> None:
        self.balances: dict[str, int] = defaultdict(int)

    def charge(self, channel: str, amount: int) -> None:
        share = amount * 50 // 100
        self.balances["cash:sandbox"] += amount
        self.balances["revenue:platform"] -= amount - share
        self.balances[f"payable:creator:{channel}"] -= share

    def reverse(self, channel: str, amount: int, kind: str, before: int = 0, after: int | None = None) -> None:
        """Refunds of a charge going from running total ``before`` to ``after`` (default: all of it).

        The creator gives back their share pro rata, rounded down; the platform the rest.
        """
        after = amount if after is None else after
        share = amount * 50 // 100
        creator = share * after // amount - share * before // amount
        self.balances["cash:sandbox"] -= after - before
        self.balances[f"payable:creator:{channel}"] += creator
        self.balances["refunds" if kind == "refund" else "chargebacks"] += (after - before) - creator


async def channel_balances(db: Any, channel: str) -> dict[str, int]:
    rows = await db.execute(select(LedgerEntry.account, LedgerEntry.amount).join(
        LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id).where(
        LedgerTransaction.channel_id == channel))
    out: dict[str, int] = defaultdict(int)
    for account, amount in rows:
        out[account] += int(amount)
    return {k: v for k, v in out.items() if v}


async def apply(platform: Platform, channel: str, people: list[str], step: tuple[Any, ...], now: dt.datetime,
                charge_ids: list[str]) -> None:
    """Run one generated step through the service, as the web app or a webhook would."""
    conf = platform.settings
    pay = service.sandbox_payment()
    kind = step[0]

    async def go(d: Any, o: Any) -> Any:
        if kind == "subscribe":
            return await service.subscribe(d, o, conf, channel_id=channel, user_id=people[step[1]],
                                           tier=step[2], payment=pay, now=now)
        if kind == "gift":
            return await service.gift(d, o, conf, channel_id=channel, gifter_id=people[step[1]],
                                      recipient_id=people[step[2]], tier=step[3], anonymous=step[4], payment=pay,
                                      now=now)
        if kind == "community":
            return await service.community_gift(d, o, conf, channel_id=channel, gifter_id=people[step[1]],
                                                count=step[2], tier=step[3], chatters=people, payment=pay, now=now)
        if kind == "cancel":
            return await service.cancel(d, o, channel_id=channel, user_id=people[step[1]])
        if kind == "tier":
            return await service.change_tier(d, o, channel_id=channel, user_id=people[step[1]], tier=step[2])
        if kind in ("refund", "chargeback", "partial"):
            target = charge_ids[step[1] % len(charge_ids)] if charge_ids else None
            charge = await service.find_charge(d, charge_id=target) if target else None
            if kind == "partial":
                total = charge.amount * step[2] // 100 if charge is not None else 1
                return await service.partial_refund(d, charge, max(total, 1))
            return await service.reverse(d, o, charge, kind, now)
        return None

    await service.run(platform, go)


async def scenario(url: str, tmp: Path, steps: list[tuple[Any, ...]]) -> None:
    db = Database(url)
    bus = MemoryBus()
    platform = Platform(settings=load_settings({}, data_dir=str(tmp)), db=db, bus=bus,
                        storage=create_store(f"file://{tmp}/s"))
    tag = uuid.uuid4().hex[:8]
    try:
        async with db.session() as s:
            channel = (await identity.create_user(s, f"c{tag}"))[0].id
            people = [(await identity.create_user(s, f"v{i}{tag}"))[0].id for i in range(VIEWERS)]
        model = Model()
        clock = [utcnow()]
        worker = SubscriptionWorker(platform, clock=lambda: clock[0])
        for step in steps:
            async with db.session() as s:
                charges_before = {c.id: (c.status, c.amount_refunded) for c in (await s.execute(
                    select(Charge).where(Charge.channel_id == channel))).scalars()}
                before = await channel_balances(s, channel)
            now = clock[0]
            try:
                await apply(platform, channel, people, step, now, sorted(charges_before))
                if step[0] == "advance":
                    clock[0] = now + service.PERIOD + dt.timedelta(minutes=1)
                    await worker.run_due()
            except (service.SubscriptionError, PricingError):
                async with db.session() as s:  # refused: nothing moved
                    assert await channel_balances(s, channel) == before, step
                continue
            # mirror what happened into the model from the charges' own facts
            async with db.session() as s:
                for charge in (await s.execute(select(Charge).where(Charge.channel_id == channel))).scalars():
                    if charge.id not in charges_before:
                        assert charge.amount == PRICES[charge.tier] * charge.quantity
                        model.charge(channel, charge.amount)
                        if charge.status != "paid":
                            model.reverse(channel, charge.amount, "refund" if charge.status == "refunded"
                                          else "chargeback")
                    elif charges_before[charge.id][0] == "paid" and charge.status != "paid":
                        assert step[0] in ("refund", "chargeback")
                        model.reverse(channel, charge.amount, step[0], charges_before[charge.id][1])
                    elif charges_before[charge.id][1] != charge.amount_refunded:
                        before_total = charges_before[charge.id][1]
                        assert step[0] == "partial" and before_total < charge.amount_refunded < charge.amount
                        assert charge.status == "paid"  # benefits kept
                        model.reverse(channel, charge.amount, "refund", before_total, charge.amount_refunded)
                    else:
                        assert charges_before[charge.id] == (charge.status, charge.amount_refunded)  # once
        async with db.session() as s:
            assert await ledger.unbalanced_transactions(s) == []
            actual = await channel_balances(s, channel)
            assert actual == {k: v for k, v in model.balances.items() if v}
            for sub in (await s.execute(select(service.Subscription).where(
                    service.Subscription.channel_id == channel))).scalars():
                if sub.state in ("refunded", "charged_back", "expired"):
                    assert await service.is_subscriber(s, channel, sub.user_id) is None
    finally:
        await db.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_ledger_balances_under_random_histories(backend: str, tmp_path: Path) -> None:
    if backend == "postgres":
        url = asyncio.run(create_pg_database())
        url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"

    async def migrate() -> None:
        db = Database(url)
        await db.upgrade()
        await db.close()

    asyncio.run(migrate())

    @settings(max_examples=40 if backend == "postgres" else 60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(steps=ops)
    def check(steps: list[tuple[Any, ...]]) -> None:
        asyncio.run(scenario(url, tmp_path, steps))

    try:
        check()
    finally:
        if backend == "postgres":
            asyncio.run(drop_pg_database(url.replace("postgresql+asyncpg://", "postgresql://", 1)))
