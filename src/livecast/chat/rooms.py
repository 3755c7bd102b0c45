"""Fan-out: every node's rooms, fed from the bus, writing the lines each connection has not had.

A room keeps its recent lines and its members in *chunks* of up to ``CHUNK`` members of one
*variant* (which capabilities a client asked for, and whether it is a WebSocket needing text).
A chunk remembers the first line it has not had; writing it builds one buffer of the lines
since then and hands the same object to every member, so the cost per delivery is one
``write`` call. A connection that does not read is cut off when its buffer passes a bound
(metric ``chat_slow_disconnects``), so a stalled client costs a bounded amount of memory and
never delays the room: under a storm, lines wait for the next round instead.

A *round* writes every chunk that is behind, one chunk per loop callback, so between chunks
the loop reads sockets and moves the next lines through the rules and the bus. Each chunk gets
every line up to the moment it is written, including lines that arrived after the round began:
in a big room, where a round is one ``send`` per connection (15,000 sends are 150-250 ms of
mostly kernel time on this 2-core machine), a line waits at most about one round for any
reader, where a snapshot per pass made it wait for the pass under way and then for its
reader's turn in the next (``bench/chat.py``, 15,000 connections x 100 msg/s: p99 568 ->
210 ms). Rounds start at least ``TICK_S`` apart, so a busy room costs at most one write per
connection per tick; a line after a quiet spell goes out at once. On a host with cores to
spare, sender threads write each chunk's plain TCP members in parallel
(:mod:`livecast.chat.sendpool`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from livecast import metrics
from livecast.bus import Bus
from livecast.chat import tmi
from livecast.chat.sendpool import SendPool, auto_threads
from livecast.chat.service import cache
from livecast.logs import event
from livecast.platform import Platform
from livecast.waits import until_set

log = logging.getLogger("livecast.chat")

TICK_S = 0.05
CHUNK = 500  # members per chunk: written in one loop callback, so input keeps flowing during a round
SWEEP_S = 1.0  # how often a busy room checks its members' unsent output against the bound
# Presence: each node writes the logins in its rooms to a shared map every PRESENCE_S; a node
# that dies stops refreshing and its entry is ignored after PRESENCE_TTL.
PRESENCE_S = 10.0
PRESENCE_TTL = 3 * PRESENCE_S
PRESENCE_BATCH_S = 1.0
# Like Twitch, JOIN/PART of other users go out only while a room is small; in a big room they
# would be most of the traffic and tell nobody anything.
MEMBERSHIP_ROOM_LIMIT = 1000
ANONYMOUS = re.compile(r"^justinfan\d+$")


def presence_key(channel: str) -> str:
    return f"chat:presence:{channel}"

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


async def present_elsewhere(bus: Bus, channel: str, own_node: str = "") -> set[str]:
    """Logins the other nodes' fresh presence entries list for ``channel``."""
    logins: set[str] = set()
    cutoff = time.time() - PRESENCE_TTL
    for node, raw in (await bus.hash_get_all(presence_key(channel))).items():
        if node == own_node:
            continue
        try:
            entry = json.loads(raw)
            if float(entry["at"]) >= cutoff:
                logins.update(str(login) for login in entry["logins"])
        except (ValueError, KeyError, TypeError):
            continue  # a malformed entry from another version: skip it, it expires
    return logins


class Member(Protocol):
    key: str
    login: str
    variant: int
    # The transport's own write, without checks: a room calls it once per member per round, so
    # this is the hot path of the whole chat server (see Room._write).
    sink: Callable[[Any], None]
    # A plain TCP member's transport and socket, which sender threads may write to directly
    # while its transport holds nothing unsent; None and -1 for any other member.
    direct: asyncio.WriteTransport | None
    fd: int

    def deliver(self, data: bytes | str) -> None:
        """Queue already-encoded lines without blocking; may drop the connection if it is stuck."""
        ...

    def check_backlog(self) -> None:
        """Drop the connection if its unsent output has passed the bound (a client not reading)."""
        ...

    def shutdown(self) -> None: ...


class _Chunk:
    """Up to ``CHUNK`` members of one variant, written together: one buffer serves them all,
    built from the room's lines from ``seq`` (the first line this chunk has not had) on."""

    __slots__ = ("seq", "sinks", "variant")

    def __init__(self, variant: int, seq: int) -> None:
        self.variant = variant
        self.sinks: dict[Member, Callable[[Any], None]] = {}
        self.seq = seq


