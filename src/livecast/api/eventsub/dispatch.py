"""Domain events on the bus become EventSub notifications.

Producers append ``event.<type>`` JSON to the bus's event stream (``livecast.bus.publish_event``);
the worker's dispatcher reads it through a consumer group (see ``worker``). For each event the
dispatcher finds the enabled subscriptions whose condition selects it: webhook ones get a row
in the durable outbox, WebSocket ones get a message on their session's bus channel and in its
replay log (``service.publish_to_session``).

Delivery from the stream is at least once: a dispatcher that dies after dispatching an event
but before acknowledging it leaves it to the next one. So a notification's identity comes
from the event (its stream entry id, the ``key``) and the subscription, never from the
attempt: the outbox row of a second dispatch collides with the first's and is dropped, and a
WebSocket notification sent twice carries the same ``message_id`` both times, which is how
Twitch tells clients to recognise a duplicate. Two identical payloads published twice (two
``channel.chat.clear`` in a row) are two stream entries, so two events.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from sqlalchemy import select

from livecast.api.eventsub import catalog
from livecast.api.eventsub.models import EventSubMessage, EventSubSubscription
from livecast.api.eventsub.service import WAKE_CHANNEL, publish_to_session, subscription_json, ws_message
from livecast.logs import event as log_event
from livecast.platform import Platform
from livecast.store.db import upsert_insert

log = logging.getLogger("livecast.eventsub")


_MESSAGE_IDS = uuid.UUID("6f1d3c8e-4b7a-5e21-9c0d-2a8f6b4e1d37")  # namespace of notification ids


def message_id(key: str, subscription_id: str) -> str:
    """The notification's ``message_id``: the same for every dispatch of one event to one
    subscription, different for anything else."""
    return str(uuid.uuid5(_MESSAGE_IDS, f"{key}/{subscription_id}"))


async def dispatch(platform: Platform, topic: str, data: bytes, key: str | None = None) -> int:
    """Turn one bus event into notifications; returns how many subscriptions it reached.

    ``key`` names the event (its stream entry id); a caller that dispatches the same event
    again, after a failure or a crash, passes the same key, so a retry after a commit that did
    happen adds no second outbox row (the ``(subscription_id, event_key)`` and ``message_id``
    unique constraints) and a WebSocket session gets the same ``message_id`` again. Without a
    key (a one-off caller) the event gets a random one.
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
                webhook_rows.append({"message_id": message_id(key, sub.id), "subscription_id": sub.id,
                                     "event_key": key, "kind": "notification", "body": body, "status": "pending",
                                     "attempts": 0, "last_error": ""})
            else:
                ws_messages.append((sub, body))
        if webhook_rows:
            insert = upsert_insert(platform.db.dialect)
            stmt = insert(EventSubMessage).values(webhook_rows).on_conflict_do_nothing()
            await db.execute(stmt)
    if webhook_rows:
        await platform.bus.publish(WAKE_CHANNEL, b"deliver")
    for sub, body in ws_messages:
        payload_doc = json.loads(body)
        await publish_to_session(platform.bus, sub.session_id,
                                 ws_message("notification", payload_doc, sub, message_id(key, sub.id)))
    return len(webhook_rows) + len(ws_messages)
