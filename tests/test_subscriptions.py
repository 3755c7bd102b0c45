"""Subscriptions: every state change, its money and its announcements, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from livecast.bus.memory import MemoryBus
from livecast.chat.models import ROLE_SUBSCRIBER, ChatBan, ChatRole
from livecast.config import load_settings
from livecast.discovery.models import Follow
from livecast.identity import service as identity
from livecast.platform import Platform
from livecast.storage import create_store
from livecast.store.base import utcnow
from livecast.store.db import Database
from livecast.subscriptions import ledger, service
from livecast.subscriptions.events import Outbox
from livecast.subscriptions.models import Charge, Job, LedgerEntry, LedgerTransaction, Subscription
from livecast.subscriptions.pricing import PricingError, set_channel_terms
from livecast.subscriptions.worker import SubscriptionWorker


class RecordingBus(MemoryBus):
    def __init__(self) -> None:
        super().__init__()
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, channel: str, data: bytes) -> None:
        self.published.append((channel, data))
        await super().publish(channel, data)

    def events(self, topic: str) -> list[dict[str, Any]]:
        """Payloads as EventSub delivers them (without the private ``_`` keys)."""
        docs = [json.loads(d) for c, d in self.published if c == f"event.{topic}"]
        assert all(doc.get("_id") for doc in docs)  # each event is distinct for the dispatcher
        return [{k: v for k, v in doc.items() if not k.startswith("_")} for doc in docs]

    def room_lines(self, login: str) -> list[str]:
        return [d.decode() for c, d in self.published if c == f"chat.room.{login}"]


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, delta: dt.timedelta) -> None:
        self.now += delta


@pytest.fixture
async def platform(database: Database, tmp_path: Path) -> AsyncIterator[Platform]:
    settings = load_settings({}, data_dir=str(tmp_path))
    bus = RecordingBus()
    await bus.start()
    yield Platform(settings=settings, db=database, bus=bus, storage=create_store(f"file://{tmp_path}/s"))
    await bus.close()


async def make_users(platform: Platform, *logins: str, partner: str = "") -> dict[str, str]:
    ids = {}
    async with platform.db.session() as db:
        for login in logins:
            user, _ = await identity.create_user(db, login, broadcaster_type="partner" if login == partner else "")
            ids[login] = user.id
    return ids


def sandbox() -> service.Payment:
    return service.sandbox_payment()


async def ledger_state(platform: Platform) -> tuple[int, int, dict[tuple[str, str], int]]:
    async with platform.db.session() as db:
        txns = int((await db.execute(select(func.count()).select_from(LedgerTransaction))).scalar() or 0)
        entries = int((await db.execute(select(func.count()).select_from(LedgerEntry))).scalar() or 0)
        return txns, entries, await ledger.balances(db)


async def assert_balanced(platform: Platform) -> None:
    async with platform.db.session() as db:
        assert await ledger.unbalanced_transactions(db) == []
        total = int((await db.execute(select(func.coalesce(func.sum(LedgerEntry.amount), 0)))).scalar() or 0)
    assert total == 0


async def sub_of(platform: Platform, channel_id: str, user_id: str) -> Subscription:
    async with platform.db.session() as db:
        sub = await service.get_subscription(db, channel_id, user_id)
    assert sub is not None
    return sub


async def role_of(platform: Platform, channel_id: str, user_id: str) -> tuple[int, int] | None:
    async with platform.db.session() as db:
        row = await db.get(ChatRole, (channel_id, user_id, ROLE_SUBSCRIBER))
    return (row.months, row.tier) if row else None


async def subscribe(platform: Platform, channel_id: str, user_id: str, tier: str = "1000",
                    now: dt.datetime | None = None) -> Subscription | None:
    return await service.run(platform, lambda db, out: service.subscribe(
        db, out, platform.settings, channel_id=channel_id, user_id=user_id, tier=tier, payment=sandbox(), now=now))


# Purchases -------------------------------------------------------------------------------------

async def test_subscribe_charges_books_and_entitles(platform: Platform) -> None:
    ids = await make_users(platform, "streamer", "viewer")
    sub = await subscribe(platform, ids["streamer"], ids["viewer"], "1000")
    assert sub is not None and sub.state == "active" and sub.cumulative_months == 1 and sub.streak_months == 1
    assert not sub.resub_share_available  # a first sub has nothing to share
    async with platform.db.session() as db:
        assert await service.is_subscriber(db, ids["streamer"], ids["viewer"]) == ("1000", 1)
        charge = (await db.execute(select(Charge))).scalar_one()
        jobs = (await db.execute(select(Job))).scalars().all()
    assert (charge.amount, charge.platform_fee, charge.creator_share, charge.currency) == (499, 250, 249, "USD")
    assert len(jobs) == 1 and jobs[0].run_at == sub.current_period_end
    _, _, balances = await ledger_state(platform)
    assert balances == {("cash:sandbox", "USD"): 499, ("revenue:platform", "USD"): -250,
                        (f"payable:creator:{ids['streamer']}", "USD"): -249}
    assert await role_of(platform, ids["streamer"], ids["viewer"]) == (1, 1000)
    bus: RecordingBus = platform.bus  # type: ignore[assignment]
    assert bus.events("channel.subscribe") == [{
        "user_id": ids["viewer"], "user_login": "viewer", "user_name": "viewer",
        "broadcaster_user_id": ids["streamer"], "broadcaster_user_login": "streamer",
        "broadcaster_user_name": "streamer", "tier": "1000", "is_gift": False}]
    lines = bus.room_lines("streamer")
    assert any("msg-id=sub;" in line and "USERNOTICE #streamer" in line and "subscriber/0" in line for line in lines)
    with pytest.raises(service.SubscriptionError) as err:
        await subscribe(platform, ids["streamer"], ids["viewer"])
    assert err.value.code == "already_subscribed"


async def test_prices_and_shares_by_configuration(platform: Platform) -> None:
    ids = await make_users(platform, "partnered", "small", "fan", partner="partnered")
    await subscribe(platform, ids["partnered"], ids["fan"], "3000")
    await subscribe(platform, ids["small"], ids["fan"], "2000")
    async with platform.db.session() as db:
        charges = {c.channel_id: c for c in (await db.execute(select(Charge))).scalars()}
        await set_channel_terms(db, ids["small"], prices={"1000": 300}, share_percent=85)
    assert (charges[ids["partnered"]].amount, charges[ids["partnered"]].creator_share) == (2499, 1749)  # 70 %
    assert (charges[ids["small"]].amount, charges[ids["small"]].creator_share) == (999, 499)  # 50 %
    other = (await make_users(platform, "other"))["other"]
    await subscribe(platform, ids["small"], other, "1000")
    async with platform.db.session() as db:
        charge = (await db.execute(select(Charge).where(Charge.payer_id == other))).scalar_one()
    assert (charge.amount, charge.platform_fee, charge.creator_share) == (300, 45, 255)


async def test_gift_and_anonymous_gift(platform: Platform) -> None:
    ids = await make_users(platform, "chan", "santa", "kid1", "kid2")
    sub = await service.run(platform, lambda db, out: service.gift(
        db, out, platform.settings, channel_id=ids["chan"], gifter_id=ids["santa"], recipient_id=ids["kid1"],
        tier="2000", payment=sandbox()))
    assert sub is not None and sub.is_gift and sub.gifter_id == ids["santa"] and not sub.auto_renew
    await service.run(platform, lambda db, out: service.gift(
        db, out, platform.settings, channel_id=ids["chan"], gifter_id=ids["santa"], recipient_id=ids["kid2"],
        tier="1000", payment=sandbox(), anonymous=True))
    bus: RecordingBus = platform.bus  # type: ignore[assignment]
    gifts = bus.events("channel.subscription.gift")
    assert gifts[0]["user_login"] == "santa" and gifts[0]["total"] == 1 and gifts[0]["cumulative_total"] == 1
    assert gifts[0]["is_anonymous"] is False and gifts[0]["tier"] == "2000"
    assert gifts[1]["user_id"] is None and gifts[1]["is_anonymous"] is True and gifts[1]["cumulative_total"] is None
    assert [e["is_gift"] for e in bus.events("channel.subscribe")] == [True, True]
    lines = bus.room_lines("chan")
    assert any("msg-id=subgift" in x and "msg-param-recipient-user-name=kid1" in x and ":santa!" not in x
               and "login=santa" in x for x in lines)
    assert any("msg-id=subgift" in x and "login=ananonymousgifter" in x and "user-id=274598607" in x for x in lines)
    async with platform.db.session() as db:
        assert await service.is_subscriber(db, ids["chan"], ids["kid2"]) == ("1000", 1)


async def test_community_gift_picks_eligible_viewers(platform: Platform) -> None:
    ids = await make_users(platform, "chan", "whale", "fan1", "fan2", "fan3", "banned", "subbed", "stranger")
    async with platform.db.session() as db:
        for login in ("fan1", "fan2", "fan3", "banned", "subbed", "whale"):
            db.add(Follow(user_id=ids[login], channel_id=ids["chan"]))
        db.add(ChatBan(channel_id=ids["chan"], user_id=ids["banned"]))
    await subscribe(platform, ids["chan"], ids["subbed"])
    with pytest.raises(service.SubscriptionError) as err:
        await service.run(platform, lambda db, out: service.community_gift(
            db, out, platform.settings, channel_id=ids["chan"], gifter_id=ids["whale"], count=4, tier="1000",
            payment=sandbox()))
    assert err.value.code == "not_enough_recipients"
    subs = await service.run(platform, lambda db, out: service.community_gift(
        db, out, platform.settings, channel_id=ids["chan"], gifter_id=ids["whale"], count=3, tier="1000",
        payment=sandbox(), chatters=[ids["stranger"]], rng=random.Random(7)))
    assert subs is not None and len(subs) == 3
    chosen = {s.user_id for s in subs}
    assert chosen <= {ids["fan1"], ids["fan2"], ids["fan3"], ids["stranger"]}
    async with platform.db.session() as db:
        charge = (await db.execute(select(Charge).where(Charge.kind == "community_gift"))).scalar_one()
    assert (charge.quantity, charge.amount) == (3, 1497)
    assert all(s.charge_id == charge.id for s in subs)
    bus: RecordingBus = platform.bus  # type: ignore[assignment]
    assert bus.events("channel.subscription.gift")[-1]["total"] == 3
    lines = bus.room_lines("chan")
    assert sum("msg-id=submysterygift" in x and "msg-param-mass-gift-count=3" in x for x in lines) == 1
    assert sum("msg-id=subgift" in x for x in lines) == 3


# Lifecycle -------------------------------------------------------------------------------------

async def test_renewal_streak_resub_share_and_tier_change(platform: Platform) -> None:
    ids = await make_users(platform, "chan", "loyal")
    clock = Clock()
    await subscribe(platform, ids["chan"], ids["loyal"], "1000", now=clock.now)
    worker = SubscriptionWorker(platform, clock=clock)
    assert await worker.run_due() == 0  # nothing is due yet
    with pytest.raises(service.SubscriptionError) as err:
        await service.run(platform, lambda db, out: service.share_resub(
            db, out, channel_id=ids["chan"], user_id=ids["loyal"], message="hi"))
    assert err.value.code == "already_shared"
    clock.advance(service.PERIOD + dt.timedelta(minutes=1))
    assert await worker.run_due() == 1
    sub = await sub_of(platform, ids["chan"], ids["loyal"])
    assert (sub.state, sub.cumulative_months, sub.streak_months, sub.resub_share_available) == ("active", 2, 2, True)
    assert await role_of(platform, ids["chan"], ids["loyal"]) == (2, 1000)
    await service.run(platform, lambda db, out: service.share_resub(
        db, out, channel_id=ids["chan"], user_id=ids["loyal"], message="two months!"))
    with pytest.raises(service.SubscriptionError):  # once per period
        await service.run(platform, lambda db, out: service.share_resub(
            db, out, channel_id=ids["chan"], user_id=ids["loyal"], message="again"))
    bus: RecordingBus = platform.bus  # type: ignore[assignment]
    (msg,) = bus.events("channel.subscription.message")
    assert msg["message"]["text"] == "two months!" and msg["cumulative_months"] == 2 and msg["streak_months"] == 2
    assert msg["duration_months"] == 1
    assert any("msg-id=resub" in x and "msg-param-cumulative-months=2" in x and x.endswith(":two months!\r\n")
               for x in bus.room_lines("chan"))
    await service.run(platform, lambda db, out: service.change_tier(
        db, out, channel_id=ids["chan"], user_id=ids["loyal"], tier="3000"))
    assert (await sub_of(platform, ids["chan"], ids["loyal"])).tier == "1000"  # applies at the next renewal
    clock.advance(service.PERIOD)
    assert await worker.run_due() == 1
    sub = await sub_of(platform, ids["chan"], ids["loyal"])
    assert (sub.tier, sub.cumulative_months) == ("3000", 3)
    async with platform.db.session() as db:
        amounts = [c.amount for c in (await db.execute(select(Charge).order_by(Charge.created_at))).scalars()]
    assert amounts == [499, 499, 2499]
    await assert_balanced(platform)


async def test_cancel_keeps_benefits_until_period_end_then_expires(platform: Platform) -> None:
    ids = await make_users(platform, "chan", "leaver")
    clock = Clock()
    await subscribe(platform, ids["chan"], ids["leaver"], now=clock.now)
    sub = await service.run(platform, lambda db, out: service.cancel(db, out, channel_id=ids["chan"],
                                                                      user_id=ids["leaver"]))
    assert sub.state == "cancelled"
    async with platform.db.session() as db:
        assert await service.is_subscriber(db, ids["chan"], ids["leaver"]) == ("1000", 1)
    worker = SubscriptionWorker(platform, clock=clock)
    clock.advance(service.PERIOD + dt.timedelta(seconds=1))
    assert await worker.run_due() == 1
    sub = await sub_of(platform, ids["chan"], ids["leaver"])
    assert sub.state == "expired" and sub.ended_at is not None
    assert await role_of(platform, ids["chan"], ids["leaver"]) is None
    bus: RecordingBus = platform.bus  # type: ignore[assignment]
    assert bus.events("channel.subscription.end") == [{
        "user_id": ids["leaver"], "user_login": "leaver", "user_name": "leaver",
        "broadcaster_user_id": ids["chan"], "broadcaster_user_login": "chan", "broadcaster_user_name": "chan",
        "tier": "1000", "is_gift": False}]
    async with platform.db.session() as db:
        assert (await db.execute(select(func.count()).select_from(Charge))).scalar() == 1  # no renewal charge
    # coming back later: cumulative months continue, the streak starts again
    again = await subscribe(platform, ids["chan"], ids["leaver"], now=clock.now)
    assert again is not None and (again.cumulative_months, again.streak_months) == (2, 1)
    assert again.resub_share_available


async def test_resume_and_gift_expiry(platform: Platform) -> None:
    ids = await make_users(platform, "chan", "undecided", "giver", "lucky")
    clock = Clock()
    await subscribe(platform, ids["chan"], ids["undecided"], now=clock.now)
    await service.run(platform, lambda db, out: service.cancel(db, out, channel_id=ids["chan"],
                                                                user_id=ids["undecided"]))
    await service.run(platform, lambda db, out: service.resume(db, out, channel_id=ids["chan"],
                                                                user_id=ids["undecided"], now=clock.now))
    await service.run(platform, lambda db, out: service.gift(
        db, out, platform.settings, channel_id=ids["chan"], gifter_id=ids["giver"], recipient_id=ids["lucky"],
        tier="1000", payment=sandbox(), now=clock.now))
    clock.advance(service.PERIOD + dt.timedelta(seconds=1))
    assert await SubscriptionWorker(platform, clock=clock).run_due() == 2
    assert (await sub_of(platform, ids["chan"], ids["undecided"])).state == "active"  # renewed
    assert (await sub_of(platform, ids["chan"], ids["lucky"])).state == "expired"  # gifts do not renew


@pytest.mark.parametrize("kind", ["refund", "chargeback"])
async def test_refund_and_chargeback_revoke_at_once(platform: Platform, kind: str) -> None:
    ids = await make_users(platform, "chan", "payer")
    sub = await subscribe(platform, ids["chan"], ids["payer"])
    assert sub is not None and sub.charge_id is not None
    charge_id = sub.charge_id

    async def reverse(db: Any, out: Outbox) -> bool:
        return await service.reverse(db, out, await service.find_charge(db, charge_id=charge_id), kind)

    assert await service.run(platform, reverse) is True
    sub = await sub_of(platform, ids["chan"], ids["payer"])
    assert sub.state == ("refunded" if kind == "refund" else "charged_back")
    async with platform.db.session() as db:
        assert await service.is_subscriber(db, ids["chan"], ids["payer"]) is None
        charge = await db.get(Charge, charge_id)
        assert charge is not None and charge.status == ("refunded" if kind == "refund" else "charged_back")
    assert await role_of(platform, ids["chan"], ids["payer"]) is None
    before = await ledger_state(platform)
    assert before[2] == {("cash:sandbox", "USD"): 0, ("revenue:platform", "USD"): -250,
                         (f"payable:creator:{ids['chan']}", "USD"): 0,
                         ("refunds" if kind == "refund" else "chargebacks", "USD"): 250}
    assert await service.run(platform, reverse) is False  # a replay books nothing
    assert await ledger_state(platform) == before
    await assert_balanced(platform)
    bus: RecordingBus = platform.bus  # type: ignore[assignment]
    assert len(bus.events("channel.subscription.end")) == 1


# Bad input -------------------------------------------------------------------------------------

async def test_bad_input_is_refused_without_ledger_change(platform: Platform) -> None:
    ids = await make_users(platform, "chan", "buyer", "troll")
    async with platform.db.session() as db:
        db.add(ChatBan(channel_id=ids["chan"], user_id=ids["troll"]))
    before = await ledger_state(platform)
    with pytest.raises(PricingError) as perr:
        await subscribe(platform, ids["chan"], ids["buyer"], "4000")
    assert perr.value.code == "unknown_price"
    cases = [
        (lambda db, out: service.gift(db, out, platform.settings, channel_id=ids["chan"], gifter_id=ids["buyer"],
                                      recipient_id="999999999999", tier="1000", payment=sandbox()), "invalid_user"),
        (lambda db, out: service.gift(db, out, platform.settings, channel_id=ids["chan"], gifter_id=ids["buyer"],
                                      recipient_id=ids["troll"], tier="1000", payment=sandbox()), "user_banned"),
        (lambda db, out: service.reverse(db, out, None, "refund"), "unknown_charge"),
        (lambda db, out: service.subscribe(db, out, platform.settings, channel_id=ids["chan"],
                                           user_id=ids["chan"], tier="1000", payment=sandbox()), "self_subscribe"),
        (lambda db, out: service.cancel(db, out, channel_id=ids["chan"], user_id=ids["buyer"]), "not_subscribed"),
    ]
    for fn, code in cases:
        with pytest.raises(service.SubscriptionError) as err:
            await service.run(platform, fn)
        assert err.value.code == code, code
        assert err.value.message
    async with platform.db.session() as db:
        with pytest.raises(service.SubscriptionError) as err:
            await service.reverse(db, Outbox(), await service.find_charge(db, charge_id="nope"), "refund")
        assert err.value.code == "unknown_charge"
        assert (await db.execute(select(func.count()).select_from(Charge))).scalar() == 0
        assert (await db.execute(select(func.count()).select_from(Subscription))).scalar() == 0
    assert await ledger_state(platform) == before == (0, 0, {})


async def test_concurrent_purchases_for_one_viewer_create_one_subscription(platform: Platform) -> None:
    ids = await make_users(platform, "chan", "eager")
    results = await asyncio.gather(*(subscribe(platform, ids["chan"], ids["eager"]) for _ in range(8)),
                                   return_exceptions=True)
    ok = [r for r in results if isinstance(r, Subscription)]
    refused = [r for r in results if isinstance(r, service.SubscriptionError)]
    assert len(ok) == 1 and len(refused) == 7, results
    assert {r.code for r in refused} == {"already_subscribed"}
    async with platform.db.session() as db:
        assert (await db.execute(select(func.count()).select_from(Charge))).scalar() == 1
        assert (await db.execute(select(func.count()).select_from(Subscription))).scalar() == 1
    await assert_balanced(platform)


async def test_tier_gated_emotes_follow_the_subscription(platform: Platform) -> None:
    from livecast.chat.models import Emote
    from livecast.chat.state import Chatter, load_channel

    ids = await make_users(platform, "chan", "tiered")
    async with platform.db.session() as db:
        db.add(Emote(id="e2", code="chanTwo", owner_id=ids["chan"], tier=2000))
        db.add(Emote(id="e3", code="chanThree", owner_id=ids["chan"], tier=3000))
    await subscribe(platform, ids["chan"], ids["tiered"], "2000")
    me = Chatter(ids["tiered"], "tiered", "tiered")
    async with platform.db.session() as db:
        state = await load_channel(db, "chan")
    assert state is not None
    standing = state.standing(me)
    assert standing.is_subscriber and (standing.sub_tier, standing.sub_months) == (2000, 1)
    usable = state.emotes_for(standing)
    assert "chanTwo" in usable and "chanThree" not in usable


async def test_concurrent_comebacks_and_refunds_apply_once(platform: Platform) -> None:
    ids = await make_users(platform, "chan", "back")
    clock = Clock()
    first = await subscribe(platform, ids["chan"], ids["back"], now=clock.now)
    assert first is not None and first.charge_id is not None
    await service.run(platform, lambda db, out: service.cancel(db, out, channel_id=ids["chan"], user_id=ids["back"]))
    clock.advance(service.PERIOD + dt.timedelta(seconds=1))
    assert await SubscriptionWorker(platform, clock=clock).run_due() == 1
    # the lapsed viewer's row exists: the unique key cannot save us, the row lock must
    results = await asyncio.gather(*(subscribe(platform, ids["chan"], ids["back"], now=clock.now)
                                     for _ in range(6)), return_exceptions=True)
    ok = [r for r in results if isinstance(r, Subscription)]
    assert len(ok) == 1, results
    assert all(isinstance(r, service.SubscriptionError) and r.code == "already_subscribed"
               for r in results if r is not ok[0])
    sub = await sub_of(platform, ids["chan"], ids["back"])
    assert (sub.cumulative_months, sub.streak_months) == (2, 1)
    charge_id = sub.charge_id

    async def refund(db: Any, out: Outbox) -> bool:
        return await service.reverse(db, out, await service.find_charge(db, charge_id=charge_id), "refund")

    outcomes = await asyncio.gather(*(service.run(platform, refund) for _ in range(6)))
    assert sorted(outcomes) == [False] * 5 + [True]
    async with platform.db.session() as db:
        assert (await db.execute(select(func.count()).select_from(Charge))).scalar() == 2
        kinds = sorted((await db.execute(select(LedgerTransaction.kind))).scalars())
    assert kinds == ["charge", "charge", "refund"]
    await assert_balanced(platform)


async def test_payout_report_nets_reversals(platform: Platform) -> None:
    from livecast.subscriptions import payouts

    ids = await make_users(platform, "alpha", "beta", "payer1", "payer2", "payer3", partner="beta")
    s1 = await subscribe(platform, ids["alpha"], ids["payer1"], "1000")
    await subscribe(platform, ids["alpha"], ids["payer2"], "2000")
    s3 = await subscribe(platform, ids["beta"], ids["payer3"], "3000")
    assert s1 is not None and s3 is not None
    for sub, kind in ((s1, "refund"), (s3, "chargeback")):
        async def reverse(db: Any, out: Outbox, charge_id: str | None = sub.charge_id, kind: str = kind) -> bool:
            return await service.reverse(db, out, await service.find_charge(db, charge_id=charge_id), kind)
        await service.run(platform, reverse)
    month = utcnow().strftime("%Y-%m")
    async with platform.db.session() as db:
        rows = await payouts.report(db, month)
        assert await payouts.report(db, "2001-01") == []
    text = payouts.to_csv(rows)
    lines = text.splitlines()
    assert lines[0] == ("creator_id,creator_login,month,currency,charges,gross,platform_fee,creator_share,"
                        "refunds,chargebacks,net_payable")
    assert lines[1:] == [
        f"{ids['alpha']},alpha,{month},USD,2,1498,750,748,249,0,499",
        f"{ids['beta']},beta,{month},USD,1,2499,750,1749,0,1749,0",
    ]
    with pytest.raises(ValueError):
        payouts.month_bounds("2026-13")
    assert payouts.month_bounds("2026-12")[1] == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