class Room:
    def __init__(self, name: str, pool: SendPool | None = None) -> None:
        self.name = name
        self.pool = pool  # sender threads for big chunks (chat/sendpool.py); None: the loop alone
        self.members: set[Member] = set()
        self.chunks: list[_Chunk] = []
        self._chunk_of: dict[Member, _Chunk] = {}
        # members added to a chunk that was behind: the first line each may get (not older ones)
        self._since: dict[Member, int] = {}
        self._sweep_at = 0.0
        self._sweep_scheduled = False
        self.logins: dict[str, int] = {}  # connections per login: JOIN/PART on the first/last
        # the room's lines (with the key of the member that sent each, who does not get it back)
        # from sequence number ``_base`` on: kept until every chunk has had them
        self._log: list[tuple[bytes, str]] = []
        self._base = 0
        self._scheduled = False  # a round is scheduled or under way
        self._pos = 0  # the next chunk of the round under way
        self._next_round = 0.0  # monotonic time before which a busy room starts no new round

    @property
    def idle(self) -> bool:
        """No line waits and no round is under way."""
        return not self._log and not self._scheduled

    @property
    def _end(self) -> int:
        return self._base + len(self._log)

    def enqueue(self, lines: list[bytes], exclude: str) -> None:
        self._log.extend((line, exclude) for line in lines)
        if not self._scheduled:
            self._schedule()

    def _schedule(self) -> None:
        self._scheduled = True
        loop = asyncio.get_running_loop()
        delay = self._next_round - time.monotonic()
        if delay > 0:
            loop.call_later(delay, self._start_round)
        else:
            loop.call_soon(self._start_round)

    def add(self, member: Member) -> None:
        self.remove(member)  # once in a round, whatever its variant was before
        self.members.add(member)
        chunk = next((c for c in reversed(self.chunks) if c.variant == member.variant and len(c.sinks) < CHUNK), None)
        if chunk is None:
            chunk = _Chunk(member.variant, self._end)
            self.chunks.append(chunk)
        elif chunk.seq < self._end:
            self._since[member] = self._end
        chunk.sinks[member] = member.sink
        self._chunk_of[member] = chunk

    def remove(self, member: Member) -> None:
        self.members.discard(member)
        self._since.pop(member, None)
        chunk = self._chunk_of.pop(member, None)
        if chunk is not None:
            chunk.sinks.pop(member, None)  # an empty chunk goes at the end of the round

    def _start_round(self) -> None:
        self._next_round = time.monotonic() + TICK_S
        self._pos = 0
        self._continue()

    def _continue(self) -> None:
        """Write the next chunks of the round, about ``CHUNK`` members per loop callback.

        Each chunk gets every line up to now, also those that arrived since the round began: a
        line waits only for the round to reach its reader's chunk, not for the round under way
        to end and a new one to come round, which halves the wait in a big, busy room.
        """
        chunks = self.chunks
        written = 0
        while self._pos < len(chunks) and written < CHUNK:
            chunk = chunks[self._pos]
            self._pos += 1
            written += self._write_chunk(chunk)
        loop = asyncio.get_running_loop()
        if self._pos < len(chunks):
            loop.call_soon(self._continue)
            return
        # the round is over: forget empty chunks and the lines every chunk has had
        self.chunks = chunks = [c for c in chunks if c.sinks]
        oldest = min((c.seq for c in chunks), default=self._end)
        del self._log[:oldest - self._base]
        self._base = oldest
        self._scheduled = False
        if self._log:
            self._schedule()
        if not self._sweep_scheduled:
            self._sweep_scheduled = True
            loop.call_later(max(0.0, self._sweep_at - time.monotonic()), self._sweep)

    def _write_chunk(self, chunk: _Chunk) -> int:
        """Write a chunk the lines it has not had; returns how many members it wrote to.

        The sender of a line does not get it back (Twitch does not echo your own PRIVMSG), so a
        member whose key is among the senders gets a buffer of its own; so does a member that
        joined after the chunk fell behind. Everyone else in the chunk gets the same object.
        """
        end = self._end
        if chunk.seq >= end or not chunk.sinks:
            chunk.seq = end
            return 0
        lines = self._log[chunk.seq - self._base:]
        start, chunk.seq = chunk.seq, end
        variant = chunk.variant
        buf = self._build(lines, variant, "")
        excluded = {ex for _, ex in lines if ex}
        since = self._since
        pool = self.pool
        members = list(chunk.sinks.items())
        failed: list[Member] = []
        direct: list[tuple[Member, asyncio.WriteTransport, bytes]] = []
        fds: list[tuple[int, bytes]] = []
        delivered = 0
        for member, sink in members:
            data = buf
            if since and member in since:
                first = since.pop(member)
                data = self._build(lines[first - start:], variant, member.key) if first < end else b""
            elif excluded and member.key in excluded:
                data = self._build(lines, variant, member.key)
            if not data:
                continue
            if pool is not None:
                t = member.direct
                if t is not None and type(data) is bytes and not t.get_write_buffer_size() and not t.is_closing():
                    direct.append((member, t, data))
                    fds.append((member.fd, data))
                    continue
            try:
                sink(data)
            except Exception:  # a transport closed under us (uvloop raises): drop the member
                failed.append(member)
                continue
            delivered += 1
        if pool is not None and fds:
            delivered += len(fds)
            for i, n in pool.write(fds):
                member, t, data = direct[i]
                try:
                    # the rest; or, after an error, the whole buffer, so that the transport meets
                    # the error itself and closes the connection its usual way
                    t.write(data[n:] if n > 0 else data)
                except Exception:
                    failed.append(member)
        metrics.chat_deliveries.inc(delivered * len(lines))
        for member in failed:
            member.shutdown()
        return len(members)

    def _sweep(self) -> None:
        """Drop members whose unsent output passed the bound; runs within SWEEP_S of any flush,
        so a client that stalled during a burst is cut off even if the room then goes quiet."""
        self._sweep_scheduled = False
        self._sweep_at = time.monotonic() + SWEEP_S
        for member in list(self.members):
            member.check_backlog()

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
        self._presence_task: asyncio.Task[None] | None = None
        self._sub: object | None = None
        self._counter = 0
        self._published: set[str] = set()
        self._presence_changed = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        threads = platform.settings.chat_send_threads or auto_threads(os.cpu_count())
        self.pool = SendPool(threads) if threads > 1 else None

    def new_key(self) -> str:
        self._counter += 1
        return f"{self.node}:{self._counter}"

    async def start(self) -> None:
        sub = await self.platform.bus.subscribe("chat.room.*", "chat.ctl.*", "chat.user.*")
        self._sub = sub
        self._task = asyncio.create_task(self._pump(sub))
        self._presence_task = asyncio.create_task(self._presence_loop())
        self.platform.state["chat.hub"] = self

    async def stop(self) -> None:
        if self._presence_task is not None:
            self._presence_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._presence_task
        with contextlib.suppress(Exception):  # best effort: the entry ages out anyway
            for channel in list(self._published):
                await self.platform.bus.hash_delete(presence_key(channel), self.node)
        if self._sub is not None:
            await self._sub.close()  # type: ignore[attr-defined]
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.pool is not None:
            self.pool.close()  # a pass after this writes on the loop thread alone
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

    # Presence -----------------------------------------------------------------------------------
    async def _presence_loop(self) -> None:
        """Refresh every PRESENCE_S, and about a second after a join or part (at most once a
        second, so a burst of joins costs one write per room, not one per join)."""
        while True:
            self._presence_changed.clear()
            try:
                await self.publish_presence()
            except Exception:  # a bus outage must not end the loop; the next round retries
                metrics.errors.labels("chat_presence").inc()
                log.warning("could not publish chat presence", exc_info=True)
            await until_set(self._presence_changed, PRESENCE_S)
            await asyncio.sleep(PRESENCE_BATCH_S)

    async def publish_presence(self) -> None:
        """Write this node's logins per room to the shared map (and drop rooms now empty)."""
        now = time.time()
        current = set(self.rooms)
        for channel in current:
            logins = sorted(self.members_of(channel))
            blob = json.dumps({"at": now, "logins": logins}, separators=(",", ":")).encode()
            await self.platform.bus.hash_set(presence_key(channel), self.node, blob, ttl=PRESENCE_TTL)
        for channel in self._published - current:
            await self.platform.bus.hash_delete(presence_key(channel), self.node)
        self._published = current

    async def chatters(self, channel: str) -> set[str]:
        """Signed-in logins in the room on every node: this node's live, others' from presence."""
        return self.members_of(channel) | await present_elsewhere(self.platform.bus, channel, self.node)

    # Membership ---------------------------------------------------------------------------------
    def join(self, channel: str, member: Member) -> None:
        room = self.rooms.get(channel)
        if room is None:
            room = self.rooms[channel] = Room(channel, self.pool)
        if member in room.members:
            return
        room.add(member)
        count = room.logins.get(member.login, 0)
        room.logins[member.login] = count + 1
        first = count == 0
        self._presence_changed.set()
        if first:
            self._announce(channel, room, member.login, tmi.join_echo(member.login, channel), member.key)

    def part(self, channel: str, member: Member) -> None:
        room = self.rooms.get(channel)
        if room is None:
            return
        if member not in room.members:
            return
        room.remove(member)
        self._presence_changed.set()
        left = room.logins.get(member.login, 1) - 1
        if left > 0:
            room.logins[member.login] = left
        else:
            room.logins.pop(member.login, None)
            self._announce(channel, room, member.login, tmi.part_echo(member.login, channel), member.key)
        if not room.members and room.idle:
            del self.rooms[channel]

    def _announce(self, channel: str, room: Room, login: str, line: bytes, exclude: str) -> None:
        """JOIN/PART to the room's members on every node (those with twitch.tv/membership)."""
        if not login or ANONYMOUS.match(login) or len(room.members) >= MEMBERSHIP_ROOM_LIMIT:
            return
        data = exclude.encode() + b"\n" + line
        task = asyncio.get_running_loop().create_task(self._publish_quietly(f"chat.room.{channel}", data))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _publish_quietly(self, topic: str, data: bytes) -> None:
        try:
            await self.platform.bus.publish(topic, data)
        except Exception:  # membership lines are a courtesy; a bus outage is logged elsewhere
            metrics.errors.labels("chat_membership").inc()

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
        """Signed-in logins in the room on this node (anonymous readers are not chatters)."""
        room = self.rooms.get(channel)
        return {login for login in room.logins if login and not ANONYMOUS.match(login)} if room else set()

    def all_members(self) -> set[Member]:
        out: set[Member] = set()
        for room in self.rooms.values():
            out |= room.members
        for members in self.users.values():
            out |= members
        return out
