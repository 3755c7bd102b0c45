"""In-process bus: queues per subscriber, for the single-process default."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from livecast.bus import LOG_SEQ_TTL_S, STREAM_MAXLEN, StreamEntry, logged_frame
from livecast.waits import until_set


class _MemorySubscription:
    def __init__(self, bus: MemoryBus, channels: tuple[str, ...]) -> None:
        self.bus = bus
        self.channels = channels
        self.queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(maxsize=100_000)

    def matches(self, channel: str) -> bool:
        for pattern in self.channels:
            if pattern.endswith("*"):
                if channel.startswith(pattern[:-1]):
                    return True
            elif pattern == channel:
                return True
        return False

    async def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            yield item

    async def close(self) -> None:
        if self in self.bus.subs:
            self.bus.subs.remove(self)
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            pass


_Members = set[str]


@dataclass
class _Group:
    next: int  # the position (see _Stream.base) of the first entry not handed out yet
    pending: dict[str, tuple[str, float, int]] = field(default_factory=dict)  # id -> (consumer, at, position)
    consumers: dict[str, float] = field(default_factory=dict)  # name -> last read (monotonic)


@dataclass
class _Stream:
    entries: deque[StreamEntry] = field(default_factory=deque)
    base: int = 0  # the position of entries[0] since the stream began: groups index by position
    last: tuple[int, int] = (0, 0)  # the newest id, as (ms, seq)
    groups: dict[str, _Group] = field(default_factory=dict)
    appended: asyncio.Event = field(default_factory=asyncio.Event)  # replaced after each wake-up


class MemoryBus:
    def __init__(self, stream_maxlen: int = STREAM_MAXLEN) -> None:
        self.subs: list[_MemorySubscription] = []
        self.kv: dict[str, tuple[bytes, float | None]] = {}
        self.buckets: dict[str, tuple[float, float]] = {}
        self.sets: dict[str, tuple[_Members, float | None]] = {}
        self.maps: dict[str, tuple[dict[str, bytes], float | None]] = {}
        self.logs: dict[str, tuple[deque[tuple[int, bytes]], float]] = {}
        self.log_seqs: dict[str, tuple[int, float]] = {}
        self.streams: dict[str, _Stream] = {}
        self.stream_maxlen = stream_maxlen
        self._next_sweep = 0.0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for sub in list(self.subs):
            await sub.close()

    async def publish(self, channel: str, data: bytes) -> None:
        for sub in self.subs:
            if sub.matches(channel):
                try:
                    sub.queue.put_nowait((channel, data))
                except asyncio.QueueFull:
                    pass  # a subscriber this far behind is broken; dropping beats unbounded memory

    async def subscribe(self, *channels: str) -> _MemorySubscription:
        sub = _MemorySubscription(self, channels)
        self.subs.append(sub)
        return sub

    def _live(self, key: str) -> tuple[bytes, float | None] | None:
        item = self.kv.get(key)
        if item is None:
            return None
        if item[1] is not None and item[1] <= time.monotonic():
            del self.kv[key]
            return None
        return item

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        item = self._live(key)
        if item is None:
            value, expiry = 0, (time.monotonic() + ttl if ttl else None)
        else:
            value, expiry = int(item[0]), item[1]
        value += amount
        self.kv[key] = (str(value).encode(), expiry)
        return value

    async def get(self, key: str) -> bytes | None:
        item = self._live(key)
        return item[0] if item else None

    async def set(self, key: str, value: bytes, ttl: float | None = None, only_if_absent: bool = False) -> bool:
        if only_if_absent and self._live(key) is not None:
            return False
        self.kv[key] = (value, time.monotonic() + ttl if ttl else None)
        return True

    async def delete(self, key: str) -> None:
        self.kv.pop(key, None)

    async def take_tokens(self, key: str, cost: int, capacity: int, refill_per_s: float) -> tuple[bool, int, float]:
        now = time.monotonic()
        tokens, last = self.buckets.get(key, (float(capacity), now))
        tokens = min(float(capacity), tokens + (now - last) * refill_per_s)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self.buckets[key] = (tokens, now)
        return allowed, int(tokens), (capacity - tokens) / refill_per_s

    def _live_set(self, key: str) -> _Members | None:
        item = self.sets.get(key)
        if item is None:
            return None
        if item[1] is not None and item[1] <= time.monotonic():
            del self.sets[key]
            return None
        return item[0]

    async def hll_add(self, key: str, member: str, ttl: float | None = None) -> bool:
        # Exact sets: one process never holds enough viewers for an estimate to pay off.
        now = time.monotonic()
        if now >= self._next_sweep:  # per-minute keys are never read again once they expire
            self._next_sweep = now + 60
            for old in [k for k, (_, exp) in self.sets.items() if exp is not None and exp <= now]:
                del self.sets[old]
        members = self._live_set(key)
        if members is None:
            members = _Members()
            self.sets[key] = (members, time.monotonic() + ttl if ttl else None)
        if member in members:
            return False
        members.add(member)
        return True

    async def hll_count(self, *keys: str) -> int:
        union: _Members = _Members()
        for key in keys:
            union |= self._live_set(key) or _Members()
        return len(union)

    async def hll_counts(self, groups: Sequence[Sequence[str]]) -> list[int]:
        return [await self.hll_count(*keys) for keys in groups]

    def _live_map(self, key: str) -> dict[str, bytes] | None:
        item = self.maps.get(key)
        if item is None:
            return None
        if item[1] is not None and item[1] <= time.monotonic():
            del self.maps[key]
            return None
        return item[0]

    async def hash_set(self, key: str, field: str, value: bytes, ttl: float | None = None) -> None:
        fields = self._live_map(key)
        if fields is None:
            fields = {}
        fields[field] = value
        expiry = time.monotonic() + ttl if ttl else (self.maps[key][1] if key in self.maps else None)
        self.maps[key] = (fields, expiry)

    async def hash_get_all(self, key: str) -> dict[str, bytes]:
        return dict(self._live_map(key) or {})

    async def hash_delete(self, key: str, field: str) -> None:
        fields = self._live_map(key)
        if fields is not None:
            fields.pop(field, None)
            if not fields:
                del self.maps[key]

    async def publish_logged(self, channel: str, key: str, data: bytes, keep: int, ttl: float) -> int:
        now = time.monotonic()
        last, seq_expiry = self.log_seqs.get(key, (0, now))
        seq = (last if seq_expiry > now else 0) + 1
        self.log_seqs[key] = (seq, now + LOG_SEQ_TTL_S)
        entries = self._live_log(key)
        if entries is None:
            entries = deque(maxlen=keep)
        entries.append((seq, data))
        self.logs[key] = (entries, now + ttl)
        await self.publish(channel, logged_frame(seq, data))
        return seq

    def _live_log(self, key: str) -> deque[tuple[int, bytes]] | None:
        item = self.logs.get(key)
        if item is None:
            return None
        if item[1] <= time.monotonic():
            del self.logs[key]
            return None
        return item[0]

    async def read_log(self, key: str, after: int) -> list[tuple[int, bytes]]:
        return [(seq, data) for seq, data in self._live_log(key) or () if seq > after]

    # Streams: the same ids, group and pending-entry rules as Redis Streams, trimmed exactly.

    async def stream_add(self, key: str, channel: str, data: bytes, *, maxlen: int | None = None,
                         publish: bool = False) -> str:
        stream = self.streams.setdefault(key, _Stream())
        ms = int(time.time() * 1000)
        stream.last = (ms, 0) if ms > stream.last[0] else (stream.last[0], stream.last[1] + 1)
        entry = StreamEntry(f"{stream.last[0]}-{stream.last[1]}", channel, data)
        stream.entries.append(entry)
        while len(stream.entries) > (maxlen or self.stream_maxlen):
            stream.entries.popleft()
            stream.base += 1
        stream.appended.set()
        stream.appended = asyncio.Event()
        if publish:
            await self.publish(channel, data)
        return entry.id

    async def stream_read_group(self, key: str, group: str, consumer: str, count: int,
                                block: float) -> list[StreamEntry]:
        stream = self.streams.setdefault(key, _Stream())
        state = stream.groups.setdefault(group, _Group(next=stream.base))
        deadline = time.monotonic() + block
        while True:
            now = time.monotonic()
            state.consumers[consumer] = now
            first = max(state.next, stream.base)
            stop = min(first + count, stream.base + len(stream.entries))
            if stop > first:
                fresh = [stream.entries[pos - stream.base] for pos in range(first, stop)]
                for pos, entry in zip(range(first, stop), fresh, strict=True):
                    state.pending[entry.id] = (consumer, now, pos)
                state.next = stop
                return fresh
            if deadline <= now:
                return []
            if not await until_set(stream.appended, deadline - now):
                return []

    async def stream_ack(self, key: str, group: str, ids: Sequence[str]) -> None:
        stream = self.streams.get(key)
        state = stream.groups.get(group) if stream is not None else None
        if stream is None or state is None:
            return
        for entry_id in ids:
            state.pending.pop(entry_id, None)
        # Unlike Redis, drop what every group is done with: in one process no reader could come
        # later, and a chat-heavy process would otherwise hold its whole cap of old events.
        done = min(g.next for g in stream.groups.values())
        for other in stream.groups.values():
            if other.pending:
                done = min(done, min(pos for _c, _at, pos in other.pending.values()))
        while stream.entries and stream.base < done:
            stream.entries.popleft()
            stream.base += 1

    async def stream_claim(self, key: str, group: str, consumer: str, min_idle: float,
                           count: int) -> list[StreamEntry]:
        stream = self.streams.get(key)
        state = stream.groups.get(group) if stream is not None else None
        if stream is None or state is None:
            return []
        now = time.monotonic()
        state.consumers.setdefault(consumer, now)
        claimed: list[StreamEntry] = []
        for entry_id, (_owner, at, pos) in sorted(state.pending.items(), key=lambda item: item[1][2]):
            if len(claimed) >= count:
                break
            if now - at < min_idle:
                continue
            if pos < stream.base:
                del state.pending[entry_id]  # trimmed while pending: nothing left to hand out
                continue
            state.pending[entry_id] = (consumer, now, pos)
            claimed.append(stream.entries[pos - stream.base])
        return claimed

    async def stream_prune_consumers(self, key: str, group: str, min_idle: float) -> int:
        stream = self.streams.get(key)
        state = stream.groups.get(group) if stream is not None else None
        if state is None:
            return 0
        now = time.monotonic()
        busy = {owner for owner, _at, _pos in state.pending.values()}
        gone = [name for name, seen in state.consumers.items() if name not in busy and now - seen >= min_idle]
        for name in gone:
            del state.consumers[name]
        return len(gone)
