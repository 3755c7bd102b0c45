"""Channel points, rewards, predictions and polls at the service layer, on SQLite and PostgreSQL.

The concurrency tests are the point of this file: two redemptions racing for the same points,
and a thousand concurrent bets on one prediction, must leave every balance exact. They assert
outcomes (who was refused, what each balance is), never timings.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from livecast.community import events, points, polls, predictions, rewards
from livecast.community.models import PointsBalance, PredictionBet
from livecast.community.points import CommunityError, Outbox
from livecast.community.worker import CommunityWorker
from livecast.identity.models import User
from livecast.ingest.models import Stream
from livecast.platform import Platform
from livecast.store.base import utcnow
from tests.conftest import REDIS_URL, make_settings

# Flows whose correctness does not depend on the database's locking run on SQLite only; the
# concurrency tests (and earning) run on both backends.
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def bus_url() -> str:
    return "memory://"


@pytest.fixture
async def platform(db_url: str, bus_url: str, tmp_path: Path) -> AsyncIterator[Platform]:
    p = await Platform.open(make_settings(tmp_path, database_url=db_url, bus_url=bus_url))
    try:
        yield p
    finally:
        await events.drain(p)
        await p.close()


async def make_users(platform: Platform, count: int, prefix: str = "v", start: int = 0) -> list[str]:
    ids = [str(10**11 + start + i) for i in range(count)]
    async with platform.db.session() as db:
        await db.execute(insert(User), [{"id": uid, "login": f"{prefix}{i}", "display_name": f"{prefix}{i}",
                                         "created_at": utcnow()} for i, uid in enumerate(ids)])
    return ids


async def channel(platform: Platform, live: bool = True) -> str:
    async with platform.db.session() as db:
        user = User(id="900000000001", login="caster", display_name="Caster", broadcaster_type="partner")
        db.add(user)
        await db.flush()
        if live:
            db.add(Stream(user_id=user.id, status="live"))
    return "900000000001"


async def grant(platform: Platform, channel_id: str, amounts: dict[str, int]) -> None:
    async with platform.db.session() as db:
        await points.credit_many(db, channel_id, [(u, a, f"grant:{u}") for u, a in amounts.items()], "grant")


async def balances(platform: Platform, channel_id: str) -> dict[str, int]:
    async with platform.db.session() as db:
        rows = await db.execute(select(PointsBalance.user_id, PointsBalance.balance)
                                .where(PointsBalance.channel_id == channel_id))
        return {u: int(b) for u, b in rows.all()}


async def audit(platform: Platform, channel_id: str) -> int:
    """The ledger and the balances agree; returns the channel's total points."""
    async with platform.db.session() as db:
        held, moved = await points.totals(db, channel_id)
    assert held == moved
    return held


def run(platform: Platform, fn: Any) -> Any:
    return points.run(platform, fn)


# Settlement: a property test ----------------------------------------------------------------

