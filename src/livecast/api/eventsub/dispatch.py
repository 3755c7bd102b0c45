"""Domain events on the bus become EventSub notifications.

Producers publish ``event.<type>`` JSON (``livecast.bus.publish_event``). For each event the
dispatcher finds the enabled subscriptions whose condition selects it: webhook ones get a row
in the durable outbox, WebSocket ones get a message on their session's bus channel and in its
replay log (``service.publish_to_session``). Only one
worker process dispatches at a time (a lease in the bus, see ``worker``), so each event becomes
exactly one message per subscription even with several workers; two identical payloads
published twice (two ``channel.chat.clear`` in a row) are two events.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from sqlalchemy import select

from livecast.api.eventsub import catalog
from livecast.api.eventsub.models import EventSubMessage, EventSubSubscription, new_uuid
from livecast.api.eventsub.service import WAKE_CHANNEL, publish_to_session, subscription_json, ws_message
from livecast.logs import event as log_event
from livecast.platform import Platform

log = logging.getLogger("livecast.eventsub")


def _insert_ignore(dialect: str) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def dispatch(platform: Platform, topic: str, data: bytes, key: str | None = None) -> int:
    """Turn one bus event into notifications; returns how many subscriptions it reached.

    ``key`` names the event in the outbox; a caller that retries the same event after a
    failure passes the same key, so a retry after a commit that did happen adds no second
    message (the ``(subscription_id, event_key)`` unique constraint).
    """
    name = topic.removeprefix("event.")
    if name not in catalog.NAMES:
        return 0
    try:
        payload = json.loads(data)
    except ValueError:
        log_event(log, "eventsub: dropping malformed event", level=logging.WARNING, topic=topic)
        return 0
    if not isinstance(payload, dict):
        return 0
    event = {k: v for k, v in payload.items() if not k.startswith("_")}
    key = key or uuid.uuid4().hex
    webhook_rows: list[dict[str, Any]] = []
    ws_messages: list[tuple[EventSubSubscription, str]] = []
    async with platform.db.session() as db:
        subs = (
            await db.execute(
                select(EventSubSubscription).where(EventSubSubscription.type == name,
                                                   EventSubSubscription.status == "enabled")
            )
        ).scalars().all()
        for sub in subs:
            sub_type = catalog.TYPES.get((sub.type, sub.version))
            if sub_type is None or not catalog.matches(sub_type, sub.condition, event):
                continue
            body = json.dumps({"subscription": subscription_json(sub), "event": event}, separators=(",", ":"))
            if sub.method == "webhook":
                webhook_rows.append({"message_id": new_uuid(), "subscription_id": sub.id, "event_key": key,
                                     "kind": "notification", "body": body, "status": "pending", "attempts": 0,
                                     "last_error": ""})
            else:
                ws_messages.append((sub, body))
        if webhook_rows:
            insert = _insert_ignore(platform.db.dialect)
            stmt = insert(EventSubMessage).values(webhook_rows).on_conflict_do_nothing()
            await db.execute(stmt)
    if webhook_rows:
        await platform.bus.publish(WAKE_CHANNEL, b"deliver")
    for sub, body in ws_messages:
        payload_doc = json.loads(body)
        await publish_to_session(platform.bus, sub.session_id, ws_message("notification", payload_doc, sub))
    return len(webhook_rows) + len(ws_messages)
