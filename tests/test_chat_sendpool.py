"""Sender threads (chat/sendpool.py): a pass written from several threads straight to the sockets
keeps every connection's bytes whole and in order, short writes and slow readers included."""

from __future__ import annotations

import asyncio
import os
import socket

from livecast.chat import service
from livecast.chat.sendpool import SendPool, auto_threads
from tests.conftest import Server, start_server, wait_for


def _drain(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def test_pool_reports_each_short_write_at_its_own_index() -> None:
    pairs = [socket.socketpair() for _ in range(40)]
    try:
        items = []
        for i, (ours, theirs) in enumerate(pairs):
            ours.setblocking(False)
            theirs.setblocking(False)
            if i % 7 == 3:
                ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
                theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            if i == 11:
                theirs.close()  # the reader is gone: an error, not a short count
            size = 1 << 20 if i % 7 == 3 else 1000 + i
            items.append((ours.fileno(), bytes([65 + i % 26]) * size))
        pool = SendPool(4)
        shorts = dict(pool.write(items))
        pool.close()
        assert shorts[11] == -1
        for i, (_ours, theirs) in enumerate(pairs):
            if i == 11:
                continue
            got = _drain(theirs)
            data = items[i][1]
            if i % 7 == 3:
                assert 0 <= shorts[i] < len(data) and got == data[:shorts[i]], i
            else:
                assert i not in shorts and got == data, i
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()


def test_auto_threads() -> None:
    assert [auto_threads(n) for n in (None, 1, 2, 4, 8, 16, 64)] == [1, 1, 1, 2, 4, 4, 4]


async def _reader(port: int, nick: str, slow: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket()
    if slow:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
    writer.write(f"CAP REQ :twitch.tv/tags twitch.tv/commands\r\nNICK {nick}\r\nJOIN #alice\r\n".encode())
    while b"ROOMSTATE" not in await reader.readline():
        pass
    return reader, writer


async def _collect(reader: asyncio.StreamReader, count: int, slow: bool) -> list[int]:
    seen: list[int] = []
    while len(seen) < count:
        line = await reader.readline()
        if not line:
            break
        if b" PRIVMSG #alice :" in line:
            seen.append(int(line.rsplit(b":", 1)[1].split(b" ", 1)[0]))
            if slow and len(seen) % 10 == 0:
                await asyncio.sleep(0.02)
    return seen


async def test_threaded_passes_keep_order_for_fast_and_slow_readers(tmp_path: object) -> None:
    server: Server = await start_server(tmp_path, chat_send_threads=4)  # type: ignore[arg-type]
    try:
        await server.create_user("alice")
        hub = server.platform.state["chat.hub"]
        assert hub.pool is not None and hub.pool.threads == 4
        clients = [await _reader(server.irc_port, f"justinfan{100 + i}", slow=i % 5 == 0) for i in range(15)]
        # logins justinfan100..114; every fifth reads slowly through a small window
        await wait_for(lambda: len(hub.rooms["alice"].members) == 15)
        for member in hub.rooms["alice"].members:  # the server's side of a slow reader fills up soon
            if int(member.login[9:]) % 5 == 0:
                with socket.socket(fileno=os.dup(member.fd)) as side:
                    side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        count = 300
        collectors = [asyncio.create_task(_collect(r, count, slow=i % 5 == 0)) for i, (r, _) in enumerate(clients)]
        for seq in range(count):  # 600 KB to each reader in bursts, over many passes
            line = f":x!x@x.tmi.twitch.tv PRIVMSG #alice :{seq} {'y' * 2000}\r\n".encode()
            await service.publish_room(server.platform.bus, "alice", line)
            if seq % 25 == 0:
                await asyncio.sleep(0.01)
        results = await asyncio.wait_for(asyncio.gather(*collectors), 30)
        for i, seen in enumerate(results):
            assert seen == list(range(count)), (i, seen[:5], len(seen))
        assert len(hub.rooms["alice"].members) == 15  # nobody was cut off as slow
        for _, writer in clients:
            writer.close()
    finally:
        await server.runner.stop()
