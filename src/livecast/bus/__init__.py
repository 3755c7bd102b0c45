"""The message bus: ``publish``/``subscribe`` plus the few shared counters processes need.

``memory://`` keeps everything in this process (the default, one process); ``redis://``
shares it between processes and nodes. Both pass the same tests (tests/test_bus.py).

Pub/sub is at-most-once. What must survive its consumer being away (domain events on their
way to the EventSub dispatcher) also goes into a *stream* (:meth:`Bus.stream_add`): an
append-only, capped log read through a consumer group, which remembers what was handed to
whom until it is acknowledged (Redis Streams semantics, kept by the in-process bus too).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, NamedTuple, Protocol

STREAM_MAXLEN = 100_000  # entries a stream keeps by default (LIVECAST_EVENT_STREAM_MAXLEN)


class StreamEntry(NamedTuple):
    """One entry of a bus stream: its id (``"<ms>-<seq>"``, increasing), channel and data."""

    id: str
    channel: str
    data: bytes


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

    async def stream_add(self, key: str, channel: str, data: bytes, *, maxlen: int | None = None,
                         publish: bool = False) -> str:
        """Append ``(channel, data)`` to the stream ``key``; returns the new entry's id.

        Unlike pub/sub, an entry waits for a consumer that is restarting or not started yet.
        The stream keeps about ``maxlen`` entries (default: the bus's cap, set from
        LIVECAST_EVENT_STREAM_MAXLEN), dropping the oldest, so a consumer that never comes
        back cannot fill the memory. ``publish`` also publishes ``data`` on ``channel`` in the
        same round trip, for live subscribers that want the message but not the guarantee.
        """
        ...

    async def stream_read_group(self, key: str, group: str, consumer: str, count: int,
                                block: float) -> list[StreamEntry]:
        """Up to ``count`` entries of ``key`` that ``group`` has not handed out yet, oldest
        first, now pending to ``consumer`` until :meth:`stream_ack`; waits up to ``block``
        seconds for one when there is none.

        A group that does not exist yet is created at the start of the stream, not its end:
        entries appended before any consumer ever ran are exactly what must not be lost.
        """
        ...

    async def stream_ack(self, key: str, group: str, ids: Sequence[str]) -> None:
        """Done with these entries: the group forgets them (they are never handed out again)."""
        ...

    async def stream_claim(self, key: str, group: str, consumer: str, min_idle: float,
                           count: int) -> list[StreamEntry]:
        """Take over up to ``count`` entries of ``group`` that were handed to some consumer at
        least ``min_idle`` seconds ago and never acknowledged (it died, or stopped midway),
        oldest first; they are pending to ``consumer`` now, and their idle time starts again.
        An entry trimmed from the stream meanwhile is forgotten rather than returned.
        """
        ...

    async def stream_prune_consumers(self, key: str, group: str, min_idle: float) -> int:
        """Forget the consumers of ``group`` with nothing pending that have not read for
        ``min_idle`` seconds; returns how many. Consumer names are per process start, so
        without this every restart would leave one behind for good."""
        ...


EVENT_STREAM = "events"  # the stream every domain event is appended to (see publish_event)


async def publish_event(bus: Bus, topic: str, payload: dict[str, Any]) -> None:
    """Domain events are JSON on channel ``event.<topic>`` (for example ``event.stream.online``).

    Each is appended to the :data:`EVENT_STREAM` stream, which the EventSub dispatcher reads
    through a consumer group, so an event published while no dispatcher runs (a worker
    restarting, killed, or not started yet) is dispatched when one does; and published on its
    channel in the same round trip, for the in-process consumers that only want it live.
    """
    data = json.dumps(payload, separators=(",", ":"), default=str).encode()
    await bus.stream_add(EVENT_STREAM, f"event.{topic}", data, publish=True)


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


def create_bus(url: str, stream_maxlen: int = STREAM_MAXLEN) -> Bus:
    """The bus for ``url``; ``stream_maxlen`` caps streams appended to without a ``maxlen``."""
    if url.startswith("memory:"):
        from livecast.bus.memory import MemoryBus

        return MemoryBus(stream_maxlen)
    if url.startswith(("redis:", "rediss:")):
        from livecast.bus.redis import RedisBus

        return RedisBus(url, stream_maxlen)
    raise ValueError(f"unsupported bus URL {url!r}")
