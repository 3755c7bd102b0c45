"""Fan-out: every node's rooms, fed from the bus, writing each batch of lines once per room.

A room gathers the lines that arrive within one short tick and writes them as one buffer. The
buffer is built once per *variant* (which capabilities a client asked for, and whether it is a
WebSocket needing text) and the same object is handed to every connection of that variant, so
the cost per delivery is one ``write`` call. A connection that does not read is cut off when its
buffer passes a bound (metric ``chat_slow_disconnects``), so a stalled client costs a bounded
amount of memory and never delays the room: under a storm, lines wait for the next tick instead.

The tick adapts to load by construction: a line arriving after a quiet spell is flushed at once;
while lines keep coming, flushes are at least ``TICK_S`` apart, so a busy room costs one write
per connection per tick however many lines it carries (measured by ``bench/chat.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Protocol

from livecast import metrics
from livecast.chat import tmi
from livecast.chat.service import cache
from livecast.logs import event
from livecast.platform import Platform

log = logging.getLogger("livecast.chat")

TICK_S = 0.05

CAP_TAGS = 1
CAP_COMMANDS = 2
CAP_MEMBERSHIP = 4
WANTS_TEXT = 8


def variant_of(caps: set[str], text: bool) -> int:
    return ((CAP_TAGS if "twitch.tv/tags" in caps else 0)
            | (CAP_COMMANDS if "twitch.tv/commands" in caps else 0)
            | (CAP_MEMBERSHIP if "twitch.tv/membership" in caps else 0)
            | (WANTS_TEXT if text else 0))


def _wanted(variant: int, line: bytes) -> bool:
    if (variant & (CAP_COMMANDS | CAP_MEMBERSHIP)) == (CAP_COMMANDS | CAP_MEMBERSHIP):
        return True
    cmd = tmi.line_command(line)
    if cmd in tmi.TWITCH_ONLY_COMMANDS:
        return bool(variant & CAP_COMMANDS)
    if cmd in tmi.MEMBERSHIP_COMMANDS:
        return bool(variant & CAP_MEMBERSHIP)
    return True


class Member(Protocol):
    key: str
    login: str
    variant: int

    def deliver(self, data: bytes | str) -> None:
        """Queue already-encoded lines without blocking; may drop the connection if it is stuck."""
        ...


class Room:
    def __init__(self, name: str) -> None:
        self.name = name
        self.members: set[Member] = set()
        self.pending: list[tuple[bytes, str]] = []
        self._scheduled = False
        self._last_flush = 0.0

    def enqueue(self, lines: list[bytes], exclude: str) -> None:
        self.pending.extend((line, exclude) for line in lines)
        if self._scheduled:
            return
        self._scheduled = True
        loop = asyncio.get_running_loop()
        delay = self._last_flush + TICK_S - time.monotonic()
        if delay > 0:
            loop.call_later(delay, self.flush)
        else:
            loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        self._last_flush = time.monotonic()
        lines, self.pending = self.pending, []
        if not lines or not self.members:
            return
        excluded = {ex for _, ex in lines if ex}
        built: dict[tuple[int, str], bytes | str] = {}
        delivered = 0
        for member in list(self.members):
            ex = member.key if member.key in excluded else ""
            key = (member.variant, ex)
            buf = built.get(key)
            if buf is None:
                buf = built[key] = self._build(lines, member.variant, ex)
            if buf:
                member.deliver(buf)
                delivered += 1
        metrics.chat_deliveries.inc(delivered * len(lines))

    @staticmethod
    def _build(lines: list[tuple[bytes, str]], variant: int, exclude: str) -> bytes | str:
        tags = bool(variant & CAP_TAGS)
        data = b"".join(
            line if tags else tmi.strip_tags(line)
            for line, ex in lines
            if (not exclude or ex != exclude) and _wanted(variant, line)
        )
        return data.decode() if variant & WANTS_TEXT else data


class Hub:
    """This node's rooms and the bus subscription that feeds them."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.node = uuid.uuid4().hex[:10]
        self.rooms: dict[str, Room] = {}
        self.users: dict[str, set[Member]] = {}
        self._task: asyncio.Task[None] | None = None
        self._sub: object | None = None
        self._counter = 0

    def new_key(self) -> str:
        self._counter += 1
        return f"{self.node}:{self._counter}"

    async def start(self) -> None:
        sub = await self.platform.bus.subscribe("chat.room.*", "chat.ctl.*", "chat.user.*")
        self._sub = sub
        self._task = asyncio.create_task(self._pump(sub))
        self.platform.state["chat.hub"] = self

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.close()  # type: ignore[attr-defined]
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.platform.state.pop("chat.hub", None)

    async def _pump(self, sub: object) -> None:
        async for topic, data in sub:  # type: ignore[attr-defined]
            try:
                self._dispatch(topic, data)
            except Exception:
                metrics.errors.labels("chat_hub").inc()
                log.exception("chat hub failed on %s", topic)

    def _dispatch(self, topic: str, data: bytes) -> None:
        kind, _, name = topic[5:].partition(".")
        if kind == "room":
            room = self.rooms.get(name)
            if room is None:
                return
            exclude, _, blob = data.partition(b"\n")
            room.enqueue(blob.splitlines(keepends=True), exclude.decode())
        elif kind == "ctl":
            cache(self.platform).invalidate(name)
            info = json.loads(data)
            event(log, "chat control", channel=name, op=info.get("op", "?"))
        elif kind == "user":
            for member in list(self.users.get(name, ())):
                member.deliver(data.decode() if member.variant & WANTS_TEXT else data)

    # Membership ---------------------------------------------------------------------------------
    def join(self, channel: str, member: Member) -> None:
        room = self.rooms.get(channel)
        if room is None:
            room = self.rooms[channel] = Room(channel)
        room.members.add(member)

    def part(self, channel: str, member: Member) -> None:
        room = self.rooms.get(channel)
        if room is None:
            return
        room.members.discard(member)
        if not room.members and not room.pending:
            del self.rooms[channel]

    def register_user(self, member: Member) -> None:
        self.users.setdefault(member.login, set()).add(member)

    def forget(self, member: Member, channels: set[str]) -> None:
        for channel in channels:
            self.part(channel, member)
        users = self.users.get(member.login)
        if users is not None:
            users.discard(member)
            if not users:
                del self.users[member.login]

    def members_of(self, channel: str) -> set[str]:
        room = self.rooms.get(channel)
        return {m.login for m in room.members} if room else set()

    def all_members(self) -> set[Member]:
        out: set[Member] = set()
        for room in self.rooms.values():
            out |= room.members
        for members in self.users.values():
            out |= members
        return out
