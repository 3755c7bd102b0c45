"""HTTP side of chat: IRC over WebSocket at ``/`` (subprotocol ``irc``), as tmi.js and
pyTwitchAPI connect, and emote images at ``/emotes/{id}/{size}.png``."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Response
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from livecast.chat import emotes, tmi
from livecast.chat.connection import ChatConnection
from livecast.chat.rooms import Hub
from livecast.platform import Platform

log = logging.getLogger("livecast.chat")

MAX_FRAME_CHARS = 64 * 1024
MAX_QUEUED_CHARS = 256 * 1024


class WebSocketOutlet:
    """Queues frames for one WebSocket; a writer task sends them in order."""

    text = True

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.queue: collections.deque[str] = collections.deque()
        self.size = 0
        self.wake = asyncio.Event()
        self.closing = False
        self.task: asyncio.Task[None] | None = None
        # No unchecked fast path: once a frame is handed to the server it sits in a buffer we
        # cannot see, so the bound must be checked at each write (ChatConnection.deliver).
        self.sink: Callable[[Any], None] | None = None

    def write(self, data: bytes | str) -> None:
        if self.closing:
            return
        text = data if isinstance(data, str) else data.decode()
        self.queue.append(text)
        self.size += len(text)
        self.wake.set()

    def buffered(self) -> int:
        return self.size

    def close(self) -> None:
        self.closing = True
        if self.size > MAX_QUEUED_CHARS and self.task is not None:
            # a client that stopped reading may never take the rest: drop it, stop a blocked send
            self.queue.clear()
            self.size = 0
            self.task.cancel()
        self.wake.set()

    async def run(self) -> None:
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                while self.queue:
                    text = self.queue.popleft()
                    await self.ws.send_text(text)
                    self.size -= len(text)  # counted until sent: a frame stuck in send is unread output
                if self.closing:
                    break
        except Exception:  # the peer went away mid-send
            pass


def install(app: FastAPI, platform: Platform) -> None:
    async def irc_websocket(ws: WebSocket) -> None:
        hub: Hub | None = platform.state.get("chat.hub")
        if hub is None:  # this process does not run the chat role
            await ws.close(code=1013)
            return
        offered = ws.scope.get("subprotocols") or []
        await ws.accept(subprotocol="irc" if "irc" in offered else None)
        client = ws.client
        limiter = platform.state.get("chat.limiter")  # shared with IRC over TCP (chat/tcp.py)
        if limiter is not None and not limiter.acquire(client.host if client else "?", ws):
            await ws.send_text(tmi.notice("*", "", "Too many connections from your address").decode())
            await ws.close(code=1008)
            return
        outlet = WebSocketOutlet(ws)
        conn = ChatConnection(platform, hub, outlet, client.host if client else "?", "websocket")

        async def read() -> None:
            login_by = asyncio.get_running_loop().time() + platform.settings.chat_login_timeout
            try:
                while not conn.closed:
                    try:  # as over TCP (chat/tcp.py): log in within chat_login_timeout
                        wait = None if conn.session.registered else login_by - asyncio.get_running_loop().time()
                        async with asyncio.timeout(wait):
                            msg = await ws.receive()
                    except TimeoutError:
                        conn.session.close("Login timed out")
                        await conn.handle([])
                        break
                    if msg["type"] == "websocket.disconnect":
                        break
                    text = msg.get("text")
                    if text is None:
                        raw = msg.get("bytes") or b""
                        try:
                            text = raw.decode()
                        except UnicodeDecodeError:
                            await conn.handle(conn.session.receive_line(raw))
                            continue
                    if len(text) > MAX_FRAME_CHARS:
                        conn.session.close("Line too long")
                        await conn.handle([])
                        break
                    await conn.receive_text(text)
            except (WebSocketDisconnect, RuntimeError):
                pass
            finally:
                conn.shutdown()

        reader = asyncio.create_task(read())
        writer = outlet.task = asyncio.create_task(outlet.run())
        # The connection ends when the client leaves (reader) or is dropped or closed (writer).
        await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        conn.shutdown()
        if not writer.done():
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(writer, timeout=2)  # let the last lines (RECONNECT, NOTICE) out
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        with contextlib.suppress(Exception):
            await ws.close()
        if limiter is not None:
            limiter.release(ws)

    app.router.routes.append(WebSocketRoute("/", irc_websocket))

    @app.get("/emotes/{emote_id}/{size}.png", include_in_schema=False)
    async def emote_image(emote_id: str, size: str) -> Response:
        from livecast.chat.models import Emote

        pixels = emotes.SIZES.get(size)
        if pixels is None or not emote_id.isdigit():
            raise HTTPException(404, "No such emote image")
        async with platform.db.session() as db:
            if await db.get(Emote, emote_id) is None:
                raise HTTPException(404, "No such emote")
        return Response(emotes.png(emote_id, pixels), media_type="image/png",
                        headers={"Cache-Control": "public, max-age=86400"})
