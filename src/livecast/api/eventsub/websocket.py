"""EventSub over WebSocket at ``/ws``: welcome, keepalive, notification, reconnect, revocation.

Sessions are announced in the bus (``eventsub:ws:session:<id>``) so a subscription request
served by any API process can check the session exists; notifications reach the node that
holds the connection through the bus channel ``eventsub.session.<id>``. Draining a node
sends ``session_reconnect`` with a one-time URL; the client's new connection adopts the same
session id, so its subscriptions move without being recreated. Close codes are Twitch's:
4001 inbound traffic, 4003 connection unused, 4004 reconnect grace time expired,
4005 network timeout (a client that does not read its notifications), 4007 invalid reconnect.

Delivery is at-least-once across a reconnect (a drain, or any ``session_reconnect``).
Pub/sub alone is not: a notification the old node still had queued, or wrote to a socket
the client had stopped reading once the new connection was welcomed, was gone. So every
message for a session is numbered and kept in a short replay log in the bus
(``service.publish_to_session``: the last ``REPLAY_KEEP`` messages, for the reconnect grace)
as it is published. The cut-over point needs no acknowledgement from the client: one
WebSocket is ordered, so a client that read ``session_reconnect`` has read every message
written before it. The old connection records that position (the highest number it had
queued or sent when ``session_reconnect`` was queued) in the one-time reconnect token; the
new connection, right after its welcome, replays the log from there and then carries on
live, skipping numbers it already sent. Whatever the old connection wrote after
``session_reconnect`` (it keeps delivering until the client moves, as Twitch does) may so
arrive twice, with the same ``message_id``: clients dedupe by it, as Twitch asks. Numbers
are per session and consecutive, so a connection that sees one skipped (pub/sub dropped a
message) fills the gap from the log too; a gap the log no longer covers closes the session
with 4005 rather than letting it carry on as if nothing was missed. An unexpected close of
the client's socket still ends the session and its subscriptions, as on Twitch: only the
graceful handover is lossless.
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
from livecast.api.eventsub.service import RECONNECT_GRACE_S, REPLAY_KEY, SESSION_KEY, ws_message
from livecast.bus import split_logged
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
LOST = (4005, "notifications lost: reconnect to resubscribe")


@dataclass
class Connection:
    session_id: str
    conn_id: str
    websocket: WebSocket
    keepalive: int
    connected_at: Any
    # (number in the session's sequence, message); 0 for this node's own session messages
    queue: asyncio.Queue[tuple[int, bytes]] = field(default_factory=lambda: asyncio.Queue(maxsize=MAX_QUEUED))
    moved: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None
    routed: int = 0  # highest number queued here
    sent: int = 0  # highest number written to the socket (by order, everything below it too)


DRAIN_WAIT_S = 5.0  # at shutdown, how long sessions get to reconnect elsewhere


class WsManager:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.connections: dict[str, Connection] = {}
        self.unused_timeout = 10.0
        self.reconnect_grace = RECONNECT_GRACE_S
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
                seq, message = split_logged(data)
                try:
                    conn.queue.put_nowait((seq, message))
                except asyncio.QueueFull:
                    self._too_slow(conn)
                else:
                    conn.routed = max(conn.routed, seq)

    def _too_slow(self, conn: Connection, why: tuple[int, str] = SLOW_CLIENT) -> None:
        """A session whose queue is full (or whose replay log no longer holds what it missed)
        is closed, not left to lose notifications silently.

        Twitch has no close code of its own for a slow reader; 4005 (network timeout) is the one
        its clients treat as transient, so they reconnect and subscribe again rather than carry
        on believing they saw every event. The close frame goes behind whatever is already
        buffered for the client, and ``close`` aborts the connection if it never answers.
        """
        if conn.close_code is not None:
            return
        conn.close_code = why[0]
        metrics.errors.labels("eventsub_ws_slow_client" if why is SLOW_CLIENT else "eventsub_ws_lost").inc()
        event(log, "eventsub websocket cannot keep up, closing", level=logging.WARNING, session=conn.session_id,
              queued=conn.queue.qsize(), reason=why[1])
        task = asyncio.ensure_future(self._close(conn, *why))
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
        after = 0  # the number of the last message the client surely read (reconnect only)
        if reconnect_id:
            raw = await self.platform.bus.get(RECONNECT_KEY + reconnect_id[:64])
            if raw is None:
                await websocket.accept()
                await websocket.close(code=4007, reason="invalid reconnect")
                return
            await self.platform.bus.delete(RECONNECT_KEY + reconnect_id[:64])
            info = json.loads(raw)
            session_id, keepalive, after = info["session_id"], int(info["keepalive"]), int(info.get("after", 0))
        else:
            session_id = secrets.token_urlsafe(24)
        await websocket.accept()
        conn = Connection(session_id, secrets.token_hex(8), websocket, keepalive, utcnow(), sent=after)
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
            if reconnected and not await self._catch_up(conn):
                return
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
                    seq, message = getter.result()
                    if seq == 1 and conn.sent > 1:
                        conn.sent = 0  # the sequence restarted (it had expired): nothing to skip
                    if seq > conn.sent + 1 and not await self._catch_up(conn, seq):
                        return
                    if seq == 0 or seq > conn.sent:
                        await conn.websocket.send_text(message.decode())
                        conn.sent = max(conn.sent, seq)
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

    async def _catch_up(self, conn: Connection, upto: int | None = None) -> bool:
        """Send what the session's replay log holds after ``conn.sent``: after the welcome of a
        reconnect (what the old connection may not have delivered), or before message ``upto``
        when the live numbers skipped some. False (and the session closed with 4005) when the
        log no longer holds them all."""
        entries = await self.platform.bus.read_log(REPLAY_KEY + conn.session_id, 0)
        if entries and entries[-1][0] < conn.sent:
            conn.sent = 0  # the sequence restarted (it had expired): every entry is new
        entries = [(seq, message) for seq, message in entries if seq > conn.sent]
        first = entries[0][0] if entries else (upto if upto is not None else conn.sent + 1)
        if first > conn.sent + 1:
            event(log, "eventsub websocket replay incomplete", level=logging.WARNING, session=conn.session_id,
                  after=conn.sent, first=first)
            self._too_slow(conn, LOST)
            return False
        for seq, message in entries:
            if seq > conn.sent:
                await conn.websocket.send_text(message.decode())
                conn.sent = seq
        return True

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
        await self.platform.bus.delete(REPLAY_KEY + conn.session_id)
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
            url = f"{self.ws_base()}/ws?reconnect_id={token}"
            message = ws_message("session_reconnect",
                                 {"session": self._session_doc(conn, "reconnecting", url)})
            # Everything numbered up to here is queued (or sent) ahead of session_reconnect, so
            # the client has read it once it follows the URL; the new connection replays the rest.
            info = {"session_id": conn.session_id, "keepalive": conn.keepalive,
                    "after": max(conn.routed, conn.sent)}
            await self.platform.bus.set(RECONNECT_KEY + token, json.dumps(info).encode(), ttl=self.reconnect_grace)
            if conn.close_code is None and not conn.queue.full():
                conn.queue.put_nowait((0, message))
            else:
                self._too_slow(conn)  # it could not even be told to move (a no-op if closing)
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