stakes = st.lists(st.tuples(st.integers(0, 9), st.integers(1, 250_000)), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(stakes=stakes, winning=st.integers(0, 9))
def test_payouts_split_the_pool_exactly(stakes: list[tuple[int, int]], winning: int) -> None:
    pool = sum(s for _, s in stakes)
    winners = [(f"u{i}", s, i) for i, (outcome, s) in enumerate(stakes) if outcome == winning]
    shares = predictions.payouts(winners, pool)
    if not winners:
        assert shares == {}
        return
    assert sum(shares.values()) == pool  # no point created or lost
    total = sum(s for _, s, _ in winners)
    for user, stake, _ in winners:
        exact = pool * stake / total
        assert stake <= shares[user] and abs(shares[user] - exact) < 1  # proportional, at least the stake back
    assert predictions.payouts(list(reversed(winners)), pool) == shares  # order of rows does not matter


# Earning --------------------------------------------------------------------------------------

async def test_watch_and_chat_earn_once_with_subscriber_bonus(platform: Platform) -> None:
    cid = await channel(platform)
    viewer, subscriber = await make_users(platform, 2)
    from livecast.subscriptions.models import Subscription

    async with platform.db.session() as db:
        db.add(Subscription(channel_id=cid, user_id=subscriber, tier="3000", state="active",
                            current_period_end=utcnow().replace(year=utcnow().year + 1)))
    worker = CommunityWorker(platform)
    assert await worker.on_watch(cid, viewer, 1000) == points.WATCH_POINTS_PER_MINUTE
    assert await worker.on_watch(cid, viewer, 1000) == 0  # the same minute, seen twice
    assert await worker.on_watch(cid, viewer, 1001) == points.WATCH_POINTS_PER_MINUTE
    assert await worker.on_watch(cid, subscriber, 1000) == points.WATCH_POINTS_PER_MINUTE * 2  # tier 3: 2x
    assert await worker.on_chat(cid, viewer, now=0.0) == points.CHAT_POINTS
    assert await worker.on_chat(cid, viewer, now=1.0) == 0  # one chat credit per slot
    assert await worker.on_watch(cid, cid, 1000) == 0  # not in one's own channel
    assert await balances(platform, cid) == {viewer: 2 * points.WATCH_POINTS_PER_MINUTE + points.CHAT_POINTS,
                                             subscriber: 2 * points.WATCH_POINTS_PER_MINUTE}
    await audit(platform, cid)


@sqlite_only
@pytest.mark.parametrize("bus_url", ["memory://", REDIS_URL])
async def test_bus_events_credit_points_through_the_worker(platform: Platform) -> None:
    """The heartbeat route's ``community.watch`` and chat's event reach a running worker, on
    the in-process bus and on Redis (where every worker process would see them)."""
    import json

    from livecast.bus import publish_event

    cid = await channel(platform)
    # A fresh viewer id each run: Redis outlives the test, and chat credits are claimed per slot there.
    (viewer,) = await make_users(platform, 1, start=random.randrange(10**9))
    worker = CommunityWorker(platform, tick_interval=60)
    await worker.start()
    try:
        await platform.bus.publish("community.watch", json.dumps(
            {"channel_id": cid, "user_id": viewer, "minute": 5}).encode())
        await publish_event(platform.bus, "channel.chat.message",
                            {"broadcaster_user_id": cid, "chatter_user_id": viewer, "message": {"text": "hi"}})
        for _ in range(200):
            if (await balances(platform, cid)).get(viewer) == points.WATCH_POINTS_PER_MINUTE + points.CHAT_POINTS:
                break
            await asyncio.sleep(0.05)
        assert (await balances(platform, cid))[viewer] == points.WATCH_POINTS_PER_MINUTE + points.CHAT_POINTS
    finally:
        await worker.stop()


@sqlite_only
async def test_offline_channel_earns_nothing(platform: Platform) -> None:
    cid = await channel(platform, live=False)
    (viewer,) = await make_users(platform, 1)
    assert await CommunityWorker(platform).on_watch(cid, viewer, 7) == 0


# Rewards --------------------------------------------------------------------------------------

async def new_reward(platform: Platform, cid: str, **body: Any) -> str:
    async def apply(db: Any, out: Outbox) -> str:
        return (await rewards.create(db, channel_id=cid, client_id="c", body={"title": "Hydrate", **body})).id

    return str(await run(platform, apply))


async def redeem(platform: Platform, cid: str, reward_id: str, user: str, text: str = "") -> Any:
    return await run(platform, lambda db, out: rewards.redeem(db, out, channel_id=cid, reward_id=reward_id,
                                                              user_id=user, user_input=text))


async def test_concurrent_redemptions_cannot_spend_the_same_points(platform: Platform) -> None:
    cid = await channel(platform)
    (viewer,) = await make_users(platform, 1)
    await grant(platform, cid, {viewer: 100})
    a = await new_reward(platform, cid, title="A", cost=100)
    b = await new_reward(platform, cid, title="B", cost=100)
    results = await asyncio.gather(*(redeem(platform, cid, r, viewer) for r in [a, b] * 5), return_exceptions=True)
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1
    assert all(isinstance(e, CommunityError) and e.code == "insufficient_points" for e in lost)
    assert (await balances(platform, cid))[viewer] == 0
    assert await audit(platform, cid) == 0


@sqlite_only
async def test_reward_limits_cooldown_input_and_refund(platform: Platform) -> None:
    cid = await channel(platform)
    v1, v2, v3 = await make_users(platform, 3)
    await grant(platform, cid, {v1: 1000, v2: 1000, v3: 1000})
    limited = await new_reward(platform, cid, title="Limited", cost=10, is_max_per_stream_enabled=True,
                               max_per_stream=2, is_max_per_user_per_stream_enabled=True, max_per_user_per_stream=1)
    await redeem(platform, cid, limited, v1)
    with pytest.raises(CommunityError) as per_user:
        await redeem(platform, cid, limited, v1)
    assert per_user.value.code == "user_limit"
    await redeem(platform, cid, limited, v2)
    with pytest.raises(CommunityError) as stock:
        await redeem(platform, cid, limited, v3)
    assert stock.value.code == "out_of_stock"

    cooled = await new_reward(platform, cid, title="Cooled", cost=5, is_global_cooldown_enabled=True,
                              global_cooldown_seconds=600)
    await redeem(platform, cid, cooled, v1)
    with pytest.raises(CommunityError) as cooling:
        await redeem(platform, cid, cooled, v2)
    assert cooling.value.code == "cooldown"

    asked = await new_reward(platform, cid, title="Say", cost=50, is_user_input_required=True, prompt="What?")
    with pytest.raises(CommunityError) as empty:
        await redeem(platform, cid, asked, v3, "  ")
    assert empty.value.code == "input_required"
    row = await redeem(platform, cid, asked, v3, "hello")
    assert row.status == "UNFULFILLED" and row.user_input == "hello"

    async def refund(db: Any, out: Outbox) -> list[Any]:
        reward = await rewards.get(db, asked, cid)
        first = await rewards.set_status(db, out, reward, [row.id], "CANCELED")
        again = await rewards.set_status(db, out, reward, [row.id], "CANCELED")  # no double refund
        return [first, again]

    first, again = await run(platform, refund)
    assert len(first) == 1 and again == []
    assert (await balances(platform, cid))[v3] == 1000
    assert await audit(platform, cid) == 3000 - 10 - 10 - 5


# Predictions ----------------------------------------------------------------------------------

async def start_prediction(platform: Platform, cid: str, outcomes: int = 3, window: int = 600) -> tuple[str, list[str]]:
    async def apply(db: Any, out: Outbox) -> tuple[str, list[str]]:
        pred = await predictions.create(db, out, channel_id=cid, title="Who wins?",
                                        outcomes=[f"o{i}" for i in range(outcomes)], window=window)
        doc = await predictions.helix_doc(db, pred)
        return pred.id, [o["id"] for o in doc["outcomes"]]

    result: tuple[str, list[str]] = await run(platform, apply)
    return result


async def place(platform: Platform, pid: str, user: str, outcome: str, amount: int) -> Any:
    return await run(platform, lambda db, out: predictions.bet(db, out, prediction_id=pid, user_id=user,
                                                               outcome_id=outcome, amount=amount))


async def test_thousand_concurrent_bets_settle_exactly(platform: Platform) -> None:
    cid = await channel(platform)
    users = await make_users(platform, 1000)
    rng = random.Random(12)
    funded = {u: rng.randint(1, 5000) for u in users}
    await grant(platform, cid, funded)
    pid, outcomes = await start_prediction(platform, cid)
    wagers = {u: (rng.choice(outcomes), rng.randint(1, funded[u] + 50)) for u in users}  # some overdraw
    results = await asyncio.gather(*(place(platform, pid, u, o, a) for u, (o, a) in wagers.items()),
                                   return_exceptions=True)
    refused = {u for u, r in zip(users, results, strict=True) if isinstance(r, BaseException)}
    assert all(isinstance(r, CommunityError) and r.code == "insufficient_points"
               for r in results if isinstance(r, BaseException))
    assert refused == {u for u, (_, a) in wagers.items() if a > funded[u]}
    placed = {u: wagers[u] for u in users if u not in refused}
    pool = sum(a for _, a in placed.values())

    async with platform.db.session() as db:
        assert await predictions.pool(db, pid) == pool
    winner = outcomes[1]
    await run(platform, lambda db, out: predictions.resolve(db, out, channel_id=cid, prediction_id=pid,
                                                            winning_outcome_id=winner))
    after = await balances(platform, cid)
    assert sum(after.values()) == sum(funded.values())  # no point created or lost
    winners = [(u, a, 0) for u, (o, a) in placed.items() if o == winner]
    stake_total = sum(a for _, a, _ in winners)
    for u in users:
        outcome, amount = placed.get(u, ("", 0))
        if outcome == winner:
            share = after[u] - (funded[u] - amount)
            assert amount <= share and abs(share - pool * amount / stake_total) < 1
        else:
            assert after[u] == funded[u] - amount
    assert await audit(platform, cid) == sum(funded.values())
    with pytest.raises(CommunityError):  # settled once only
        await run(platform, lambda db, out: predictions.cancel(db, out, channel_id=cid, prediction_id=pid))


@sqlite_only
async def test_prediction_lock_cancel_and_window(platform: Platform) -> None:
    cid = await channel(platform)
    a, b = await make_users(platform, 2)
    await grant(platform, cid, {a: 100, b: 100})
    pid, (blue, pink, *_) = await start_prediction(platform, cid, outcomes=2)
    await place(platform, pid, a, blue, 40)
    await place(platform, pid, a, blue, 10)  # topping up the same outcome
    with pytest.raises(CommunityError) as other:
        await place(platform, pid, a, pink, 1)
    assert other.value.code == "other_outcome"
    await place(platform, pid, b, pink, 30)
    with pytest.raises(CommunityError):  # only one running prediction per channel
        await start_prediction(platform, cid)
    await run(platform, lambda db, out: predictions.lock(db, out, channel_id=cid, prediction_id=pid))
    with pytest.raises(CommunityError) as closed:
        await place(platform, pid, b, pink, 1)
    assert closed.value.code == "prediction_closed"
    await run(platform, lambda db, out: predictions.cancel(db, out, channel_id=cid, prediction_id=pid))
    assert await balances(platform, cid) == {a: 100, b: 100}

    # A window that has passed stops bets even before any worker locks the prediction.
    pid2, (blue2, *_) = await start_prediction(platform, cid, outcomes=2)
    async with platform.db.session() as db:
        from sqlalchemy import update

        from livecast.community.models import Prediction

        await db.execute(update(Prediction).where(Prediction.id == pid2).values(locks_at=utcnow()))
    with pytest.raises(CommunityError):
        await place(platform, pid2, a, blue2, 5)
    out = Outbox()
    async with platform.db.session() as db:
        locked = await predictions.expire(db, out)
    assert [p.id for p in locked] == [pid2]
    assert [t for t, _, _ in out.events] == ["channel.prediction.lock"]


@sqlite_only
async def test_nobody_on_the_winner_is_refunded(platform: Platform) -> None:
    cid = await channel(platform)
    a, b = await make_users(platform, 2)
    await grant(platform, cid, {a: 100, b: 100})
    pid, (o0, o1, o2) = await start_prediction(platform, cid)
    await place(platform, pid, a, o0, 60)
    await place(platform, pid, b, o1, 70)
    await run(platform, lambda db, out: predictions.resolve(db, out, channel_id=cid, prediction_id=pid,
                                                            winning_outcome_id=o2))
    assert await balances(platform, cid) == {a: 100, b: 100}
    async with platform.db.session() as db:
        assert (await db.get(PredictionBet, (pid, a))) is not None


# Polls ----------------------------------------------------------------------------------------

@sqlite_only
async def test_poll_free_vote_then_paid_votes(platform: Platform) -> None:
    cid = await channel(platform)
    a, b = await make_users(platform, 2)
    await grant(platform, cid, {a: 100, b: 100})

    async def create(db: Any, out: Outbox) -> tuple[str, list[str]]:
        poll = await polls.create(db, out, channel_id=cid, title="Map?", choices=["x", "y"], duration=60,
                                  points_voting=True, points_per_vote=30)
        return poll.id, [c["id"] for c in (await polls.helix_doc(db, poll))["choices"]]

    poll_id, (x, y) = await run(platform, create)

    async def vote(user: str, choice: str, votes: int) -> Any:
        return await run(platform, lambda db, out: polls.vote(db, out, poll_id=poll_id, user_id=user,
                                                              choice_id=choice, votes=votes))

    await vote(a, x, 1)  # free
    await vote(a, y, 3)  # 3 paid: 90 points
    with pytest.raises(CommunityError) as poor:
        await vote(a, y, 1)
    assert poor.value.code == "insufficient_points"
    await vote(b, y, 2)  # 1 free + 1 paid
    ended = await run(platform, lambda db, out: polls.end(db, out, channel_id=cid, poll_id=poll_id,
                                                          status="TERMINATED"))
    async with platform.db.session() as db:
        doc = await polls.helix_doc(db, ended)
    assert doc["status"] == "TERMINATED"
    assert [(c["votes"], c["channel_points_votes"]) for c in doc["choices"]] == [(1, 0), (5, 4)]
    assert await balances(platform, cid) == {a: 10, b: 70}
    await audit(platform, cid)


# Settlement through the database: a property test over whole predictions ----------------------

scenario = st.fixed_dictionaries({
    "funds": st.lists(st.integers(0, 2000), min_size=2, max_size=6),
    "bets": st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(1, 1500)), max_size=20),
    "end": st.one_of(st.just("cancel"), st.integers(0, 3)),
    "lock_first": st.booleans(),
})


