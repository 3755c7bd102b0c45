"""A room's rounds (chat/rooms.py): each chunk of members gets every line it has not had, once
and in order, including lines that arrive while a round is under way; senders do not get their
own lines back and late joiners get nothing from before their JOIN."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from livecast.chat import rooms
from livecast.chat.rooms import CAP_COMMANDS, CAP_TAGS, Room


class FakeMember:
    """A room member whose sink records each write; no socket, so the loop path writes it."""

    direct = None
    fd = -1

    def __init__(self, key: str, variant: int = CAP_TAGS | CAP_COMMANDS) -> None:
        self.key = key
        self.login = key
        self.variant = variant
        self.writes: list[bytes] = []
        self.sink = self.writes.append

    def deliver(self, data: bytes | str) -> None:
        self.writes.append(data if isinstance(data, bytes) else data.encode())

    def check_backlog(self) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def texts(self) -> list[str]:
        return [line.rsplit(b" :", 1)[1].decode() for line in b"".join(self.writes).split(b"\r\n") if line]


def line(text: str) -> bytes:
    return f"@tmi-sent-ts=1 :x!x@x.tmi.twitch.tv PRIVMSG #room :{text}\r\n".encode()


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rooms, "CHUNK", 2)
    monkeypatch.setattr(rooms, "TICK_S", 0.0)


async def test_every_member_gets_every_line_once_in_order(small_chunks: Any) -> None:
    room = Room("room")
    members = [FakeMember(f"m{i}") for i in range(7)]
    for m in members:
        room.add(m)
    assert len(room.chunks) == 4  # 2 + 2 + 2 + 1
    sent = []
    for n in range(40):
        room.enqueue([line(f"t{n}")], "")
        sent.append(f"t{n}")
        if n % 3 == 0:
            await asyncio.sleep(0)  # part of a round runs between arrivals
    await settle()
    for m in members:
        assert m.texts() == sent, m.key
    assert room.idle


async def test_lines_arriving_mid_round_reach_the_later_chunks_in_the_same_round(small_chunks: Any) -> None:
    room = Room("room")
    members = [FakeMember(f"m{i}") for i in range(6)]
    for m in members:
        room.add(m)
    room.enqueue([line("a")], "")
    await asyncio.sleep(0)  # the round starts and writes the first chunk (2 members)
    assert [len(m.writes) for m in members] == [1, 1, 0, 0, 0, 0]
    room.enqueue([line("b")], "")
    await settle()
    # the later chunks got a and b in one write; the first chunk gets b in the next round
    assert [len(m.writes) for m in members] == [2, 2, 1, 1, 1, 1]
    assert all(m.texts() == ["a", "b"] for m in members)


async def test_senders_do_not_get_their_own_lines_and_variants_get_their_form(small_chunks: Any) -> None:
    room = Room("room")
    alice, bob, plain = FakeMember("alice"), FakeMember("bob"), FakeMember("plain", variant=CAP_COMMANDS)
    for m in (alice, bob, plain):
        room.add(m)
    room.enqueue([line("from alice")], "alice")
    room.enqueue([line("from bob")], "bob")
    await settle()
    assert alice.texts() == ["from bob"]
    assert bob.texts() == ["from alice"]
    assert plain.texts() == ["from alice", "from bob"]
    assert all(not w.startswith(b"@") for w in plain.writes)  # no tags without twitch.tv/tags


async def test_a_late_joiner_gets_nothing_from_before_its_join(small_chunks: Any) -> None:
    room = Room("room")
    first = [FakeMember(f"m{i}") for i in range(3)]  # chunks of 2 and 1
    for m in first:
        room.add(m)
    room.enqueue([line("before")], "")
    await asyncio.sleep(0)  # the first chunk is written; the second (m2) is still behind
    late = FakeMember("late")
    room.add(late)  # into m2's chunk, which has not had "before" yet
    assert room.chunks[1].sinks.keys() == {first[2], late}
    room.enqueue([line("after")], "")
    await settle()
    assert late.texts() == ["after"]
    assert first[2].texts() == ["before", "after"]
    leaving = first[0]
    room.remove(leaving)
    room.enqueue([line("gone")], "")
    await settle()
    assert leaving.texts() == ["before", "after"]
    assert late.texts() == ["after", "gone"]


async def test_lines_are_forgotten_once_every_chunk_had_them(small_chunks: Any) -> None:
    room = Room("room")
    for i in range(5):
        room.add(FakeMember(f"m{i}"))
    for n in range(100):
        room.enqueue([line(str(n))], "")
    await settle()
    assert room.idle and not room._log
    empty = Room("empty")
    empty.enqueue([line("nobody")], "")
    await settle()
    assert empty.idle
