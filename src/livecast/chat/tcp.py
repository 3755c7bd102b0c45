"""The chat role's service: the room hub plus IRC over plain TCP (port ``irc_port``).

The WebSocket transport lives in :mod:`livecast.chat.web` and shares this hub. On stop every
client gets ``RECONNECT`` first, as Twitch sends before a node drains, so clients move on
instead of seeing a dropped connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

from livecast.chat import tmi
from livecast.chat.connection import ChatConnection
from livecast.chat.rooms import WANTS_TEXT, Hub
from livecast.limits import PerIpLimiter
from livecast.logs import event
from livecast.platform import Platform
from livecast.server import bind_socket

log = logging.getLogger("livecast.chat")

PING_INTERVAL_S = 240.0
READ_SIZE = 65536
TOO_MANY_CONNECTIONS = tmi.notice("*", "", "Too many connections from your address")


class TcpOutlet:
    text = False

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self.transport = transport
        self.sink: Callable[[Any], None] | None = transport.write  # rooms hand it bytes only (a TCP client never wants text)
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None and transport.get_extra_info("sslcontext") is None else -1

    def write(self, data: bytes | str) -> None:
        if not self.transport.is_closing():
            self.transport.write(data if isinstance(data, bytes) else data.encode())

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size()

    def close(self) -> None:
        if self.buffered() > (1 << 20):
            self.transport.abort()  # a stuck reader would hold the socket open for ever
        else:
            self.transport.close()


class ChatService:
    name = "chat"

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.hub = Hub(platform)
        self.server: asyncio.Server | None = None
        self.connections: set[ChatConnection] = set()
        self._pinger: asyncio.Task[None] | None = None
        # One count per address over both transports; chat/web.py finds it in platform.state.
        self.limiter = PerIpLimiter.for_settings(platform.settings, platform.settings.chat_max_connections_per_ip)
        platform.state["chat.limiter"] = self.limiter

    async def start(self) -> dict[str, int]:
        await self.hub.start()
        s = self.platform.settings
        sock = bind_socket(s.host, s.irc_port)
        self.server = await asyncio.start_server(self._client, sock=sock, limit=READ_SIZE)
        self._pinger = asyncio.create_task(self._ping_loop())
        return {"irc": sock.getsockname()[1]}

    async def stop(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
        if self.server is not None:
            self.server.close()
        members = self.hub.all_members() | self.connections
        for conn in members:
            with contextlib.suppress(Exception):
                conn.deliver(tmi.reconnect().decode() if conn.variant & WANTS_TEXT else tmi.reconnect())
        await asyncio.sleep(0.05)
        for conn in list(members):
            if isinstance(conn, ChatConnection):
                conn.shutdown()
        if self.server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), timeout=2)
        await self.hub.stop()

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(PING_INTERVAL_S)
            for conn in list(self.connections):
                conn.outlet.write(tmi.ping())
                conn.flush()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = writer.get_extra_info("peername")
        if not self.limiter.acquire(str(peer[0] if peer else "?"), writer):
            writer.write(TOO_MANY_CONNECTIONS)
            writer.close()
            return
        conn = ChatConnection(self.platform, self.hub, TcpOutlet(writer.transport), str(peer[0] if peer else "?"),
                              "tcp")
        self.connections.add(conn)
        # A connection must log in within chat_login_timeout, or it is a held socket and nothing else.
        login_by = asyncio.get_running_loop().time() + self.platform.settings.chat_login_timeout
        try:
            while not conn.closed:
                try:
                    wait = None if conn.session.registered else login_by - asyncio.get_running_loop().time()
                    async with asyncio.timeout(wait):
                        data = await reader.read(READ_SIZE)
                except TimeoutError:
                    conn.session.close("Login timed out")
                    await conn.handle([])
                    break
                except (ConnectionError, OSError):
                    break
                if not data:
                    break
                await conn.receive_data(data)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("chat tcp client failed")
        finally:
            conn.shutdown()
            self.connections.discard(conn)
            self.limiter.release(writer)


def create_service(platform: Platform) -> ChatService:
    event(log, "chat service created", bus=platform.settings.bus_url.split(":")[0])
    return ChatService(platform)
