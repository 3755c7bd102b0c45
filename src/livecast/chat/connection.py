"""The shell around one TMI session: carries out its events against identity, the chat service
and the hub, for both transports. Transports supply only ``write``/``close`` (an Outlet)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from livecast import metrics
from livecast.chat import commands, rules, service, tmi
from livecast.chat.rooms import Hub, variant_of
from livecast.chat.session import (
    Authenticate,
    Closed,
    Event,
    JoinRequested,
    MessageRequested,
    PartRequested,
    TmiSession,
)
from livecast.chat.state import Chatter
from livecast.identity import service as identity
from livecast.logs import event
from livecast.outage import is_backend_outage, outage_logged
from livecast.platform import Platform

log = logging.getLogger("livecast.chat")

MAX_BUFFERED_BYTES = 1 << 20  # a client this far behind is not reading: drop it
MAX_REFUSED_JOINS = 50


class Outlet(Protocol):
    text: bool
    # the transport's write without checks, for the room's fan-out; None: none is safe
    sink: Callable[[Any], None] | None

    def write(self, data: bytes | str) -> None: ...

    def buffered(self) -> int: ...

    def close(self) -> None: ...


class ChatConnection:
    def __init__(self, platform: Platform, hub: Hub, outlet: Outlet, peer: str, transport: str) -> None:
        self.platform = platform
        self.hub = hub
        self.outlet = outlet
        self.peer = peer
        self.transport = transport
        self.session = TmiSession()
        self.key = hub.new_key()
        self.login = ""
        self.variant = 0
        self.sink: Callable[[Any], None] = outlet.sink or self.deliver
        self.fd: int = getattr(outlet, "fd", -1)
        self.direct: asyncio.WriteTransport | None = getattr(outlet, "transport", None) if self.fd >= 0 else None
        self.chatter: Chatter | None = None
        self.scopes: tuple[str, ...] = ()
        self.refused_joins = 0
        self.closed = False
        metrics.chat_connections.labels(transport).inc()

    # Member protocol, called by the hub ---------------------------------------------------------
    def deliver(self, data: bytes | str) -> None:
        if self.closed:
            return
        self.outlet.write(data)
        self.check_backlog()

    def check_backlog(self) -> None:
        if not self.closed and self.outlet.buffered() > MAX_BUFFERED_BYTES:
            metrics.chat_slow_disconnects.inc()
            event(log, "chat slow consumer dropped", login=self.login or "-", peer=self.peer)
            self.shutdown()

    # Input ------------------------------------------------------------------------------------------
    async def receive_data(self, data: bytes) -> None:
        await self.handle(self.session.receive_data(data))

    async def receive_text(self, text: str) -> None:
        await self.handle(self.session.receive_text(text))

    async def handle(self, events: list[Event]) -> None:
        queue = list(events)
        while queue:
            ev = queue.pop(0)
            if self.closed:
                return
            try:
                await self._handle(ev)
                if isinstance(ev, Authenticate):
                    queue[:0] = self.session.release_held()
            except Exception as exc:
                if is_backend_outage(exc) and not isinstance(ev, Authenticate):
                    # Redis or the database is down: this line was not carried out, but the
                    # connection is fine and the backend will be back; say so and keep it.
                    metrics.errors.labels("backend_unavailable").inc()
                    outage_logged(log, f"chat {type(ev).__name__}", exc)
                    channel = getattr(ev, "channel", None) or next(iter(getattr(ev, "channels", ())), None)
                    self.session.send(tmi.notice(f"#{channel}" if channel else "*", "msg_service_unavailable",
                                                 "Chat is temporarily unavailable; that was not sent. Try again."))
                    self.flush()
                    continue
                if is_backend_outage(exc):  # a login that cannot be checked now: come back later
                    metrics.errors.labels("backend_unavailable").inc()
                    outage_logged(log, "chat login", exc)
                    self.session.send(tmi.notice("*", "msg_service_unavailable",
                                                 "Login unavailable for a moment; please reconnect shortly."))
                    self.session.close("Service unavailable")
                    self.flush()
                    continue
                metrics.errors.labels("chat").inc()
                log.exception("chat connection error")
                self.session.send(tmi.notice("*", "", "Internal error; please reconnect"))
                self.session.close("Internal error")
            self.flush()
        self.flush()
        if self.session.closed:
            self.shutdown()

    async def _handle(self, ev: Event) -> None:
        if isinstance(ev, Authenticate):
            await self._login(ev)
        elif isinstance(ev, JoinRequested):
            for channel in ev.channels:
                await self._join(channel)
        elif isinstance(ev, PartRequested):
            for channel in ev.channels:
                if channel in self.session.channels:
                    self.session.channels.discard(channel)
                    self.hub.part(channel, self)
                    self.session.send(tmi.part_echo(self.login, channel))
        elif isinstance(ev, MessageRequested):
            await self._message(ev)
        elif isinstance(ev, Closed):
            pass

    async def _login(self, ev: Authenticate) -> None:
        if ev.password is None:
            self.session.accept_login(ev.nick, anonymous=True, userstate={})
        else:
            if not await rules.allow_auth(self.platform.bus, self.peer):
                self.session.send(tmi.notice("*", "", "Login unsuccessful: too many failed attempts; try later"))
                self.session.reject_login()
                return
            async with self.platform.db.session() as db:
                info = await identity.validate_token(db, ev.password)
                user = await identity.get_user(db, info.user_id) if info and info.user_id else None
            if info is None or user is None or not {"chat:read", "chat:edit"} & set(info.scopes):
                event(log, "chat login failed", peer=self.peer, nick=ev.nick)
                await rules.auth_failed(self.platform.bus, self.peer)
                self.session.reject_login()
                return
            self.chatter = Chatter.from_user(user)
            self.scopes = info.scopes
            self.session.accept_login(user.login, anonymous=False,
                                      userstate=service.global_userstate_tags(self.chatter))
        self.login = self.session.login
        self.variant = variant_of(self.session.caps, self.outlet.text)
        self.hub.register_user(self)

    async def _join(self, channel: str) -> None:
        if channel in self.session.channels:
            return
        if not await rules.allow_join(self.platform.bus, self.login or self.peer):
            self.refused_joins += 1
            self.session.send(tmi.notice(f"#{channel}", "msg_ratelimit",
                                         "You are joining channels too quickly; slow down."))
            if self.refused_joins > MAX_REFUSED_JOINS:
                self.session.close("Too many JOINs")
            return
        state = await service.cache(self.platform).get(channel)
        if state is None:
            self.session.send(tmi.notice(f"#{channel}", "msg_channel_suspended",
                                         "This channel does not exist or has been suspended."))
            return
        self.session.channels.add(channel)
        self.hub.join(channel, self)
        caps = self.session.caps
        self.session.send(tmi.join_echo(self.login, channel), *tmi.names(self.login, channel, [self.login]))
        if "twitch.tv/commands" in caps:
            if self.chatter is not None:
                self.session.send(tmi.userstate(channel, service.userstate_tags(state, self.chatter)))
            self.session.send(tmi.roomstate(channel, state.settings.roomstate_tags(state.channel_id)))

    async def _message(self, ev: MessageRequested) -> None:
        channel = ev.channel
        if self.chatter is None or "chat:edit" not in self.scopes:
            self.session.send(tmi.notice(f"#{channel}", "msg_anon_or_read_only",
                                         "You must log in with a chat:edit token to send messages."))
            return
        text = ev.text
        if commands.is_command(text):
            try:
                replies, replacement = await commands.run(self.platform, channel, self.chatter, text)
            except service.ChatError as exc:
                self.session.send(tmi.notice(f"#{channel}", exc.code, exc.message))
                return
            self.session.send(*replies)
            if replacement is None:
                return
            text = replacement
        try:
            result = await service.send_message(
                self.platform, channel, self.chatter, text, reply_parent_id=ev.reply_parent_id,
                exclude=self.key, client_nonce=ev.client_nonce,
            )
        except service.ChatError as exc:
            self.session.send(tmi.notice(f"#{channel}", exc.code, exc.message))
            return
        if result.rejection is not None:
            self.session.send(tmi.notice(f"#{channel}", result.rejection.msg_id, result.rejection.text))
            return
        if "twitch.tv/commands" in self.session.caps:
            self.session.send(tmi.userstate(channel, {**result.userstate, "id": result.message_id}))

    # Output -----------------------------------------------------------------------------------------
    def flush(self) -> None:
        data = self.session.data_to_send()
        if data and not self.closed:
            self.outlet.write(data.decode() if self.outlet.text else data)

    def shutdown(self) -> None:
        """Leave every room and close the transport (idempotent)."""
        if self.closed:
            return
        self.flush()
        self.closed = True
        self.hub.forget(self, self.session.channels)
        metrics.chat_connections.labels(self.transport).dec()
        self.outlet.close()

    def __hash__(self) -> int:
        return id(self)
