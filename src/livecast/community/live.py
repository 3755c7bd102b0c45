"""Fan-out of a channel's widget events to its server-sent-events clients.

One bus subscription per channel and process, however many viewers have the page open (on
Redis each subscription is a connection of its own, so one per viewer would not scale), and
each event is framed once as ``data: ...\\n\\n`` and the same bytes queued for every client. A
client whose queue is full (a stalled connection) misses events rather than slowing the others;
the widgets refetch their state on the next event they do get.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from livecast.bus import Bus
from livecast.community.events import widget_topic

QUEUE_SIZE = 256


@dataclass
class _Room:
    subscription: Any
    clients: set[asyncio.Queue[bytes]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None


class WidgetHub:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.rooms: dict[str, _Room] = {}
        self._lock = asyncio.Lock()

    async def join(self, channel_id: str) -> asyncio.Queue[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=QUEUE_SIZE)
        async with self._lock:
            room = self.rooms.get(channel_id)
            if room is None:
                room = _Room(await self.bus.subscribe(widget_topic(channel_id)))
                room.task = asyncio.get_running_loop().create_task(self._pump(room))
                self.rooms[channel_id] = room
            room.clients.add(queue)
        return queue

    async def leave(self, channel_id: str, queue: asyncio.Queue[bytes]) -> None:
        async with self._lock:
            room = self.rooms.get(channel_id)
            if room is None:
                return
            room.clients.discard(queue)
            if room.clients:
                return
            del self.rooms[channel_id]
        if room.task is not None:
            room.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await room.task
        await room.subscription.close()

    async def _pump(self, room: _Room) -> None:
        async for _, data in room.subscription:
            frame = b"data: " + data + b"\n\n"
            for queue in list(room.clients):
                if not queue.full():
                    queue.put_nowait(frame)


def hub(platform: Any) -> WidgetHub:
    found: WidgetHub | None = platform.state.get("community.hub")
    if found is None:
        found = WidgetHub(platform.bus)
        platform.state["community.hub"] = found
    return found