def test_no_point_is_created_or_lost_by_any_prediction(tmp_path: Path) -> None:
    """Random wagers (some refused), then a cancel or a resolution: every balance adds up."""
    loop = asyncio.new_event_loop()
    platform = loop.run_until_complete(Platform.open(make_settings(tmp_path)))
    cid = loop.run_until_complete(channel(platform))
    counter = iter(range(10**6))

    async def play(case: dict[str, Any]) -> None:
        n = next(counter)
        users = await make_users(platform, len(case["funds"]), prefix=f"p{n}x", start=10 * n)
        funds = dict(zip(users, case["funds"], strict=True))
        await grant(platform, cid, funds)
        before = await audit(platform, cid)
        pid, outcomes = await start_prediction(platform, cid, outcomes=4)
        staked: dict[str, tuple[str, int]] = {}
        for who, which, amount in case["bets"]:
            user, outcome = users[who % len(users)], outcomes[which]
            try:
                await place(platform, pid, user, outcome, amount)
            except CommunityError:
                continue
            prior = staked.get(user, (outcome, 0))[1]
            staked[user] = (outcome, prior + amount)
        if case["lock_first"]:
            await run(platform, lambda db, out: predictions.lock(db, out, channel_id=cid, prediction_id=pid))
        if case["end"] == "cancel":
            await run(platform, lambda db, out: predictions.cancel(db, out, channel_id=cid, prediction_id=pid))
        else:
            winner = outcomes[case["end"]]
            await run(platform, lambda db, out: predictions.resolve(db, out, channel_id=cid, prediction_id=pid,
                                                                    winning_outcome_id=winner))
        held = await balances(platform, cid)
        after = {u: held.get(u, 0) for u in users}
        assert sum(after.values()) == sum(funds.values())
        assert await audit(platform, cid) == before
        for user in users:
            outcome, stake = staked.get(user, ("", 0))
            if case["end"] == "cancel" or not any(o == outcomes[case["end"]] for o, _ in staked.values()):
                assert after[user] == funds[user]
            elif outcome == outcomes[case["end"]]:
                assert after[user] >= funds[user]
            else:
                assert after[user] == funds[user] - stake

    @settings(max_examples=15, deadline=None)
    @given(case=scenario)
    def check(case: dict[str, Any]) -> None:
        loop.run_until_complete(play(case))

    try:
        check()
    finally:
        loop.run_until_complete(events.drain(platform))
        loop.run_until_complete(platform.close())
        loop.close()


