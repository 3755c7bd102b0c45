"""Redis bus: pub/sub for messages, plain keys and a Lua token bucket for shared counters,
Redis Streams with consumer groups for messages that must wait for their consumer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import redis.asyncio as aioredis

from livecast.bus import LOG_SEQ_TTL_S, STREAM_MAXLEN, StreamEntry, split_logged

log = logging.getLogger("livecast.bus")

_BUCKET = """
local key = KEYS[1]
local cost = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(state[1]) or cap
local ts = tonumber(state[2]) or now
tokens = math.min(cap, tokens + (now - ts) * rate)
local allowed = 0
if tokens >= cost then tokens = tokens - cost; allowed = 1 end
redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', key, math.ceil(cap / rate) + 1)
return {allowed, tostring(tokens)}
"""


# KEYS: log, sequence. ARGV: data, keep, log ttl (ms), sequence ttl (ms), channel.
_PUBLISH_LOGGED = """
local seq = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local framed = seq .. '\\n' .. ARGV[1]
redis.call('RPUSH', KEYS[1], framed)
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[5], framed)
return seq
"""


# KEYS: stream. ARGV: group, min idle (ms). Atomic, so a consumer that reads between the check
# and the delete cannot lose the entries it was just handed (DELCONSUMER drops its pending list).
_PRUNE_CONSUMERS = """
local list = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if type(list) ~= 'table' or list.err then return 0 end
local gone = 0
for _, c in ipairs(list) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if tonumber(info['pending']) == 0 and tonumber(info['idle']) >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    gone = gone + 1
  end
end
return gone
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entries(raw: Any) -> list[StreamEntry]:
    """``[(id, {b"c": channel, b"d": data}), ...]`` as entries; an entry deleted meanwhile
    (no fields) is skipped."""
    out: list[StreamEntry] = []
    for entry_id, fields in raw or ():
        if not fields:
            continue
        data = fields.get(b"d", b"")
        out.append(StreamEntry(_text(entry_id), _text(fields.get(b"c", b"")),
                               data.encode() if isinstance(data, str) else bytes(data)))
    return out


class _RedisSubscription:
    def __init__(self, pubsub: Any) -> None:
        self.pubsub = pubsub

    async def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]:
        while True:
            try:
                msg = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except (aioredis.ConnectionError, OSError) as exc:
                log.warning("redis subscription lost, resubscribing", extra={"kv": {"error": str(exc)}})
                await asyncio.sleep(0.5)  # redis-py reconnects and resubscribes on the next read
                continue
            except RuntimeError:
                return  # closed
            if msg is None:
                if not self.pubsub.subscribed:
                    return
                continue
            channel = msg["channel"]
            yield (channel.decode() if isinstance(channel, bytes) else channel), msg["data"]

    async def close(self) -> None:
        try:
            await self.pubsub.unsubscribe()
            await self.pubsub.punsubscribe()
            await self.pubsub.aclose()
        except Exception:
            pass


POOL_SIZE = 128  # connections per process, pub/sub subscriptions included
POOL_WAIT_S = 10.0


