"""The bus contract, run against the in-process bus and a real Redis alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from livecast.bus import EVENT_STREAM, Bus, create_bus, publish_event, split_logged
from livecast.bus.memory import MemoryBus
from livecast.bus.redis import RedisBus
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


async def _drop_stream(bus: Bus, key: str) -> None:
    await bus.delete(key)  # Redis keeps streams for good; db 15 is shared by every test run


async def test_stream_group_waits_for_its_consumer(bus: Bus) -> None:
    """Entries appended before any consumer ever read are handed out, in order, once each;
    acknowledged ones are never handed out again."""
    key = "test:stream:" + uuid.uuid4().hex
    try:
        ids = [await bus.stream_add(key, f"ch.{i}", b"m%d" % i) for i in range(5)]
        assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-")))) and len(set(ids)) == 5
        first = await bus.stream_read_group(key, "g", "c1", count=3, block=0.1)
        assert [(e.id, e.channel, e.data) for e in first] == [(ids[i], f"ch.{i}", b"m%d" % i) for i in range(3)]
        second = await bus.stream_read_group(key, "g", "c2", count=10, block=0.1)
        assert [e.data for e in second] == [b"m3", b"m4"]
        assert await bus.stream_read_group(key, "g", "c1", count=10, block=0.1) == []
        other = await bus.stream_read_group(key, "other", "c1", count=10, block=0.1)  # groups are independent
        assert len(other) == 5
        await bus.stream_ack(key, "g", [e.id for e in first + second])
        assert await bus.stream_claim(key, "g", "c3", min_idle=0, count=10) == []
    finally:
        await _drop_stream(bus, key)


async def test_stream_read_blocks_until_an_append(bus: Bus) -> None:
    key = "test:stream:" + uuid.uuid4().hex
    try:
        assert await bus.stream_read_group(key, "g", "c", count=10, block=0.05) == []  # creates the group
        reader = asyncio.create_task(bus.stream_read_group(key, "g", "c", count=10, block=5))
        await asyncio.sleep(0.1)
        assert not reader.done()
        entry_id = await bus.stream_add(key, "ch", b"late")
        got = await asyncio.wait_for(reader, 5)
        assert [(e.id, e.data) for e in got] == [(entry_id, b"late")]
    finally:
        await _drop_stream(bus, key)


async def test_stream_claim_takes_over_a_dead_consumers_entries(bus: Bus) -> None:
    """What a consumer read and never acknowledged goes to another once it has been idle long
    enough, oldest first; an entry trimmed away meanwhile is forgotten, not handed out."""
    key = "test:stream:" + uuid.uuid4().hex
    try:
        for i in range(3):
            await bus.stream_add(key, "ch", b"m%d" % i)
        dead = await bus.stream_read_group(key, "g", "dead", count=10, block=0.1)
        assert len(dead) == 3
        assert await bus.stream_claim(key, "g", "new", min_idle=5, count=10) == []  # not idle long enough
        await asyncio.sleep(0.15)
        claimed = await bus.stream_claim(key, "g", "new", min_idle=0.1, count=2)
        assert [e.data for e in claimed] == [b"m0", b"m1"]
        assert await bus.stream_claim(key, "g", "other", min_idle=0.1, count=10) == [dead[2]]
        # claiming restarts the idle time: "new" holds m0 and m1 now
        assert await bus.stream_claim(key, "g", "other", min_idle=0.1, count=10) == []
        await bus.stream_ack(key, "g", [claimed[0].id])
        await asyncio.sleep(0.15)
        assert [e.data for e in await bus.stream_claim(key, "g", "third", min_idle=0.1, count=10)] == [b"m1", b"m2"]
        assert await bus.stream_prune_consumers(key, "g", min_idle=0) >= 2  # "dead", "new", "other": nothing pending
        assert await bus.stream_prune_consumers(key, "g", min_idle=0) == 0  # "third" holds two entries
    finally:
        await _drop_stream(bus, key)


async def test_stream_is_capped(bus: Bus) -> None:
    key = "test:stream:" + uuid.uuid4().hex
    try:
        for i in range(3000):
            await bus.stream_add(key, "ch", b"%d" % i, maxlen=1000)
        entries = await bus.stream_read_group(key, "g", "c", count=5000, block=0.1)
        assert 1000 <= len(entries) < 3000  # Redis trims whole nodes: about maxlen, never fewer
        assert entries[-1].data == b"2999"
    finally:
        await _drop_stream(bus, key)


async def _newest(bus: Bus, key: str, n: int) -> list[tuple[str, bytes]]:
    """The stream's last ``n`` entries, read past the consumer groups (a group on the shared
    event stream would outlive the test, and start at its beginning)."""
    if isinstance(bus, MemoryBus):
        return [(e.channel, e.data) for e in list(bus.streams[key].entries)[-n:]]
    assert isinstance(bus, RedisBus)
    raw = await bus.redis.xrevrange(key, count=n)
    return [(f[b"c"].decode(), f[b"d"]) for _id, f in reversed(raw)]


async def test_events_go_to_the_stream_and_live_subscribers(bus: Bus) -> None:
    """publish_event appends to the event stream and publishes on the event's channel."""
    sub = await bus.subscribe("event.test.*")
    await asyncio.sleep(0.05)
    marker = uuid.uuid4().hex
    await publish_event(bus, "test.thing", {"id": marker})
    [(channel, data)] = await asyncio.wait_for(_collect(sub, 1), 5)
    assert channel == "event.test.thing" and data == b'{"id":"%s"}' % marker.encode()
    assert (channel, data) in await _newest(bus, EVENT_STREAM, 50)
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


async def test_a_burst_larger_than_the_pool_queues_instead_of_failing(bus: Bus) -> None:
    """600 clients joining at once (a raid) each take a rate-limit token: with redis-py's default
    pool of 100 that raised "Too many connections" for most of them; now they wait their turn."""
    key = f"test:burst:{uuid.uuid4().hex}"
    results = await asyncio.gather(*(bus.take_tokens(f"{key}:{i}", 1, 20, 2.0) for i in range(600)))
    assert all(allowed for allowed, _, _ in results)
    await bus.publish("test.burst", b"still serving")  # and the pool is intact afterwards
