"""Where a raid stands, for the pages: pending (a countdown) or just done (move the viewers).

Helix ``POST /raids`` keeps the pending raid as a bus key (so any API process can cancel it)
and, once it happens, a short-lived "raided" key. The channel page's status poll reads both:
viewers watching the raider see the countdown, then are taken to the target, as on Twitch.
"""

from __future__ import annotations

import json
import time
from typing import Any

from livecast.bus import Bus

RAIDED_TTL_S = 60.0  # how long viewers still on the raider's page are sent on


def pending_key(broadcaster_id: str) -> str:
    return f"helix:raid:{broadcaster_id}"


def raided_key(broadcaster_id: str) -> str:
    return f"helix:raided:{broadcaster_id}"


async def mark_raided(bus: Bus, payload: dict[str, Any]) -> None:
    doc = {"to_login": payload["to_broadcaster_user_login"], "to_name": payload["to_broadcaster_user_name"],
           "nonce": payload.get("nonce", "")}
    await bus.set(raided_key(payload["from_broadcaster_user_id"]), json.dumps(doc).encode(), ttl=RAIDED_TTL_S)


async def raid_state(bus: Bus, broadcaster_id: str, now: float | None = None) -> dict[str, Any] | None:
    """``{"to_login", "to_name", "id", "in_seconds"}``: 0 seconds once the raid has happened."""
    now = time.time() if now is None else now
    raw = await bus.get(pending_key(broadcaster_id))
    if raw is not None:
        doc = json.loads(raw)
        left = max(0.0, float(doc.get("starts_at", now)) - now)
        return {"to_login": doc["to_broadcaster_user_login"], "to_name": doc["to_broadcaster_user_name"],
                "id": doc.get("nonce", ""), "in_seconds": round(left, 1)}
    raw = await bus.get(raided_key(broadcaster_id))
    if raw is not None:
        doc = json.loads(raw)
        return {"to_login": doc["to_login"], "to_name": doc["to_name"], "id": doc.get("nonce", ""), "in_seconds": 0}
    return None
