"""EventSub subscriptions: create, list, delete and revoke, with Twitch's costs and limits.

Cost: 0 when the type needs authorization or the condition's user has authorized the
client, 1 otherwise. Webhook subscriptions share a budget of 10,000 per client; WebSocket
ones 10 per (client, user), and at most 300 enabled per session. Webhooks start
``webhook_callback_verification_pending`` until the worker's challenge is answered.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.api.eventsub import catalog
from livecast.api.eventsub.models import EventSubMessage, EventSubSubscription, new_uuid
from livecast.bus import Bus
from livecast.identity.models import Token
from livecast.identity.service import TokenInfo
from livecast.platform import Platform
from livecast.store.base import utcnow

WEBHOOK_MAX_TOTAL_COST = 10_000
WEBSOCKET_MAX_TOTAL_COST = 10
WEBSOCKET_MAX_PER_SESSION = 300
PENDING = "webhook_callback_verification_pending"
ACTIVE = ("enabled", PENDING)
SESSION_KEY = "eventsub:ws:session:"
RECONNECT_GRACE_S = 30.0  # how long a session_reconnect URL stays valid (Twitch: 30 s)
REPLAY_KEY = "eventsub:ws:replay:"  # + session id: the session's replay log in the bus
REPLAY_KEEP = 1_000  # messages a session's replay log holds
REPLAY_TTL_S = RECONNECT_GRACE_S + 30  # after the last message, so a late reconnect still finds its log
RESOLVE_TIMEOUT_S = 3.0
WAKE_CHANNEL = "eventsub.wake"


class EventSubError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Budget:
    total: int
    total_cost: int
    max_total_cost: int


def subscription_json(sub: EventSubSubscription) -> dict[str, Any]:
    transport: dict[str, Any] = {"method": sub.method}
    if sub.method == "webhook":
        transport["callback"] = sub.callback
    else:
        transport["session_id"] = sub.session_id
        if sub.connected_at is not None:
            transport["connected_at"] = catalog.timestamp(sub.connected_at)
        if sub.disconnected_at is not None:
            transport["disconnected_at"] = catalog.timestamp(sub.disconnected_at)
    return {
        "id": sub.id,
        "status": sub.status,
        "type": sub.type,
        "version": sub.version,
        "condition": dict(sub.condition),
        "created_at": catalog.timestamp(sub.created_at),
        "transport": transport,
        "cost": sub.cost,
    }


def _scope(caller: TokenInfo, method: str) -> Any:
    if method == "webhook":
        return (EventSubSubscription.client_id == caller.client_id) & (EventSubSubscription.method == "webhook")
    return (
        (EventSubSubscription.client_id == caller.client_id)
        & (EventSubSubscription.method == "websocket")
        & (EventSubSubscription.user_id == caller.user_id)
    )


async def budget(db: AsyncSession, caller: TokenInfo) -> Budget:
    method = "webhook" if caller.is_app_token else "websocket"
    row = (
        await db.execute(
            select(func.count(), func.coalesce(func.sum(EventSubSubscription.cost), 0)).where(
                _scope(caller, method), EventSubSubscription.status.in_(ACTIVE)
            )
        )
    ).one()
    total_all = (
        await db.execute(select(func.count()).select_from(EventSubSubscription).where(_scope(caller, method)))
    ).scalar() or 0
    limit = WEBHOOK_MAX_TOTAL_COST if method == "webhook" else WEBSOCKET_MAX_TOTAL_COST
    return Budget(total=int(total_all), total_cost=int(row[1]), max_total_cost=limit)


async def _has_authorized(db: AsyncSession, client_id: str, user_id: str, scopes: tuple[str, ...]) -> bool:
    rows = (
        await db.execute(
            select(Token.scopes).where(Token.client_id == client_id, Token.user_id == user_id,
                                       Token.revoked.is_(False))
        )
    ).scalars()
    for granted in rows:
        if not scopes or any(s in (granted or []) for s in scopes):
            return True
    return False


async def check_callback(url: str, allow_private: bool) -> str:
    """A callback must be http(s), and must not point into our own network unless allowed."""
    if len(url) > 512:
        raise EventSubError(400, "transport.callback must be at most 512 characters")
    parts = urlsplit(url)
    if parts.scheme not in ({"https", "http"} if allow_private else {"https"}):
        raise EventSubError(400, "transport.callback must use https")
    host = parts.hostname
    if not host:
        raise EventSubError(400, "transport.callback must be an absolute URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise EventSubError(400, "transport.callback has an invalid port") from None
    if parts.scheme == "https" and port != 443 and not allow_private:
        raise EventSubError(400, "transport.callback must use port 443")
    if allow_private:
        return url
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S)
    except (OSError, TimeoutError):
        raise EventSubError(400, "transport.callback host does not resolve") from None
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if not addr.is_global:
            raise EventSubError(400, "transport.callback must not point to a private or loopback address")
    return url


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


async def create(platform: Platform, caller: TokenInfo, body: Any) -> tuple[EventSubSubscription, Budget]:
    if not isinstance(body, dict):
        raise EventSubError(400, "the request body must be a JSON object")
    name, version = body.get("type"), body.get("version")
    if not isinstance(name, str) or not isinstance(version, str):
        raise EventSubError(400, "type and version are required strings")
    try:
        sub_type = catalog.lookup(name, version)
        condition = catalog.normalize_condition(sub_type, body.get("condition"))
    except catalog.ConditionError as exc:
        raise EventSubError(400, str(exc)) from None
    transport = body.get("transport")
    if not isinstance(transport, dict) or transport.get("method") not in {"webhook", "websocket"}:
        raise EventSubError(400, "transport.method must be webhook or websocket")
    method = transport["method"]
    if method == "webhook" and not caller.is_app_token:
        raise EventSubError(400, "webhook subscriptions require an app access token")
    if method == "websocket" and caller.is_app_token:
        raise EventSubError(400, "websocket subscriptions require a user access token")
    if method == "websocket" and sub_type.webhook_only:
        raise EventSubError(400, f"{sub_type.name} is only available over webhooks")
    if sub_type.name == "user.authorization.revoke" and condition["client_id"] != caller.client_id:
        raise EventSubError(403, "condition.client_id must be the client id of the access token")

    callback = secret = session_id = ""
    if method == "webhook":
        callback = _text(transport.get("callback"))
        secret = _text(transport.get("secret"))
        if not callback:
            raise EventSubError(400, "transport.callback is required for webhooks")
        if not 10 <= len(secret) <= 100 or not secret.isascii():
            raise EventSubError(400, "transport.secret must be 10 to 100 ASCII characters")
        await check_callback(callback, platform.settings.eventsub_allow_private_callbacks)
    else:
        session_id = _text(transport.get("session_id"))
        if not session_id or len(session_id) > 64:
            raise EventSubError(400, "transport.session_id is required for websockets")
        if await platform.bus.get(SESSION_KEY + session_id) is None:
            raise EventSubError(400, "websocket transport session does not exist or has already disconnected")

    async with platform.db.session() as db:
        cost = 1
        if sub_type.authorizer:
            user_id = condition[sub_type.authorizer]
            if method == "websocket":
                ok = caller.user_id == user_id and any(s in caller.scopes for s in sub_type.scopes)
            else:
                ok = await _has_authorized(db, caller.client_id, user_id, sub_type.scopes)
            if not ok:
                raise EventSubError(403, "subscription missing proper authorization")
            cost = 0
        else:
            for key in ("broadcaster_user_id", "user_id", "to_broadcaster_user_id", "from_broadcaster_user_id"):
                uid = condition.get(key)
                if uid and (caller.user_id == uid or await _has_authorized(db, caller.client_id, uid, ())):
                    cost = 0
                    break
            if sub_type.name == "user.authorization.revoke":
                cost = 0
        key = catalog.condition_key(condition)
        duplicate = (
            await db.execute(
                select(EventSubSubscription.id).where(
                    EventSubSubscription.client_id == caller.client_id,
                    EventSubSubscription.type == sub_type.name,
                    EventSubSubscription.version == sub_type.version,
                    EventSubSubscription.condition_key == key,
                    EventSubSubscription.method == method,
                    EventSubSubscription.callback == callback,
                    EventSubSubscription.session_id == session_id,
                    EventSubSubscription.status.in_(ACTIVE),
                )
            )
        ).first()
        if duplicate is not None:
            raise EventSubError(409, "subscription already exists")
        current = await budget(db, caller)
        if current.total_cost + cost > current.max_total_cost:
            raise EventSubError(429, "subscription cost limit exceeded")
        if method == "websocket":
            per_session = (
                await db.execute(
                    select(func.count()).select_from(EventSubSubscription).where(
                        EventSubSubscription.session_id == session_id, EventSubSubscription.status == "enabled"
                    )
                )
            ).scalar() or 0
            if per_session >= WEBSOCKET_MAX_PER_SESSION:
                raise EventSubError(429, "too many subscriptions on this websocket session")
        now = utcnow()
        sub = EventSubSubscription(
            id=new_uuid(), type=sub_type.name, version=sub_type.version, condition=condition, condition_key=key,
            client_id=caller.client_id, user_id=caller.user_id, method=method, callback=callback, secret=secret,
            session_id=session_id, status=PENDING if method == "webhook" else "enabled", cost=cost,
            created_at=now, connected_at=now if method == "websocket" else None,
        )
        db.add(sub)
        await db.flush()
        after = await budget(db, caller)
    if method == "webhook":
        await platform.bus.publish(WAKE_CHANNEL, b"verify")
    return sub, after


async def listing(
    platform: Platform, caller: TokenInfo, *, status: str | None, type_: str | None, user_id: str | None,
    subscription_id: str | None, after: str | None, first: int = 100,
) -> tuple[list[EventSubSubscription], Budget, str | None]:
    method = "webhook" if caller.is_app_token else "websocket"
    stmt = select(EventSubSubscription).where(_scope(caller, method))
    if status:
        stmt = stmt.where(EventSubSubscription.status == status)
    if type_:
        stmt = stmt.where(EventSubSubscription.type == type_)
    if subscription_id:
        stmt = stmt.where(EventSubSubscription.id == subscription_id)
    if after:
        stmt = stmt.where(EventSubSubscription.id > after)
    stmt = stmt.order_by(EventSubSubscription.id)
    async with platform.db.session() as db:
        rows = list((await db.execute(stmt)).scalars())
        current = await budget(db, caller)
    if user_id:
        rows = [r for r in rows if user_id in {v for k, v in r.condition.items() if k.endswith("user_id")}]
    more = len(rows) > first
    rows = rows[:first]
    return rows, current, (rows[-1].id if more else None)


async def delete(platform: Platform, caller: TokenInfo, subscription_id: str) -> bool:
    async with platform.db.session() as db:
        sub = await db.get(EventSubSubscription, subscription_id)
        if sub is None or sub.client_id != caller.client_id:
            return False
        if sub.method == "websocket" and sub.user_id != caller.user_id:
            return False
        await db.delete(sub)
    return True


def ws_message(message_type: str, payload: dict[str, Any], sub: EventSubSubscription | None = None,
               message_id: str | None = None) -> bytes:
    metadata: dict[str, Any] = {
        "message_id": message_id or new_uuid(),
        "message_type": message_type,
        "message_timestamp": catalog.timestamp(utcnow()),
    }
    if sub is not None:
        metadata["subscription_type"] = sub.type
        metadata["subscription_version"] = sub.version
    return json.dumps({"metadata": metadata, "payload": payload}, separators=(",", ":")).encode()


async def publish_to_session(bus: Bus, session_id: str, message: bytes) -> int:
    """Send a message to an EventSub WebSocket session, wherever it is connected.

    Through the session's replay log (``Bus.publish_logged``), not bare pub/sub: the node that
    takes a session over on reconnect replays what the client may not have read yet (see
    ``websocket``). Returns the message's number in the session's sequence.
    """
    return await bus.publish_logged(f"eventsub.session.{session_id}", REPLAY_KEY + session_id, message,
                                    REPLAY_KEEP, REPLAY_TTL_S)


async def revoke(db: AsyncSession, bus: Bus, sub: EventSubSubscription, status: str) -> None:
    """End a subscription for ``status`` and tell its transport, as Twitch does."""
    sub.status = status
    body = json.dumps({"subscription": subscription_json(sub)}, separators=(",", ":"))
    if sub.method == "webhook":
        pending = (
            await db.execute(
                select(EventSubMessage).where(EventSubMessage.subscription_id == sub.id,
                                              EventSubMessage.status == "pending")
            )
        ).scalars()
        for msg in pending:
            msg.status = "failed"
        db.add(EventSubMessage(subscription_id=sub.id, event_key=f"revocation:{status}"[:64], kind="revocation",
                               body=body))
        await db.flush()
        await bus.publish(WAKE_CHANNEL, b"deliver")
    else:
        await publish_to_session(bus, sub.session_id,
                                 ws_message("revocation", {"subscription": subscription_json(sub)}, sub))