def test_eventsub_conditions_select_by_reward() -> None:
    from livecast.api.eventsub import catalog

    sub = catalog.lookup("channel.channel_points_custom_reward_redemption.add", "1")
    event = {"broadcaster_user_id": "1", "reward": {"id": "r1"}}
    assert catalog.matches(sub, catalog.normalize_condition(sub, {"broadcaster_user_id": "1"}), event)
    assert catalog.matches(sub, {"broadcaster_user_id": "1", "reward_id": "r1"}, event)
    assert not catalog.matches(sub, {"broadcaster_user_id": "1", "reward_id": "r2"}, event)
    assert catalog.lookup("channel.prediction.lock", "1").scopes == ("channel:read:predictions",
                                                                     "channel:manage:predictions")


@sqlite_only
async def test_widget_hub_shares_one_subscription_per_channel(platform: Platform) -> None:
    from livecast.community import live

    hub = live.hub(platform)
    first, second = await hub.join("c1"), await hub.join("c1")
    other = await hub.join("c2")
    assert len(hub.rooms) == 2 and len(hub.rooms["c1"].clients) == 2
    out = Outbox()
    out.add("", "c1", {"type": "rewards"})
    await events.publish(platform, out)
    a, b = await asyncio.wait_for(first.get(), 10), await asyncio.wait_for(second.get(), 10)
    assert a is b and a.startswith(b"data: {") and a.endswith(b"\n\n")  # framed once, shared
    assert other.empty()
    await hub.leave("c1", first)
    await hub.leave("c1", second)
    await hub.leave("c2", other)
    assert hub.rooms == {}


