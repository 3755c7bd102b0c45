"""EventSub over WebSocket at ``/ws``: welcome, keepalive, notification, reconnect, revocation.

Sessions are announced in the bus (``eventsub:ws:session:<id>``) so a subscription request
served by any API process can check the session exists; notifications reach the node that
holds the connection through the bus channel ``eventsub.session.<id>``. Draining a node
sends ``session_reconnect`` with a one-time URL; the client's new connection adopts the same
session id, so its subscriptions move without being recreated. Close codes are Twitch's:
4001 inbound traffic, 4003 connection unused, 4004 reconnect grace time expired,
4005 network timeout (a client that does not read its notifications), 4007 invalid reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from livecast import metrics
from livecast.api.eventsub import catalog
from livecast.api.eventsub.models import EventSubSubscription
from livecast.api.eventsub.service import SESSION_KEY, ws_message
from livecast.logs import event
from livecast.platform import Platform
from livecast.store.base import utcnow

log = logging.getLogger("livecast.eventsub.ws")

RECONNECT_KEY = "eventsub:ws:reconnect:"
CLOSE_REASONS = {
    4000: ("internal server error", "websocket_internal_error"),
    4001: ("sent inbound traffic", "websocket_received_inbound_traffic"),
    4002: ("failed ping-pong", "websocket_failed_ping_pong"),
    4003: ("connection unused", "websocket_connection_unused"),
    4004: ("reconnect grace time expired", "websocket_disconnected"),
    4005: ("network timeout", "websocket_network_timeout"),
    4006: ("network error", "websocket_network_error"),
    4007: ("invalid reconnect", "websocket_disconnected"),
}


MAX_QUEUED = 10_000  # notifications held for one connection that is not reading them
SLOW_CLIENT = (4005, "client too slow: notifications not read")


@dataclass
class Connection:
    session_id: str
    conn_id: str
    websocket: WebSocket
    keepalive: int
    connected_at: Any
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(maxsize=MAX_QUEUED))
    moved: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None


DRAIN_WAIT_S = 5.0  # at shutdown, how long sessions get to reconnect elsewhere


class WsManager:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.connections: dict[str, Connection] = {}
        self.unused_timeout = 10.0
        self.reconnect_grace = 30.0
        self._router: asyncio.Task[None] | None = None
        self._sub: Any = None
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Future[None]] = set()

    async def ensure_started(self) -> None:
        async with self._lock:
            if self._router is None:
                self._sub = await self.platform.bus.subscribe("eventsub.session.*")
                self._router = asyncio.create_task(self._route(self._sub))

    async def _route(self, sub: Any) -> None:
        async for channel, data in sub:
            conn = self.connections.get(channel.removeprefix("eventsub.session."))
            if conn is not None:
                try:
                    conn.queue.put_nowait(data)
                except asyncio.QueueFull:
                    self._too_slow(conn)

    def _too_slow(self, conn: Connection) -> None:
        """A session whose queue is full is closed, not left to lose notifications silently.

        Twitch has no close code of its own for a slow reader; 4005 (network timeout) is the one
        its clients treat as transient, so they reconnect and subscribe again rather than carry
        on believing they saw every event. The close frame goes behind whatever is already
        buffered for the client, and ``close`` aborts the connection if it never answers.
        """
        if conn.close_code is not None:
            return
        conn.close_code = SLOW_CLIENT[0]
        metrics.errors.labels("eventsub_ws_slow_client").inc()
        event(log, "eventsub websocket too slow, closing", level=logging.WARNING, session=conn.session_id,
              queued=conn.queue.qsize())
        task = asyncio.ensure_future(self._close(conn, *SLOW_CLIENT))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def ws_base(self) -> str:
        base = self.platform.base_url()
        return "ws" + base[4:] if base.startswith("http") else base

    async def handle(self, websocket: WebSocket) -> None:
        await self.ensure_started()
        raw_keepalive = websocket.query_params.get("keepalive_timeout_seconds", "10")
        try:
            keepalive = int(raw_keepalive)
        except ValueError:
            keepalive = -1
        if not 10 <= keepalive <= 600:
            await websocket.close(code=1008, reason="keepalive_timeout_seconds must be 10 to 600")
            return
        reconnect_id = websocket.query_params.get("reconnect_id")
        session_id = ""
        if reconnect_id:
            raw = await self.platform.bus.get(RECONNECT_KEY + reconnect_id[:64])
            if raw is None:
                await websocket.accept()
                await websocket.close(code=4007, reason="invalid reconnect")
                return
            await self.platform.bus.delete(RECONNECT_KEY + reconnect_id[:64])
            info = json.loads(raw)
            session_id, keepalive = info["session_id"], int(info["keepalive"])
        else:
            session_id = secrets.token_urlsafe(24)
        await websocket.accept()
        conn = Connection(session_id, secrets.token_hex(8), websocket, keepalive, utcnow())
        previous = self.connections.get(session_id)
        self.connections[session_id] = conn
        await self._announce(conn)
        metrics.eventsub_ws_sessions.inc()
        try:
            await websocket.send_text(ws_message("session_welcome", {"session": self._session_doc(conn)}).decode())
            if previous is not None:
                previous.moved.set()
            await self._serve(conn, reconnected=bool(reconnect_id))
        finally:
            metrics.eventsub_ws_sessions.dec()
            if self.connections.get(session_id) is conn:
                del self.connections[session_id]
            await self._finish(conn)

    def _session_doc(self, conn: Connection, status: str = "connected", reconnect_url: str | None = None
                     ) -> dict[str, Any]:
        return {
            "id": conn.session_id,
            "status": status,
            "connected_at": catalog.timestamp(conn.connected_at),
            "keepalive_timeout_seconds": None if status == "reconnecting" else conn.keepalive,
            "reconnect_url": reconnect_url,
            "recovery_url": None,
        }

    async def _announce(self, conn: Connection) -> None:
        doc = json.dumps({"conn": conn.conn_id, "keepalive": conn.keepalive}).encode()
        await self.platform.bus.set(SESSION_KEY + conn.session_id, doc, ttl=conn.keepalive * 2 + 60)

    async def _serve(self, conn: Connection, reconnected: bool) -> None:
        reader = asyncio.create_task(self._read(conn))
        unused_deadline = None if reconnected else asyncio.get_running_loop().time() + self.unused_timeout
        interval = max(1.0, conn.keepalive * 0.75)
        loop = asyncio.get_running_loop()
        announced = loop.time()
        try:
            while not reader.done():
                if loop.time() - announced > conn.keepalive:
                    await self._announce(conn)
                    announced = loop.time()
                getter = asyncio.create_task(conn.queue.get())
                moved = asyncio.create_task(conn.moved.wait())
                timeout = interval
                if unused_deadline is not None:
                    timeout = max(0.05, min(interval, unused_deadline - asyncio.get_running_loop().time()))
                done, _ = await asyncio.wait({getter, moved, reader}, timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                for task in (getter, moved):
                    if not task.done():
                        task.cancel()
                if moved in done:
                    await self._close(conn, 1000, "moved to a new connection")
                    return
                if getter in done:
                    await conn.websocket.send_text(getter.result().decode())
                    continue
                if reader in done:
                    return
                if unused_deadline is not None and asyncio.get_running_loop().time() >= unused_deadline:
                    unused_deadline = None
                    if not await self._has_subscriptions(conn.session_id):
                        await self._close(conn, 4003, "connection unused")
                        return
                    continue
                await conn.websocket.send_text(ws_message("session_keepalive", {}).decode())
                await self._announce(conn)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _read(self, conn: Connection) -> None:
        while True:
            message = await conn.websocket.receive()
            if message["type"] == "websocket.disconnect":
                conn.close_code = conn.close_code or 1000
                return
            # Twitch's rule: clients must not send anything but pongs.
            await self._close(conn, 4001, "client sent inbound traffic")
            return

    async def _close(self, conn: Connection, code: int, reason: str) -> None:
        conn.close_code = code
        if conn.websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await conn.websocket.close(code=code, reason=reason)

    async def _has_subscriptions(self, session_id: str) -> bool:
        async with self.platform.db.session() as db:
            count = (
                await db.execute(
                    select(func.count()).select_from(EventSubSubscription).where(
                        EventSubSubscription.session_id == session_id)
                )
            ).scalar()
        return bool(count)

    async def _finish(self, conn: Connection) -> None:
        """The connection ended: unless a newer connection took the session over, end its subscriptions."""
        raw = await self.platform.bus.get(SESSION_KEY + conn.session_id)
        if raw is not None and json.loads(raw).get("conn") != conn.conn_id:
            return  # the session moved (reconnect)
        await self.platform.bus.delete(SESSION_KEY + conn.session_id)
        status = CLOSE_REASONS.get(conn.close_code or 0, ("", "websocket_disconnected"))[1]
        async with self.platform.db.session() as db:
            await db.execute(
                update(EventSubSubscription)
                .where(EventSubSubscription.session_id == conn.session_id, EventSubSubscription.status == "enabled")
                .values(status=status, disconnected_at=utcnow())
            )
        event(log, "eventsub websocket closed", session=conn.session_id, code=conn.close_code, status=status)

    async def drain(self) -> int:
        """Ask every connection on this node to move (``session_reconnect``); returns how many were asked."""
        asked = 0
        for conn in list(self.connections.values()):
            token = secrets.token_urlsafe(24)
            await self.platform.bus.set(
                RECONNECT_KEY + token,
                json.dumps({"session_id": conn.session_id, "keepalive": conn.keepalive}).encode(),
                ttl=self.reconnect_grace,
            )
            url = f"{self.ws_base()}/ws?reconnect_id={token}"
            message = ws_message("session_reconnect",
                                 {"session": self._session_doc(conn, "reconnecting", url)})
            with contextlib.suppress(asyncio.QueueFull):
                conn.queue.put_nowait(message)
            asyncio.get_running_loop().call_later(self.reconnect_grace, self._expire, conn)
            asked += 1
        return asked

    async def wait_moved(self, timeout: float) -> None:
        """Until every connection here has been taken over elsewhere (or closed), at most ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            left = []
            for conn in list(self.connections.values()):
                raw = await self.platform.bus.get(SESSION_KEY + conn.session_id)
                if raw is None or json.loads(raw).get("conn") == conn.conn_id:
                    left.append(conn)
            if not left:
                return
            await asyncio.sleep(0.1)

    def _expire(self, conn: Connection) -> None:
        if self.connections.get(conn.session_id) is conn and not conn.moved.is_set():
            task = asyncio.ensure_future(self._close(conn, 4004, "reconnect grace time expired"))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        for conn in list(self.connections.values()):
            await self._close(conn, 1001, "server shutting down")
        if self._sub is not None:
            await self._sub.close()
        if self._router is not None:
            self._router.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._router


def manager_for(platform: Platform) -> WsManager:
    manager = platform.state.get("eventsub.ws")
    if manager is None:
        manager = WsManager(platform)
        platform.state["eventsub.ws"] = manager
    assert isinstance(manager, WsManager)
    return manager


class WsService:
    """Owns the WebSocket manager's lifetime in a process with the ``api`` role."""

    name = "eventsub-ws"

    def __init__(self, platform: Platform) -> None:
        self.manager = manager_for(platform)

    async def start(self) -> dict[str, int]:
        return {}

    async def stop(self) -> None:
        """Graceful drain: ask every session to reconnect (to another api process), give the
        clients a moment to move, then close what is left."""
        if await self.manager.drain():
            await self.manager.wait_moved(DRAIN_WAIT_S)
        await self.manager.close()


def create_service(platform: Platform) -> WsService:
    return WsService(platform)