class RedisBus:
    def __init__(self, url: str, stream_maxlen: int = STREAM_MAXLEN) -> None:
        self.url = url
        # A blocking pool: redis-py's default pool (100 connections) raises "Too many
        # connections" the moment a burst needs one more, which turned a mass JOIN (600 clients
        # arriving at once, as after a raid) into "chat unavailable" for five of six of them.
        # Here a burst queues for a connection instead; only a wait past POOL_WAIT_S is an error.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=POOL_SIZE, timeout=POOL_WAIT_S, decode_responses=False, health_check_interval=10)
        self.redis = aioredis.Redis.from_pool(pool)  # closing the client closes the pool
        self.stream_maxlen = stream_maxlen
        self._bucket: Any = None
        self._logged: Any = None
        self._prune: Any = None

    async def start(self) -> None:
        await self.redis.ping()
        self._bucket = self.redis.register_script(_BUCKET)
        self._logged = self.redis.register_script(_PUBLISH_LOGGED)

    async def close(self) -> None:
        await self.redis.aclose()

    async def publish(self, channel: str, data: bytes) -> None:
        await self.redis.publish(channel, data)

    async def subscribe(self, *channels: str) -> _RedisSubscription:
        pubsub = self.redis.pubsub()
        exact = [c for c in channels if not c.endswith("*")]
        patterns = [c for c in channels if c.endswith("*")]
        if exact:
            await pubsub.subscribe(*exact)
        if patterns:
            await pubsub.psubscribe(*patterns)
        return _RedisSubscription(pubsub)

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incrby(key, amount)
            if ttl:
                pipe.expire(key, max(1, int(ttl)), nx=True)
            result = await pipe.execute()
        return int(result[0])

    async def get(self, key: str) -> bytes | None:
        value = await self.redis.get(key)
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)

    async def set(self, key: str, value: bytes, ttl: float | None = None, only_if_absent: bool = False) -> bool:
        px = int(ttl * 1000) if ttl else None
        return bool(await self.redis.set(key, value, px=px, nx=only_if_absent))

    async def delete(self, key: str) -> None:
        await self.redis.delete(key)

    async def take_tokens(self, key: str, cost: int, capacity: int, refill_per_s: float) -> tuple[bool, int, float]:
        if self._bucket is None:
            self._bucket = self.redis.register_script(_BUCKET)
        allowed, tokens = await self._bucket(keys=[key], args=[cost, capacity, refill_per_s])
        remaining = float(tokens)
        return bool(allowed), int(remaining), (capacity - remaining) / refill_per_s

    async def hll_add(self, key: str, member: str, ttl: float | None = None) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.pfadd(key, member)
            if ttl:
                pipe.expire(key, max(1, int(ttl)), nx=True)
            result = await pipe.execute()
        return bool(result[0])

    async def hll_count(self, *keys: str) -> int:
        if not keys:
            return 0
        return int(await self.redis.pfcount(*keys))

    async def hll_counts(self, groups: Sequence[Sequence[str]]) -> list[int]:
        if not groups:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys in groups:
                pipe.pfcount(*keys)
            return [int(n) for n in await pipe.execute()]

    async def hash_set(self, key: str, field: str, value: bytes, ttl: float | None = None) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, field, value)
            if ttl:
                pipe.pexpire(key, int(ttl * 1000))
            await pipe.execute()

    async def hash_get_all(self, key: str) -> dict[str, bytes]:
        raw = await self.redis.hgetall(key)
        return {
            (k.decode() if isinstance(k, bytes) else k): (v.encode() if isinstance(v, str) else bytes(v))
            for k, v in raw.items()
        }

    async def hash_delete(self, key: str, field: str) -> None:
        await self.redis.hdel(key, field)

    async def publish_logged(self, channel: str, key: str, data: bytes, keep: int, ttl: float) -> int:
        """One script, so numbering, appending and publishing happen in one order for all callers."""
        if self._logged is None:
            self._logged = self.redis.register_script(_PUBLISH_LOGGED)
        seq = await self._logged(keys=[key, key + ":seq"],
                                 args=[data, keep, max(1, int(ttl * 1000)), int(LOG_SEQ_TTL_S * 1000), channel])
        return int(seq)

    async def read_log(self, key: str, after: int) -> list[tuple[int, bytes]]:
        raw: list[bytes | str] = await self.redis.lrange(key, 0, -1)
        entries = [split_logged(item.encode() if isinstance(item, str) else bytes(item)) for item in raw]
        return [(seq, data) for seq, data in entries if seq > after]

    async def stream_add(self, key: str, channel: str, data: bytes, *, maxlen: int | None = None,
                         publish: bool = False) -> str:
        """XADD with an approximate MAXLEN (Redis trims whole nodes: cheap, and at least
        ``maxlen`` entries stay), plus the PUBLISH in the same pipeline: one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"c": channel, "d": data}, maxlen=maxlen or self.stream_maxlen, approximate=True)
            if publish:
                pipe.publish(channel, data)
            result = await pipe.execute()
        return _text(result[0])

    async def _create_group(self, key: str, group: str) -> None:
        try:
            await self.redis.xgroup_create(key, group, id="0", mkstream=True)
        except aioredis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def stream_read_group(self, key: str, group: str, consumer: str, count: int,
                                block: float) -> list[StreamEntry]:
        wait_ms = int(block * 1000) if block > 0 else None  # BLOCK 0 would wait for ever
        for _ in range(2):
            try:
                raw = await self.redis.xreadgroup(group, consumer, {key: ">"}, count=count, block=wait_ms)
            except aioredis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._create_group(key, group)  # the first reader ever, or the key was deleted
                continue
            if isinstance(raw, dict):  # RESP3
                return _entries(next(iter(raw.values()), [[]])[0]) if raw else []
            return _entries(raw[0][1]) if raw else []
        return []

    async def stream_ack(self, key: str, group: str, ids: Sequence[str]) -> None:
        if ids:
            await self.redis.xack(key, group, *ids)

    async def stream_claim(self, key: str, group: str, consumer: str, min_idle: float,
                           count: int) -> list[StreamEntry]:
        """XAUTOCLAIM from the start of the pending list until ``count`` or its end (Redis 7
        drops pending ids whose entries were trimmed, and reports them apart)."""
        claimed: list[StreamEntry] = []
        cursor: bytes | str = "0-0"
        while len(claimed) < count:
            try:
                reply = await self.redis.xautoclaim(key, group, consumer, int(min_idle * 1000),
                                                    start_id=cursor, count=count - len(claimed))
            except aioredis.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    return claimed
                raise
            cursor = reply[0]
            claimed.extend(_entries(reply[1]))
            if _text(cursor) == "0-0":
                break
        return claimed

    async def stream_prune_consumers(self, key: str, group: str, min_idle: float) -> int:
        if self._prune is None:
            self._prune = self.redis.register_script(_PRUNE_CONSUMERS)
        return int(await self._prune(keys=[key], args=[group, int(min_idle * 1000)]))
