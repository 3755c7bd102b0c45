"""The bus contract, run against the in-process bus and a real Redis alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from livecast.bus import Bus, create_bus, publish_event, split_logged
from tests.conftest import REDIS_URL


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    b = create_bus("memory://" if request.param == "memory" else REDIS_URL)
    await b.start()
    try:
        yield b
    finally:
        await b.close()


async def _collect(sub: object, n: int) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    async for item in sub:  # type: ignore[attr-defined]
        out.append(item)
        if len(out) == n:
            break
    return out


async def test_publish_subscribe_exact_and_prefix(bus: Bus) -> None:
    ns = uuid.uuid4().hex
    exact = await bus.subscribe(f"{ns}.room.a")
    prefix = await bus.subscribe(f"{ns}.room.*")
    await asyncio.sleep(0.05)
    await bus.publish(f"{ns}.room.a", b"one")
    await bus.publish(f"{ns}.room.b", b"two")
    await bus.publish(f"{ns}.other", b"never")
    got_exact = await asyncio.wait_for(_collect(exact, 1), 5)
    got_prefix = await asyncio.wait_for(_collect(prefix, 2), 5)
    assert got_exact == [(f"{ns}.room.a", b"one")]
    assert got_prefix == [(f"{ns}.room.a", b"one"), (f"{ns}.room.b", b"two")]
    await exact.close()
    await prefix.close()


async def test_domain_events_are_json(bus: Bus) -> None:
    sub = await bus.subscribe("event.stream.*")
    await asyncio.sleep(0.05)
    await publish_event(bus, "stream.online", {"id": "1", "type": "live"})
    [(channel, data)] = await asyncio.wait_for(_collect(sub, 1), 5)
    assert channel == "event.stream.online"
    assert data == b'{"id":"1","type":"live"}'
    await sub.close()


async def test_counters_and_keys(bus: Bus) -> None:
    key = "test:" + uuid.uuid4().hex
    assert await bus.incr(key, 1, ttl=10) == 1
    assert await bus.incr(key, 5, ttl=10) == 6
    assert await bus.get(key) == b"6"
    assert await bus.set(key + ":x", b"v", ttl=10, only_if_absent=True)
    assert not await bus.set(key + ":x", b"w", ttl=10, only_if_absent=True)
    assert await bus.get(key + ":x") == b"v"
    await bus.delete(key + ":x")
    assert await bus.get(key + ":x") is None
    assert await bus.set(key + ":ttl", b"v", ttl=0.2)
    await asyncio.sleep(0.4)
    assert await bus.get(key + ":ttl") is None


async def test_shared_maps(bus: Bus) -> None:
    key = "test:map:" + uuid.uuid4().hex
    assert await bus.hash_get_all(key) == {}
    await bus.hash_set(key, "node-a", b"1", ttl=10)
    await bus.hash_set(key, "node-b", b"2", ttl=10)
    await bus.hash_set(key, "node-a", b"3", ttl=10)
    assert await bus.hash_get_all(key) == {"node-a": b"3", "node-b": b"2"}
    await bus.hash_delete(key, "node-a")
    assert await bus.hash_get_all(key) == {"node-b": b"2"}
    await bus.hash_set(key, "node-c", b"x", ttl=0.2)  # the map expires as a whole
    await asyncio.sleep(0.4)
    assert await bus.hash_get_all(key) == {}


async def test_replay_log(bus: Bus) -> None:
    """publish_logged numbers, keeps the last ``keep`` and publishes framed; read_log reads back."""
    ns = uuid.uuid4().hex
    sub = await bus.subscribe(f"{ns}.s")
    await asyncio.sleep(0.05)
    seqs = [await bus.publish_logged(f"{ns}.s", f"{ns}:log", b"m%d\n" % i, keep=3, ttl=5) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    got = await asyncio.wait_for(_collect(sub, 5), 2)
    assert [split_logged(data) for _, data in got] == [(i + 1, b"m%d\n" % i) for i in range(5)]
    assert split_logged(b'{"x":1}') == (0, b'{"x":1}')
    assert await bus.read_log(f"{ns}:log", 0) == [(3, b"m2\n"), (4, b"m3\n"), (5, b"m4\n")]
    assert await bus.read_log(f"{ns}:log", 4) == [(5, b"m4\n")]
    assert await bus.read_log(f"{ns}:missing", 0) == []
    await bus.publish_logged(f"{ns}.s", f"{ns}:short", b"x", keep=3, ttl=0.05)
    await asyncio.sleep(0.2)
    assert await bus.read_log(f"{ns}:short", 0) == []
    await sub.close()


async def test_token_bucket(bus: Bus) -> None:
    key = "bucket:" + uuid.uuid4().hex
    results = [await bus.take_tokens(key, 1, 5, 5 / 60) for _ in range(7)]
    assert [r[0] for r in results] == [True] * 5 + [False] * 2
    assert results[4][1] == 0
    assert results[-1][2] > 0


async def test_token_bucket_is_shared_between_clients() -> None:
    """Two processes' buses share one Redis bucket (the Helix rate limit relies on it)."""
    a, b = create_bus(REDIS_URL), create_bus(REDIS_URL)
    await a.start()
    await b.start()
    key = "bucket:" + uuid.uuid4().hex
    try:
        taken = await asyncio.gather(*[(a if i % 2 else b).take_tokens(key, 1, 10, 0.001) for i in range(20)])
        assert sum(1 for ok, _, _ in taken if ok) == 10
    finally:
        await a.close()
        await b.close()
