"""The message bus: ``publish``/``subscribe`` plus the few shared counters processes need.

``memory://`` keeps everything in this process (the default, one process); ``redis://``
shares it between processes and nodes. Both pass the same tests (tests/test_bus.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol


class Subscription(Protocol):
    def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]: ...

    async def close(self) -> None: ...


class Bus(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, channel: str, data: bytes) -> None: ...

    async def subscribe(self, *channels: str) -> Subscription:
        """Subscribe to exact channel names; a name ending in ``*`` is a prefix pattern."""
        ...

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Atomically add to a shared integer; ``ttl`` (seconds) is set when the key is created."""
        ...

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float | None = None, only_if_absent: bool = False) -> bool: ...

    async def delete(self, key: str) -> None: ...

    async def take_tokens(self, key: str, cost: int, capacity: int, refill_per_s: float) -> tuple[bool, int, float]:
        """Token bucket: take ``cost`` tokens; returns (allowed, remaining, seconds until full)."""
        ...

    async def hll_add(self, key: str, member: str, ttl: float | None = None) -> bool:
        """Add to a shared distinct-count set (Redis HyperLogLog); True if the estimate changed.

        ``ttl`` (seconds) is set when the key is created, so per-minute sets expire on their own.
        """
        ...

    async def hll_count(self, *keys: str) -> int:
        """Distinct members across the union of ``keys`` (missing keys count as empty)."""
        ...

    async def hll_counts(self, groups: Sequence[Sequence[str]]) -> list[int]:
        """:meth:`hll_count` for many unions at once (one round trip on Redis)."""
        ...

    async def hash_set(self, key: str, field: str, value: bytes, ttl: float | None = None) -> None:
        """Set one field of a shared map; ``ttl`` (seconds) renews the whole map's expiry.

        For state each process owns a part of (chat presence per node): a process writes its
        own field, readers merge all fields, and a dead process's field ages out with the map.
        """
        ...

    async def hash_get_all(self, key: str) -> dict[str, bytes]: ...

    async def hash_delete(self, key: str, field: str) -> None: ...

    async def publish_logged(self, channel: str, key: str, data: bytes, keep: int, ttl: float) -> int:
        """Publish ``data`` on ``channel`` and keep it in the replay log ``key``, atomically.

        Pub/sub is at-most-once: a subscriber that is moving, lagging or gone misses messages.
        A channel whose every message must arrive (an EventSub WebSocket session across a
        reconnect) also appends each message to a short log under the next number of a
        per-log sequence (1, 2, 3, ...), and publishes it framed as ``b"<seq>\\n" + data``
        (:func:`split_logged`); a subscriber that sees a gap, or a new one that knows the
        last number its predecessor sent, reads the rest back with :meth:`read_log`. The log
        holds the last ``keep`` messages and expires ``ttl`` seconds after the last append;
        its sequence lives a day after the last append, so numbers do not restart while
        anyone can still hold a position in it.
        """
        ...

    async def read_log(self, key: str, after: int) -> list[tuple[int, bytes]]:
        """The messages still in the replay log ``key`` numbered above ``after``, oldest first."""
        ...


async def publish_event(bus: Bus, topic: str, payload: dict[str, Any]) -> None:
    """Domain events are JSON on channel ``event.<topic>`` (for example ``event.stream.online``)."""
    await bus.publish(f"event.{topic}", json.dumps(payload, separators=(",", ":"), default=str).encode())


LOG_SEQ_TTL_S = 86_400.0  # a replay log's sequence outlives its entries (see Bus.publish_logged)


def logged_frame(seq: int, data: bytes) -> bytes:
    return b"%d\n" % seq + data


def split_logged(payload: bytes) -> tuple[int, bytes]:
    """``(seq, data)`` from a message sent with :meth:`Bus.publish_logged`; ``(0, payload)``
    for a message published without a number."""
    head, sep, rest = payload.partition(b"\n")
    if sep and head.isdigit():
        return int(head), rest
    return 0, payload


def create_bus(url: str) -> Bus:
    if url.startswith("memory:"):
        from livecast.bus.memory import MemoryBus

        return MemoryBus()
    if url.startswith(("redis:", "rediss:")):
        from livecast.bus.redis import RedisBus

        return RedisBus(url)
    raise ValueError(f"unsupported bus URL {url!r}")
