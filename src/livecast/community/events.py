"""What community changes announce: EventSub events and the channel page's live widgets.

Service functions collect events in an :class:`~livecast.community.points.Outbox` while their
transaction runs; :func:`publish` sends them after the commit, so a rolled-back bet never
shows up. Every event goes to two places: ``event.<type>`` for EventSub (Twitch's payloads
field for field) and ``community.<channel id>`` for the widgets' server-sent events stream.

Progress (``channel.prediction.progress``, ``channel.poll.progress``) is coalesced: a burst of
a thousand bets becomes one event per :data:`PROGRESS_DELAY` with the totals read after the
burst, not a thousand events with totals that are stale on arrival. The widgets' rendered
public state (see :mod:`widgets`) is coalesced the same way, so a rush of redemptions renders
it a few times a second, not once per redemption.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.bus import publish_event
from livecast.identity.models import User
from livecast.platform import Platform

log = logging.getLogger("livecast.community")

PROGRESS_DELAY = 0.25


def widget_topic(channel_id: str) -> str:
    return f"community.{channel_id}"


async def users(db: AsyncSession, ids: set[str] | list[str]) -> dict[str, User]:
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    rows = await db.execute(select(User).where(User.id.in_(wanted)))
    return {u.id: u for u in rows.scalars()}


def people(prefix: str, user: User | None, fallback_id: str = "") -> dict[str, str]:
    """``{prefix}_id``, ``{prefix}_login``, ``{prefix}_name`` as EventSub and Helix spell them."""
    return {f"{prefix}_id": user.id if user else fallback_id, f"{prefix}_login": user.login if user else "",
            f"{prefix}_name": (user.display_name or user.login) if user else ""}


async def publish(platform: Platform, out: Any) -> None:
    from livecast.community.widgets import STATE_TOPICS

    changed: list[str] = []
    for topic, channel_id, payload in out.events:
        if topic:
            # "_id" (dropped before delivery) keeps two identical payloads apart as two events.
            await publish_event(platform.bus, topic, {**payload, "_id": uuid.uuid4().hex})
        name = topic or payload.get("type", "")
        if name in STATE_TOPICS:
            if channel_id not in changed:
                changed.append(channel_id)
            continue  # the rendered state below tells the pages
        await _to_pages(platform, channel_id, {"topic": name, "event": payload})
    for channel_id in changed:
        _schedule_progress(platform, "state", channel_id)
    for kind, ref in out.progress:
        _schedule_progress(platform, kind, ref)


async def _to_pages(platform: Platform, channel_id: str, doc: dict[str, Any]) -> None:
    await platform.bus.publish(widget_topic(channel_id), json.dumps(doc, separators=(",", ":"),
                                                                    default=str).encode())


async def _publish_state(platform: Platform, channel_id: str) -> None:
    """Render the widgets' public part once and push it to every open page of the channel."""
    from livecast.community import widgets

    try:
        async with platform.db.session() as db:
            doc = await widgets.public(db, channel_id)
    except Exception:  # the change is committed; pages catch up on their next event or load
        log.exception("community: rendering widget state for %s failed", channel_id)
        return
    await _to_pages(platform, channel_id, {"topic": "state", "state": doc})


def _schedule_progress(platform: Platform, kind: str, ref: str) -> None:
    pending: dict[str, asyncio.Task[None]] = platform.state.setdefault("community.progress", {})
    key = f"{kind}:{ref}"
    if key in pending and not pending[key].done():
        return
    pending[key] = asyncio.get_running_loop().create_task(_progress(platform, kind, ref, pending, key))


async def _progress(platform: Platform, kind: str, ref: str, pending: dict[str, Any], key: str) -> None:
    await asyncio.sleep(PROGRESS_DELAY)
    pending.pop(key, None)  # bets after this point schedule the next one
    if kind == "state":
        await _publish_state(platform, ref)
        return
    try:
        from livecast.community import points, polls, predictions

        async def build(db: AsyncSession, out: points.Outbox) -> None:
            if kind == "prediction":
                await predictions.announce_progress(db, out, ref)
            else:
                await polls.announce_progress(db, out, ref)

        await points.run(platform, build)
    except Exception:
        log.exception("community: progress event for %s failed", key)


async def drain(platform: Platform) -> None:
    """Wait for scheduled progress events (tests, shutdown)."""
    pending: dict[str, asyncio.Task[None]] = platform.state.get("community.progress", {})
    for task in list(pending.values()):
        with contextlib.suppress(Exception):
            await task
