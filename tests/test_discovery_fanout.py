"""Go-live fan-out to 100,000 followers on PostgreSQL, driven by ``event.stream.online``.

Correctness only (everyone who wants it is notified exactly once, opt-outs are not); the time
it takes is measured by ``python -m bench discovery``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text

from livecast.bus import publish_event
from livecast.discovery.models import Notification
from tests.conftest import Server, wait_for

FOLLOWERS = 100_000
MUTED = 1_000


async def test_stream_online_fans_out_to_100k_followers(pg_server: Server) -> None:
    caster = await pg_server.create_user("bigcaster")
    async with pg_server.platform.db.session() as db:
        await db.execute(text(
            "INSERT INTO users (id, login, display_name, email, password_hash, type, broadcaster_type,"
            " description, profile_image_url, offline_image_url, color, created_at)"
            " SELECT 'f' || g, 'fan' || g, 'fan' || g, '', '', '', '', '', '', '', '', now()"
            " FROM generate_series(1, :n) g"), {"n": FOLLOWERS})
        await db.execute(text(
            "INSERT INTO follows (user_id, channel_id, followed_at) SELECT 'f' || g, :c, now()"
            " FROM generate_series(1, :n) g"), {"n": FOLLOWERS, "c": caster["user_id"]})
        await db.execute(text(
            "INSERT INTO notification_prefs (user_id, channel_id, enabled) SELECT 'f' || g, :c, false"
            " FROM generate_series(1, :n) g"), {"n": MUTED, "c": caster["user_id"]})

    await publish_event(pg_server.platform.bus, "stream.online", {
        "id": "s-100k", "broadcaster_user_id": caster["user_id"], "broadcaster_user_login": "bigcaster",
        "broadcaster_user_name": "bigcaster", "type": "live", "started_at": "2026-01-01T00:00:00Z",
    })

    async def count() -> Any:
        async with pg_server.platform.db.session() as db:
            n = (await db.execute(select(func.count()).select_from(Notification))).scalar()
        return n if n == FOLLOWERS - MUTED else None

    await wait_for(count, timeout=90, interval=0.5)
    async with pg_server.platform.db.session() as db:
        dupes = (await db.execute(text(
            "SELECT count(*) FROM (SELECT user_id FROM notifications GROUP BY user_id HAVING count(*) > 1) d"
        ))).scalar()
        muted = (await db.execute(text(
            "SELECT count(*) FROM notifications n JOIN notification_prefs p ON p.user_id = n.user_id"
        ))).scalar()
    assert dupes == 0 and muted == 0
