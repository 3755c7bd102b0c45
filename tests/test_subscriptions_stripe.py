"""Stripe: signatures, Checkout Sessions, and webhooks that land exactly once whatever happens."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from livecast.app import create_app
from livecast.bus.memory import MemoryBus
from livecast.config import load_settings
from livecast.identity import service as identity
from livecast.platform import Platform
from livecast.storage import create_store
from livecast.store.db import Database
from livecast.subscriptions import ledger
from livecast.subscriptions.models import Charge, LedgerEntry, LedgerTransaction, ProviderEvent, Subscription
from livecast.subscriptions.providers.base import CheckoutRequest
from livecast.subscriptions.providers.stripe import SignatureError, StripeProvider, sign, verify
from tests.conftest import create_pg_database, drop_pg_database, start_server

SECRET = "whsec_test_secret"
URL = "/subscriptions/webhooks/stripe"


# Signatures ------------------------------------------------------------------------------------

def test_signature_scheme() -> None:
    body = b'{"id":"evt_1"}'
    header = sign(body, SECRET, 1_700_000_000)
    verify(body, header, SECRET, now=1_700_000_100)
    verify(body, f"t=1700000000,v1={'0' * 64},{header.split(',')[1]}", SECRET, now=1_700_000_000)  # any v1 may match
    bad = [
        (body, sign(body, "whsec_other", 1_700_000_000), 1_700_000_000),  # forged with another secret
        (b'{"id":"evt_2"}', header, 1_700_000_000),  # body changed
        (body, header, 1_700_000_301),  # too old: a replay
        (body, header.split(",")[1], 1_700_000_000),  # no timestamp
        (body, "t=abc,v1=00", 1_700_000_000),
        (body, "", 1_700_000_000),
    ]
    for payload, value, now in bad:
        with pytest.raises(SignatureError):
            verify(payload, value, SECRET, now=now)
    with pytest.raises(SignatureError):
        verify(body, header, "", now=1_700_000_000)


async def test_checkout_session_request_shape() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "cs_test_1", "url": "https://checkout.stripe.com/c/pay/cs_test_1"})

    provider = StripeProvider("sk_test_123", transport=httpx.MockTransport(handler))
    result = await provider.start_checkout(CheckoutRequest(
        kind="gift", channel_id="111", payer_id="222", tier="2000", unit_amount=999, currency="USD",
        recipient_id="333", success_url="http://x/ok", cancel_url="http://x/no", idempotency_key="idem-1"))
    assert (result.completed, result.url, result.session_id) == (False, "https://checkout.stripe.com/c/pay/cs_test_1",
                                                                  "cs_test_1")
    (request,) = seen
    assert request.method == "POST" and request.url.path == "/v1/checkout/sessions"
    assert request.headers["authorization"] == "Bearer sk_test_123"
    assert request.headers["idempotency-key"] == "idem-1"
    form = dict(httpx.QueryParams(request.content.decode()))
    assert form["mode"] == "payment"
    assert form["line_items[0][price_data][unit_amount]"] == "999"
    assert form["line_items[0][price_data][currency]"] == "usd"
    assert form["line_items[0][quantity]"] == "1"
    assert form["metadata[livecast_kind]"] == "gift" and form["metadata[recipient_id]"] == "333"
    assert form["payment_intent_data[metadata][tier]"] == "2000"

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "No such price"}})

    with pytest.raises(RuntimeError, match="No such price"):
        await StripeProvider("sk", transport=httpx.MockTransport(refuse)).start_checkout(CheckoutRequest(
            kind="subscribe", channel_id="1", payer_id="2", tier="1000", unit_amount=499, currency="USD"))


# Webhooks through the app ----------------------------------------------------------------------

def checkout_event(event_id: str, pi: str, meta: dict[str, str], amount: int, currency: str = "usd") -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": "checkout.session.completed", "data": {"object": {
        "id": "cs_" + pi, "object": "checkout.session", "payment_intent": pi, "payment_status": "paid",
        "amount_total": amount, "currency": currency, "metadata": meta, "mode": "payment"}}}


def refund_event(event_id: str, pi: str, amount: int) -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": "charge.refunded", "data": {"object": {
        "id": "ch_" + pi, "object": "charge", "payment_intent": pi, "amount": amount, "amount_refunded": amount,
        "refunded": True}}}


def dispute_event(event_id: str, pi: str, amount: int) -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": "charge.dispute.created", "data": {"object": {
        "id": "dp_" + pi, "object": "dispute", "charge": "ch_" + pi, "payment_intent": pi, "amount": amount}}}


def meta(kind: str, channel: str, payer: str, tier: str = "1000", **extra: str) -> dict[str, str]:
    return {"livecast_kind": kind, "channel_id": channel, "payer_id": payer, "tier": tier,
            "quantity": extra.pop("quantity", "1"), "recipient_id": extra.pop("recipient_id", ""),
            "anonymous": "0", **extra}


class Client:
    def __init__(self, http: httpx.AsyncClient, secret: str = SECRET) -> None:
        self.http = http
        self.secret = secret

    async def deliver(self, event: dict[str, Any], secret: str | None = None) -> httpx.Response:
        body = json.dumps(event).encode()
        return await self.http.post(URL, content=body, headers={
            "Stripe-Signature": sign(body, secret or self.secret, int(time.time())),
            "Content-Type": "application/json"})


@pytest.fixture
async def app_platform(database: Database, tmp_path: Path) -> AsyncIterator[tuple[Platform, Client]]:
    settings = load_settings({}, data_dir=str(tmp_path), stripe_webhook_secret=SECRET)
    bus = MemoryBus()
    await bus.start()
    platform = Platform(settings=settings, db=database, bus=bus, storage=create_store(f"file://{tmp_path}/s"))
    app = create_app(platform)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield platform, Client(http)
    await bus.close()


async def users(platform: Platform, *logins: str) -> dict[str, str]:
    out = {}
    async with platform.db.session() as db:
        for login in logins:
            user, _ = await identity.create_user(db, login)
            out[login] = user.id
    return out


async def snapshot(platform: Platform) -> dict[str, Any]:
    async with platform.db.session() as db:
        def count(model: Any) -> Any:
            return select(func.count()).select_from(model)
        return {
            "subs": [(s.user_id, s.state, s.cumulative_months) for s in
                     (await db.execute(select(Subscription).order_by(Subscription.user_id))).scalars()],
            "charges": (await db.execute(count(Charge))).scalar(),
            "txns": (await db.execute(count(LedgerTransaction))).scalar(),
            "entries": (await db.execute(count(LedgerEntry))).scalar(),
            "balances": await ledger.balances(db),
            "unbalanced": await ledger.unbalanced_transactions(db),
        }


async def test_webhook_replays_duplicates_and_out_of_order(app_platform: tuple[Platform, Client]) -> None:
    platform, client = app_platform
    ids = await users(platform, "chan", "buyer", "late")
    first = checkout_event("evt_1", "pi_1", meta("subscribe", ids["chan"], ids["buyer"]), 499)
    r = await client.deliver(first)
    assert r.status_code == 200 and r.json() == {"received": True, "status": "processed"}
    after_first = await snapshot(platform)
    assert after_first["subs"] == [(ids["buyer"], "active", 1)] and after_first["charges"] == 1
    assert after_first["txns"] == 1 and after_first["entries"] == 3
    assert (await client.deliver(first)).json()["status"] == "duplicate"  # replay
    again = checkout_event("evt_1b", "pi_1", meta("subscribe", ids["chan"], ids["buyer"]), 499)
    assert (await client.deliver(again)).json()["status"] == "processed"  # another event, same payment
    assert await snapshot(platform) == after_first

    # out of order: the refund arrives before the checkout it refunds
    assert (await client.deliver(refund_event("evt_r2", "pi_2", 499))).json()["status"] == "deferred"
    assert (await snapshot(platform))["txns"] == 1
    late = checkout_event("evt_2", "pi_2", meta("subscribe", ids["chan"], ids["late"]), 499)
    assert (await client.deliver(late)).json()["status"] == "processed"
    state = await snapshot(platform)
    assert (ids["late"], "refunded", 0) in state["subs"]
    assert state["txns"] == 3 and state["unbalanced"] == []
    assert state["balances"][("cash:stripe", "USD")] == 499
    assert (await client.deliver(refund_event("evt_r2", "pi_2", 499))).json()["status"] == "duplicate"
    assert (await client.deliver(refund_event("evt_r2b", "pi_2", 499))).json()["status"] == "processed"
    assert (await client.deliver(dispute_event("evt_d1", "pi_1", 499))).json()["status"] == "processed"
    final = await snapshot(platform)
    assert final["txns"] == 4 and final["unbalanced"] == []
    assert (ids["buyer"], "charged_back", 0) in final["subs"]
    assert final["balances"][("cash:stripe", "USD")] == 0
    async with platform.db.session() as db:
        statuses = dict((await db.execute(select(ProviderEvent.event_id, ProviderEvent.status))).all())
    assert statuses["evt_r2"] == "processed"  # applied when its checkout arrived


async def test_webhook_bad_input_changes_nothing(app_platform: tuple[Platform, Client]) -> None:
    platform, client = app_platform
    ids = await users(platform, "chan", "buyer", "victim")
    from livecast.chat.models import ChatBan

    async with platform.db.session() as db:
        db.add(ChatBan(channel_id=ids["chan"], user_id=ids["victim"]))
    before = await snapshot(platform)
    good = checkout_event("evt_ok", "pi_ok", meta("subscribe", ids["chan"], ids["buyer"]), 499)
    r = await client.deliver(good, secret="whsec_forged")
    assert r.status_code == 400 and "signature" in r.json()["message"]
    body = json.dumps(good).encode()
    r = await client.http.post(URL, content=body)  # no signature at all
    assert r.status_code == 400
    cases = [
        (checkout_event("evt_p", "pi_p", meta("subscribe", ids["chan"], ids["buyer"], "4000"), 499), "tier"),
        (checkout_event("evt_a", "pi_a", meta("subscribe", ids["chan"], ids["buyer"]), 1), "costs"),
        (checkout_event("evt_c", "pi_c", meta("subscribe", ids["chan"], ids["buyer"]), 499, "eur"), "EUR"),
        (checkout_event("evt_g", "pi_g", meta("gift", ids["chan"], ids["buyer"], recipient_id="424242424242"),
                        499), "recipient"),
        (checkout_event("evt_b", "pi_b", meta("gift", ids["chan"], ids["buyer"], recipient_id=ids["victim"]),
                        499), "banned"),
        (checkout_event("evt_k", "pi_k", {"tier": "1000"}, 499), "kind"),
    ]
    for event, word in cases:
        r = await client.deliver(event)
        assert r.status_code == 400, (event["id"], r.text)
        doc = r.json()
        assert doc["status"] == 400 and word in doc["message"], doc
    r = await client.http.post(URL, content=b"not json", headers={"Stripe-Signature": sign(b"not json", SECRET)})
    assert r.status_code == 400
    after = await snapshot(platform)
    assert after == before
    async with platform.db.session() as db:
        assert (await db.execute(select(func.count()).select_from(ProviderEvent))).scalar() == 0
    # the same event id, once fixed upstream, is processed (a refused delivery recorded nothing)
    fixed = checkout_event("evt_p", "pi_p", meta("subscribe", ids["chan"], ids["buyer"]), 499)
    assert (await client.deliver(fixed)).json()["status"] == "processed"


# Real concurrency through the HTTP server ------------------------------------------------------

@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
async def test_50_concurrent_deliveries_land_once(tmp_path: Path, backend: str) -> None:
    url = await create_pg_database() if backend == "postgres" else None
    srv = await start_server(tmp_path, stripe_webhook_secret=SECRET,
                             **({"database_url": url} if url else {}))
    try:
        platform = srv.platform
        ids = await users(platform, "chan", "buyer", "other")
        async with httpx.AsyncClient(base_url=srv.http_url, timeout=60,
                                     limits=httpx.Limits(max_connections=60)) as http:
            client = Client(http)
            event = checkout_event("evt_" + uuid.uuid4().hex, "pi_same", meta("subscribe", ids["chan"], ids["buyer"]),
                                   499)
            responses = await asyncio.gather(*(client.deliver(event) for _ in range(50)))
            assert [r.status_code for r in responses] == [200] * 50
            statuses = sorted(r.json()["status"] for r in responses)
            assert statuses == ["duplicate"] * 49 + ["processed"]
            # a checkout and its refund racing each other, each delivered 10 times at once
            buy = checkout_event("evt_buy2", "pi_race", meta("subscribe", ids["chan"], ids["other"]), 499)
            refund = refund_event("evt_ref2", "pi_race", 499)
            mixed = [client.deliver(buy if i % 2 else refund) for i in range(20)]
            results = await asyncio.gather(*mixed)
            assert all(r.status_code == 200 for r in results)
        state = await snapshot(platform)
        assert state["subs"] == sorted([(ids["buyer"], "active", 1), (ids["other"], "refunded", 0)])
        assert state["charges"] == 2 and state["txns"] == 3 and state["entries"] == 9
        assert state["unbalanced"] == []
        assert state["balances"][("cash:stripe", "USD")] == 499
    finally:
        await srv.runner.stop()
        if url:
            await drop_pg_database(url)


async def test_two_payments_for_one_viewer_racing(app_platform: tuple[Platform, Client]) -> None:
    platform, client = app_platform
    ids = await users(platform, "chan", "twice")
    events = [checkout_event(f"evt_race_{i}", f"pi_race_{i}", meta("subscribe", ids["chan"], ids["twice"]), 499)
              for i in range(6)]
    responses = await asyncio.gather(*(client.deliver(e) for e in events))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * 5, [r.text for r in responses]
    assert all("already subscribed" in r.json()["message"] for r in responses if r.status_code == 409)
    state = await snapshot(platform)
    assert state["subs"] == [(ids["twice"], "active", 1)] and state["charges"] == 1 and state["txns"] == 1
