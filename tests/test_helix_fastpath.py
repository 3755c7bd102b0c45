"""The pieces that made Helix reads cheaper keep their old results and their old robustness.

Byte-for-byte output (orjson bodies, cached timestamps and tag lists), the metrics middleware
still counting, and the pool's idle-only ping: a connection the database dropped is replaced
whether it sat idle (pinged) or was busy a moment ago (the read is retried).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from sqlalchemy import text

from livecast import metrics
from livecast.api.helix import reads, render
from livecast.api.helix.respond import dumps
from livecast.app import RequestMetrics
from livecast.store import db as store_db
from livecast.store.db import Database
from tests.conftest import PG_ADMIN_URL, create_pg_database, drop_pg_database


def _stdlib(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize("doc", [
    {"data": [{"id": "1", "login": "é\u2028</script>", "n": 2**63, "ok": True, "x": None, "tags": ["a", "b"]}],
     "pagination": {}},
    {"data": [], "total": 0, "pagination": {"cursor": "eyJ4IjoxfQ"}},
    [1.5, 0.1, 1e16, 1e22, -0.0, 123456789.123, 3.0e15],
    {1: "int keys", "nested": {"t": (1, 2)}},
    2**70,
])
def test_bodies_are_the_standard_librarys_bytes(doc: Any) -> None:
    assert dumps(doc) == _stdlib(doc)


def test_a_lone_surrogate_still_fails_as_before() -> None:
    with pytest.raises(UnicodeEncodeError):
        dumps({"message": "\ud800"})


def test_timestamps_match_strftime() -> None:
    rng = random.Random(5)
    zones = [dt.UTC, dt.timezone(dt.timedelta(hours=-7)), dt.timezone(dt.timedelta(hours=5, minutes=30))]
    for _ in range(5000):
        value = dt.datetime(rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
                            rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 999_999),
                            tzinfo=rng.choice(zones))
        for _ in range(2):  # computed, then remembered
            assert render.rfc3339(value) == value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert render.rfc3339(None) == ""


def test_tag_lists_are_decoded_once_and_copied() -> None:
    first = render.json_list('["speedrun", "English"]')
    first.append("mutated")
    assert render.json_list('["speedrun", "English"]') == ["speedrun", "English"]
    assert render.json_list(None) == [] and render.json_list("[]") == [] and render.json_list("null") == []


async def test_request_metrics_count_by_route_and_status() -> None:
    app = FastAPI()

    @app.get("/counted/{name}")
    async def counted(name: str) -> PlainTextResponse:
        return PlainTextResponse(name, status_code=201)

    app.add_middleware(RequestMetrics)
    child = metrics.http_requests.labels("/counted/{name}", "201")
    before = child._value.get()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for _ in range(3):
            assert (await client.get("/counted/x")).status_code == 201
    assert child._value.get() == before + 3


async def _terminate(pid: int) -> None:
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def test_dropped_connections_are_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    url = await create_pg_database()
    database = Database("postgresql+asyncpg://" + url.split("://", 1)[1])
    platform: Any = SimpleNamespace(db=database)
    pid_query = text("SELECT pg_backend_pid()")
    try:
        # Idle longer than the threshold: the checkout pings, finds it dead, reconnects.
        monkeypatch.setattr(store_db, "PING_IF_IDLE_S", 0.0)
        (pid,) = (await reads.rows(platform, pid_query))[0]
        await _terminate(pid)
        async with database.engine.connect() as conn:
            assert (await conn.execute(pid_query)).scalar_one() != pid
        # Busy a moment ago: no ping, the read fails once and is retried on a new connection.
        monkeypatch.setattr(store_db, "PING_IF_IDLE_S", 3600.0)
        (pid,) = (await reads.rows(platform, pid_query))[0]
        await _terminate(pid)
        (other,) = (await reads.rows(platform, pid_query))[0]
        assert other != pid
    finally:
        await database.close()
        await drop_pg_database(url)
