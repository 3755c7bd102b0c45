"""``POST /raids`` and ``DELETE /raids``.

A raid is pending for a short while (Twitch: up to 90 s, while the countdown runs) and then
happens: the raid notice goes to the target's chat and ``channel.raid`` to EventSub. The
pending raid is a bus key, so ``DELETE /raids`` on any API process can cancel it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import select

from livecast.api.helix import chatlink, render
from livecast.api.helix.auth import Caller, requires
from livecast.api.helix.errors import HelixError, bad_request, not_found
from livecast.api.helix.respond import json_response, no_content
from livecast.api.helix.schemas import ERRORS, Data
from livecast.bus import publish_event
from livecast.chat import service as chat
from livecast.chat.state import Chatter
from livecast.discovery import raids
from livecast.ingest.models import Stream
from livecast.platform import Platform
from livecast.store.base import utcnow

router = APIRouter()
RAID_DELAY_S = 5.0


class Raid(BaseModel):
    created_at: str
    is_mature: bool


def _key(broadcaster_id: str) -> str:
    return raids.pending_key(broadcaster_id)


async def _complete(platform: Platform, key: str, payload: dict[str, Any], delay: float) -> None:
    await asyncio.sleep(delay)
    raw = await platform.bus.get(key)
    if raw is None or json.loads(raw).get("nonce") != payload["nonce"]:
        return  # cancelled or replaced
    await platform.bus.delete(key)
    await raids.mark_raided(platform.bus, payload)  # viewers still on the raider's page follow
    event = {k: v for k, v in payload.items() if k not in ("nonce", "starts_at")}
    await publish_event(platform.bus, "channel.raid", event)
    try:
        raider = await chat.user_by_login(platform, payload["from_broadcaster_user_login"])
        await chat.send_usernotice(
            platform, payload["to_broadcaster_user_login"], Chatter.from_user(raider), "raid", "",
            {"msg-param-displayName": raider.display_name, "msg-param-login": raider.login,
             "msg-param-viewerCount": str(payload["viewers"])},
            f"{payload['viewers']} raiders from {raider.display_name} have joined!",
        )
    except chat.ChatError:
        pass


@router.post("/raids", responses={200: {"model": Data[Raid]}, **ERRORS})
async def start_raid(
    from_broadcaster_id: str = Query(), to_broadcaster_id: str = Query(),
    caller: Caller = Depends(requires("channel:manage:raids", user=True)),
) -> Response:
    raider = await chatlink.acting(caller, from_broadcaster_id, "from_broadcaster_id")
    target = await chatlink.user(caller, to_broadcaster_id, "to_broadcaster_id")
    if target.id == raider.user_id:
        raise bad_request("The broadcaster may not raid themselves")
    async with caller.platform.db.session() as db:
        live = (await db.execute(select(Stream).where(Stream.user_id == raider.user_id,
                                                      Stream.status.in_(render.LIVE)))).scalars().first()
    viewers = live.viewer_count if live is not None else 0
    payload = {
        "from_broadcaster_user_id": raider.user_id, "from_broadcaster_user_login": raider.login,
        "from_broadcaster_user_name": raider.display_name, "to_broadcaster_user_id": target.id,
        "to_broadcaster_user_login": target.login, "to_broadcaster_user_name": target.display_name,
        "viewers": viewers, "nonce": secrets.token_hex(8), "starts_at": time.time() + RAID_DELAY_S,
    }
    if not await caller.platform.bus.set(_key(raider.user_id), json.dumps(payload).encode(), ttl=90,
                                         only_if_absent=True):
        raise HelixError(409, "The broadcaster is already raiding another channel")
    pending: set[asyncio.Task[None]] = caller.platform.state.setdefault("helix.raids", set())
    task = asyncio.create_task(_complete(caller.platform, _key(raider.user_id), payload, RAID_DELAY_S))
    pending.add(task)  # keep a reference until the raid completes
    task.add_done_callback(pending.discard)
    return json_response({"data": [{"created_at": render.rfc3339(utcnow()),
                                    "is_mature": bool(live.is_mature) if live else False}]})


@router.delete("/raids", status_code=204, responses={204: {"description": "Cancelled"}, **ERRORS})
async def cancel_raid(
    broadcaster_id: str = Query(), caller: Caller = Depends(requires("channel:manage:raids", user=True)),
) -> Response:
    await chatlink.acting(caller, broadcaster_id, "broadcaster_id")
    if await caller.platform.bus.get(_key(broadcaster_id)) is None:
        raise not_found("The broadcaster doesn't have a pending raid to cancel")
    await caller.platform.bus.delete(_key(broadcaster_id))
    return no_content()