async def test_one_running_prediction_and_poll_even_when_started_together(platform: Platform) -> None:
    cid = await channel(platform)
    started = await asyncio.gather(*(start_prediction(platform, cid) for _ in range(5)), return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in started) == 1
    assert all(isinstance(r, CommunityError) and r.code == "already_active"
               for r in started if isinstance(r, BaseException))

    async def poll(db: Any, out: Outbox) -> str:
        return (await polls.create(db, out, channel_id=cid, title="t", choices=["a", "b"], duration=60)).id

    opened = await asyncio.gather(*(run(platform, poll) for _ in range(5)), return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in opened) == 1


@sqlite_only
async def test_worker_tick_applies_deadlines_and_announces_them(platform: Platform) -> None:
    import json

    from sqlalchemy import update

    from livecast.community.models import Poll, Prediction

    cid = await channel(platform)
    pid, _ = await start_prediction(platform, cid)

    async def poll(db: Any, out: Outbox) -> str:
        return (await polls.create(db, out, channel_id=cid, title="t", choices=["a", "b"], duration=60)).id

    poll_id = await run(platform, poll)
    async with platform.db.session() as db:
        await db.execute(update(Prediction).where(Prediction.id == pid).values(locks_at=utcnow()))
        await db.execute(update(Poll).where(Poll.id == poll_id).values(ends_at=utcnow()))
    sub = await platform.bus.subscribe("event.channel.prediction.lock", "event.channel.poll.end")
    try:
        await CommunityWorker(platform).tick()
        seen = {}
        for _ in range(2):
            topic, data = await asyncio.wait_for(anext(aiter(sub)), 10)
            seen[topic] = json.loads(data)
    finally:
        await sub.close()
    assert seen["event.channel.prediction.lock"]["id"] == pid
    assert seen["event.channel.poll.end"]["status"] == "completed"
    await CommunityWorker(platform).tick()  # nothing left to do: no second announcement
    async with platform.db.session() as db:
        assert (await db.get(Prediction, pid)).status == "LOCKED"  # type: ignore[union-attr]
