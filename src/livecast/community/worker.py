"""The community worker (role ``worker``): points for watching and chatting, and deadlines.

Watching: the heartbeat endpoint publishes ``community.watch`` once per signed-in viewer,
channel and minute; chatting: chat publishes ``event.channel.chat.message``. Each becomes an
idempotent credit (:func:`livecast.community.points.earn`), so every worker in a cluster may
see the same message and the viewer is still credited once. Every :attr:`tick_interval`
seconds the worker locks predictions whose window has passed and completes polls whose time
is up, which announces ``channel.prediction.lock`` / ``channel.poll.end`` without anyone
having to read them first (reads and writes also apply these deadlines themselves).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from livecast import metrics
from livecast.community import events, points, polls, predictions
from livecast.community.points import Outbox
from livecast.platform import Platform

log = logging.getLogger("livecast.community")

WATCH_TOPIC = "community.watch"


class CommunityWorker:
    name = "community"

    def __init__(self, platform: Platform, *, tick_interval: float = 1.0) -> None:
        self.platform = platform
        self.tick_interval = tick_interval
        self.tasks: list[asyncio.Task[None]] = []
        self._subs: list[Any] = []

    async def start(self) -> dict[str, int]:
        watch = await self.platform.bus.subscribe(WATCH_TOPIC)
        chat = await self.platform.bus.subscribe("event.channel.chat.message")
        self._subs = [watch, chat]
        self.tasks = [asyncio.create_task(self._watch(watch)), asyncio.create_task(self._chat(chat)),
                      asyncio.create_task(self._ticks())]
        return {}

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.close()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # Coalesced progress and widget-state events still pending go out before the database
        # closes (services stop before the platform does).
        await events.drain(self.platform)

    async def _watch(self, sub: Any) -> None:
        async for _, data in sub:
            try:
                doc = json.loads(data)
                await self.on_watch(str(doc["channel_id"]), str(doc["user_id"]), int(doc["minute"]))
            except (ValueError, KeyError, TypeError):
                continue
            except Exception:
                metrics.errors.labels("community").inc()
                log.exception("community: watch credit failed")

    async def _chat(self, sub: Any) -> None:
        async for _, data in sub:
            try:
                doc = json.loads(data)
                await self.on_chat(str(doc["broadcaster_user_id"]), str(doc["chatter_user_id"]))
            except (ValueError, KeyError, TypeError):
                continue
            except Exception:
                metrics.errors.labels("community").inc()
                log.exception("community: chat credit failed")

    async def on_watch(self, channel_id: str, user_id: str, minute: int) -> int:
        return await points.earn(self.platform, channel_id, user_id, "watch", minute, points.WATCH_POINTS_PER_MINUTE)

    async def on_chat(self, channel_id: str, user_id: str, now: float | None = None) -> int:
        slot = int((time.time() if now is None else now) // points.CHAT_SLOT_S)
        # A cheap shared claim first: most chat lines fall in a slot already credited.
        if not await self.platform.bus.set(f"points:chat:{channel_id}:{user_id}:{slot}", b"1",
                                           ttl=points.CHAT_SLOT_S * 2, only_if_absent=True):
            return 0
        return await points.earn(self.platform, channel_id, user_id, "chat", slot, points.CHAT_POINTS)

    async def tick(self) -> None:
        async def apply(db: AsyncSession, out: Outbox) -> None:
            await predictions.expire(db, out)
            await polls.expire(db, out)

        await points.run(self.platform, apply)

    async def _ticks(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.errors.labels("community").inc()
                log.exception("community: deadline tick failed")
            await asyncio.sleep(self.tick_interval)


def create_service(platform: Platform) -> CommunityWorker:
    return CommunityWorker(platform)
