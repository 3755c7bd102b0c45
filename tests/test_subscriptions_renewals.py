"""Stripe renewals off-session and partial refunds, against a local fake of Stripe's API.

The fake (tests/stripe_fake.py) is an ASGI app served on a local port, reached through
``stripe_api_base`` exactly as the real API would be; webhooks are signed with Stripe's scheme.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from livecast.app import create_app
from livecast.config import load_settings
from livecast.identity import service as identity
from livecast.platform import Platform
from livecast.storage import create_store
from livecast.store.db import Database
from livecast.subscriptions import jobs, ledger, service
from livecast.subscriptions.events import Outbox
from livecast.subscriptions.models import Charge, Job, LedgerEntry, LedgerTransaction, Subscription
from livecast.subscriptions.providers.base import CheckoutRequest
from livecast.subscriptions.providers.stripe import StripeProvider, sign
from livecast.subscriptions.worker import SubscriptionWorker, run_period_end
from tests.stripe_fake import FakeStripe, FakeStripeServer
from tests.test_subscriptions import RecordingBus

SECRET = "whsec_renewals"
KEY = "sk_test_fake"
URL = "/subscriptions/webhooks/stripe"
_ids = itertools.count(1)


def evt(type_: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"evt_{next(_ids)}_{time.monotonic_ns()}", "object": "event", "type": type_,
            "data": {"object": obj}}


def checkout_completed(pi: str, channel: str, payer: str, customer: str, amount: int = 499) -> dict[str, Any]:
    meta = {"livecast_kind": "subscribe", "channel_id": channel, "payer_id": payer, "tier": "1000",
            "quantity": "1", "recipient_id": "", "anonymous": "0"}
    return evt("checkout.session.completed", {
        "id": "cs_" + pi, "object": "checkout.session", "payment_intent": pi, "payment_status": "paid",
        "amount_total": amount, "currency": "usd", "customer": customer, "metadata": meta, "mode": "payment"})


def intent_event(type_: str, intent: dict[str, Any]) -> dict[str, Any]:
    return evt(type_, dict(intent))


def refunded(pi: str, amount: int, total: int) -> dict[str, Any]:
    return evt("charge.refunded", {"id": "ch_" + pi, "object": "charge", "payment_intent": pi, "amount": amount,
                                   "amount_refunded": total, "refunded": total >= amount})


@dataclass
class Env:
    platform: Platform
    http: httpx.AsyncClient
    fake: FakeStripe
    bus: RecordingBus

    async def deliver(self, event: dict[str, Any]) -> str:
        body = json.dumps(event).encode()
        r = await self.http.post(URL, content=body, headers={"Stripe-Signature": sign(body, SECRET),
                                                             "Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        return str(r.json()["status"])


def stripe_platform(url: str, tmp_path: Path, fake: FakeStripe, bus: RecordingBus | None = None) -> Platform:
    settings = load_settings({}, data_dir=str(tmp_path), stripe_secret_key=KEY, stripe_webhook_secret=SECRET,
                             stripe_api_base=fake.url)
    return Platform(settings=settings, db=Database(url), bus=bus or RecordingBus(),
                    storage=create_store(f"file://{tmp_path}/s"))


@pytest.fixture
async def env(database: Database, tmp_path: Path) -> AsyncIterator[Env]:
    async with FakeStripeServer(FakeStripe(secret_key=KEY)) as fake:
        bus = RecordingBus()
        await bus.start()
        platform = stripe_platform(database.url, tmp_path, fake, bus)
        app = create_app(platform)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            yield Env(platform, http, fake, bus)
        await bus.close()
        await platform.db.close()


async def buy(env: Env, channel: str, login: str, pm: str, *, announce_card: bool = True) -> tuple[str, str]:
    """A viewer subscribes through Checkout; returns (user id, the first PaymentIntent id)."""
    async with env.platform.db.session() as db:
        user = (await identity.create_user(db, login))[0].id
    pi = f"pi_first_{login}"
    first = {"id": pi, "object": "payment_intent", "amount": 499, "amount_received": 499, "currency": "usd",
             "customer": f"cus_{login}", "payment_method": pm, "status": "succeeded",
             "metadata": {"livecast_kind": "subscribe", "channel_id": channel, "payer_id": user, "tier": "1000"}}
    env.fake.intents[pi] = first
    assert await env.deliver(checkout_completed(pi, channel, user, f"cus_{login}")) == "processed"
    if announce_card:
        assert await env.deliver(intent_event("payment_intent.succeeded", first)) == "processed"
    return user, pi


async def channel(env: Env) -> str:
    async with env.platform.db.session() as db:
        return (await identity.create_user(db, "chan"))[0].id


async def sub_of(platform: Platform, channel_id: str, user: str) -> Subscription:
    async with platform.db.session() as db:
        sub = await service.get_subscription(db, channel_id, user)
        assert sub is not None
        return sub


async def money(platform: Platform) -> dict[str, Any]:
    async with platform.db.session() as db:
        return {
            "charges": sorted((c.provider_ref, c.kind, c.amount, c.amount_refunded, c.status)
                              for c in (await db.execute(select(Charge))).scalars()),
            "txns": (await db.execute(select(func.count()).select_from(LedgerTransaction))).scalar(),
            "entries": (await db.execute(select(func.count()).select_from(LedgerEntry))).scalar(),
            "balances": await ledger.balances(db),
            "unbalanced": await ledger.unbalanced_transactions(db),
        }


def due_after(sub: Subscription) -> dt.datetime:
    return sub.current_period_end + dt.timedelta(minutes=1)


# Checkout saves the card ----------------------------------------------------------------------

async def test_subscribe_checkout_saves_the_card_for_off_session() -> None:
    async with FakeStripeServer(FakeStripe(secret_key=KEY)) as fake:
        provider = StripeProvider(KEY, fake.url)
        common = {"channel_id": "1", "payer_id": "2", "tier": "1000", "unit_amount": 499, "currency": "USD"}
        await provider.start_checkout(CheckoutRequest(kind="subscribe", **common))  # type: ignore[arg-type]
        await provider.start_checkout(CheckoutRequest(kind="gift", recipient_id="3", **common))  # type: ignore[arg-type]
    sub_form, gift_form = (r.form for r in fake.posts("/v1/checkout/sessions"))
    assert sub_form["mode"] == "payment" and sub_form["customer_creation"] == "always"
    assert sub_form["payment_intent_data[setup_future_usage]"] == "off_session"
    assert sub_form["payment_intent_data[metadata][livecast_kind]"] == "subscribe"
    assert "customer_creation" not in gift_form and "payment_intent_data[setup_future_usage]" not in gift_form


# Renewals ---------------------------------------------------------------------------------------

async def test_renewal_charges_the_saved_card_once(env: Env) -> None:
    chan = await channel(env)
    # the card is learnt from the first PaymentIntent at renewal time (its webhook never came)
    user, first_pi = await buy(env, chan, "viewer", "pm_card_visa", announce_card=False)
    sub = await sub_of(env.platform, chan, user)
    assert (sub.provider_customer, sub.provider_payment_method) == ("cus_viewer", "")
    worker = SubscriptionWorker(env.platform, clock=lambda: due_after(sub))
    assert await worker.run_due() == 1
    (get,) = [r for r in env.fake.requests if r.method == "GET"]
    assert get.path == f"/v1/payment_intents/{first_pi}"
    (post,) = env.fake.posts("/v1/payment_intents")
    form = post.form
    assert (form["confirm"], form["off_session"], form["customer"], form["payment_method"]) == (
        "true", "true", "cus_viewer", "pm_card_visa")
    assert (form["amount"], form["currency"], form["metadata[livecast_kind]"]) == ("499", "usd", "renewal")
    assert form["metadata[subscription_id]"] == sub.id
    assert post.headers["idempotency-key"] == f"livecast-renewal:{sub.id}:{service.period_key(sub)}"
    renewed = await sub_of(env.platform, chan, user)
    assert (renewed.state, renewed.cumulative_months, renewed.provider_payment_method) == ("active", 2, "pm_card_visa")
    assert renewed.current_period_end == sub.current_period_end + service.PERIOD
    after_job = await money(env.platform)
    (intent,) = [i for k, i in env.fake.intents.items() if k != first_pi]
    assert (intent["id"], "renewal", 499, 0, "paid") in after_job["charges"]
    assert after_job["txns"] == 2 and after_job["unbalanced"] == []
    # Stripe's webhook for the same PaymentIntent, twice: the ledger does not move
    succeeded = intent_event("payment_intent.succeeded", intent)
    assert await env.deliver(succeeded) == "processed"
    assert await env.deliver(succeeded) == "duplicate"
    assert await money(env.platform) == after_job
    # the next period is charged with the card now saved, under a new key
    again = SubscriptionWorker(env.platform, clock=lambda: due_after(renewed))
    assert await again.run_due() == 1
    keys = [r.headers["idempotency-key"] for r in env.fake.posts("/v1/payment_intents")]
    assert len(keys) == 2 and len(set(keys)) == 2
    assert len([r for r in env.fake.requests if r.method == "GET"]) == 1
    assert (await sub_of(env.platform, chan, user)).cumulative_months == 3


async def test_crash_between_charge_and_commit_with_two_workers(env: Env, tmp_path: Path) -> None:
    chan = await channel(env)
    retried, _ = await buy(env, chan, "retried", "pm_card_visa")
    hooked, _ = await buy(env, chan, "hooked", "pm_card_visa")
    subs = {u: await sub_of(env.platform, chan, u) for u in (retried, hooked)}
    due = max(due_after(s) for s in subs.values())
    async with env.platform.db.session() as db:
        claimed = await jobs.claim(db, "crashed-worker", due)
    assert len(claimed) == 2

    class Crash(Exception):
        pass

    for job_id in claimed:  # the worker charges Stripe, then dies before its transaction commits
        with pytest.raises(Crash):
            async with env.platform.db.session() as db:
                job = await db.get(Job, job_id)
                assert job is not None
                assert await run_period_end(db, Outbox(), env.platform, job, due) == "renewed"
                raise Crash
    assert len(env.fake.intents) == 4  # two first purchases, two renewals charged at Stripe
    assert (await money(env.platform))["txns"] == 2  # ...and none of it booked
    renewal_of = {i["metadata"]["subscription_id"]: i for i in env.fake.intents.values()
                  if i["metadata"].get("livecast_kind") == "renewal"}
    # Stripe's webhook reaches us for one of them before any worker retries
    assert await env.deliver(intent_event("payment_intent.succeeded", renewal_of[subs[hooked].id])) == "processed"
    assert (await sub_of(env.platform, chan, hooked)).cumulative_months == 2

    # two workers (two "processes") retry once the dead worker's lease has run out
    other = stripe_platform(env.platform.db.url, tmp_path, env.fake)
    await other.bus.start()
    try:
        later = due + jobs.LEASE + dt.timedelta(seconds=1)
        wa = SubscriptionWorker(env.platform, clock=lambda: later)
        wb = SubscriptionWorker(other, clock=lambda: later)
        ran = await asyncio.gather(wa.run_due(), wb.run_due())
        assert sum(ran) == 2  # each job ran once more: one renewed, one found its period paid already
    finally:
        await other.bus.close()
        await other.db.close()
    posts = env.fake.posts("/v1/payment_intents")
    keys = [p.headers["idempotency-key"] for p in posts]
    assert keys.count(f"livecast-renewal:{subs[retried].id}:{service.period_key(subs[retried])}") == 2
    assert keys.count(f"livecast-renewal:{subs[hooked].id}:{service.period_key(subs[hooked])}") == 1
    assert len([i for i in env.fake.intents.values() if i["metadata"].get("livecast_kind") == "renewal"]) == 2
    state = await money(env.platform)
    assert [c[1] for c in state["charges"]].count("renewal") == 2
    assert state["txns"] == 4 and state["unbalanced"] == []
    assert state["balances"][("cash:stripe", "USD")] == 4 * 499
    for user in (retried, hooked):
        sub = await sub_of(env.platform, chan, user)
        assert (sub.state, sub.cumulative_months) == ("active", 2)
    # the late webhook for the retried one books nothing more
    assert await env.deliver(intent_event("payment_intent.succeeded", renewal_of[subs[retried].id])) == "processed"
    assert await money(env.platform) == state


async def test_declined_renewal_ends_the_subscription(env: Env) -> None:
    chan = await channel(env)
    declined, _ = await buy(env, chan, "declined", "pm_card_chargeDeclined")
    slow, _ = await buy(env, chan, "slow", "pm_processing")
    subs = {u: await sub_of(env.platform, chan, u) for u in (declined, slow)}
    before = await money(env.platform)
    worker = SubscriptionWorker(env.platform, clock=lambda: max(due_after(s) for s in subs.values()))
    assert await worker.run_due() == 2
    gone = await sub_of(env.platform, chan, declined)
    assert (gone.state, gone.cumulative_months) == ("expired", 1)
    assert gone.current_period_end == subs[declined].current_period_end  # not extended
    ends = env.bus.events("channel.subscription.end")
    assert [e["user_id"] for e in ends] == [declined]
    # the asynchronous payment is still processing: no money, no new period, no end yet
    waiting = await sub_of(env.platform, chan, slow)
    assert (waiting.state, waiting.current_period_end) == ("active", subs[slow].current_period_end)
    assert await money(env.platform) == before
    intents = {i["customer"]: i for i in env.fake.intents.values() if i["metadata"].get("livecast_kind") == "renewal"}
    # Stripe's failure webhooks: the declined one changes nothing more, the processing one ends it
    assert await env.deliver(intent_event("payment_intent.payment_failed", intents["cus_declined"])) == "processed"
    failed = dict(intents["cus_slow"], status="requires_payment_method")
    assert await env.deliver(intent_event("payment_intent.payment_failed", failed)) == "processed"
    assert (await sub_of(env.platform, chan, slow)).state == "expired"
    assert sorted(e["user_id"] for e in env.bus.events("channel.subscription.end")) == sorted([declined, slow])
    assert await money(env.platform) == before
    # a later success for an ended period still books the money it took (it can be refunded)
    late = dict(intents["cus_slow"], status="succeeded", amount_received=499)
    assert await env.deliver(intent_event("payment_intent.succeeded", late)) == "processed"
    after = await money(env.platform)
    assert (late["id"], "renewal", 499, 0, "paid") in after["charges"]
    assert (await sub_of(env.platform, chan, slow)).state == "expired"
    # one renewal attempt each reached Stripe; the ended subscriptions have no job left to retry
    assert len(env.fake.posts("/v1/payment_intents")) == 2
    async with env.platform.db.session() as db:
        assert (await db.execute(select(func.count()).select_from(Job).where(Job.status == "pending"))).scalar() == 0


# Partial refunds ----------------------------------------------------------------------------------

async def test_partial_then_full_refunds_in_any_order(env: Env) -> None:
    chan = await channel(env)
    # price 499, creator share 50%: fee 250, share 249. Refund totals 100, 250, then all of it.
    # creator gives back floor(249 * R / 499): 49 at R=100, 124 at R=250, 249 at R=499.
    expected_partial = {("cash:stripe", "USD"): 499 - 250, ("revenue:platform", "USD"): -250,
                        ("payable:creator:" + chan, "USD"): -249 + 124, ("refunds", "USD"): 250 - 124}
    orders = [
        ["buy", "r100", "r250", "full"],  # as it happened
        ["buy", "r250", "r100", "full", "r250"],  # an older total after a newer one, and a replay
        ["r250", "buy", "full", "r100"],  # a refund before its charge is known, the full one overtaking
        ["full", "r100", "buy", "r250"],
    ]
    finals = []
    for n, order in enumerate(orders):
        login = f"refunder{n}"
        async with env.platform.db.session() as db:
            user = (await identity.create_user(db, login))[0].id
        pi = f"pi_refund_{n}"
        events = {"buy": checkout_completed(pi, chan, user, f"cus_{login}"), "r100": refunded(pi, 499, 100),
                  "r250": refunded(pi, 499, 250), "full": refunded(pi, 499, 499)}
        base = await money(env.platform)
        seen: list[str] = []
        for step in order:
            await env.deliver(events[step])
            replay = await env.deliver(events[step])
            assert replay == "duplicate"
            seen.append(step)
            if seen == ["buy", "r100", "r250"]:  # partial refunds keep the benefits
                sub = await sub_of(env.platform, chan, user)
                assert (sub.state, sub.cumulative_months) == ("active", 1)
                state = await money(env.platform)
                delta = {k: v - base["balances"].get(k, 0) for k, v in state["balances"].items()}
                assert {k: v for k, v in delta.items() if v} == expected_partial
                assert state["txns"] - base["txns"] == 3 and state["unbalanced"] == []
        sub = await sub_of(env.platform, chan, user)
        assert (sub.state, sub.cumulative_months) == ("refunded", 0)
        async with env.platform.db.session() as db:
            charge = (await db.execute(select(Charge).where(Charge.provider_ref == pi))).scalar_one()
            rows = (await db.execute(select(LedgerEntry.account, func.sum(LedgerEntry.amount)).join(
                LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id).where(
                LedgerTransaction.charge_id == charge.id).group_by(LedgerEntry.account))).all()
        finals.append({account: int(total) for account, total in rows if total})
        assert (charge.status, charge.amount_refunded) == ("refunded", 499)
    # whatever the order, each charge ends fully reversed: only the fee moved from revenue to refunds
    assert finals == [{"revenue:platform": -250, "refunds": 250}] * len(orders)
    assert (await money(env.platform))["unbalanced"] == []


async def test_partial_refund_bad_total_changes_nothing(env: Env) -> None:
    chan = await channel(env)
    _user, pi = await buy(env, chan, "viewer", "pm_card_visa")
    before = await money(env.platform)
    bad = evt("charge.refunded", {"id": "ch_x", "object": "charge", "payment_intent": pi, "amount": 499,
                                  "amount_refunded": "lots", "refunded": False})
    body = json.dumps(bad).encode()
    r = await env.http.post(URL, content=body, headers={"Stripe-Signature": sign(body, SECRET)})
    assert r.status_code == 400 and "amount_refunded" in r.json()["message"]
    assert await money(env.platform) == before
    assert await env.deliver(refunded(pi, 499, 0)) == "processed"  # nothing refunded yet: nothing booked
    assert await money(env.platform) == before
