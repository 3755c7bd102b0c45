"""``GET /channels`` and ``PATCH /channels``; a change publishes ``channel.update``."""

from __future__ import annotations

import re

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import Response
from sqlalchemy import select, update

from livecast.api.helix import render
from livecast.api.helix.auth import Caller, check_ids, requires
from livecast.api.helix.errors import HelixError, bad_request, unauthorized
from livecast.api.helix.respond import json_response, no_content
from livecast.api.helix.schemas import ERRORS, ChannelInfo, Data, ModifyChannel
from livecast.bus import publish_event
from livecast.discovery.models import Category
from livecast.identity.models import Channel, User
from livecast.ingest.models import Stream

router = APIRouter()

TAG_RE = re.compile(r"^[^\W_]{1,25}$", re.UNICODE)
LANG_RE = re.compile(r"^([a-z]{2}|other)$")


@router.get("/channels", responses={200: {"model": Data[ChannelInfo]}, **ERRORS})
async def get_channels(
    broadcaster_id: list[str] = Query(default=[], description="Up to 100 broadcaster ids"),
    caller: Caller = Depends(requires()),
) -> Response:
    if not broadcaster_id:
        raise bad_request("Missing required parameter \"broadcaster_id\"")
    check_ids("broadcaster_id", broadcaster_id)
    async with caller.platform.db.session() as db:
        rows = (
            await db.execute(
                select(User, Channel).join(Channel, Channel.id == User.id).where(User.id.in_(broadcaster_id))
            )
        ).all()
    return json_response({"data": [render.channel(u, c) for u, c in rows]})


@router.patch("/channels", status_code=204, responses={204: {"description": "Updated"}, **ERRORS})
async def modify_channel(
    broadcaster_id: str = Query(description="Must be the user in the token"),
    body: ModifyChannel = Body(),
    caller: Caller = Depends(requires("channel:manage:broadcast", user=True)),
) -> Response:
    if caller.user_id != broadcaster_id:
        raise unauthorized("The ID in broadcaster_id must match the user ID found in the request's OAuth token")
    fields = body.model_dump(exclude_none=True)
    fields.pop("content_classification_labels", None)
    if not fields and body.content_classification_labels is None:
        raise bad_request("The request must update at least one field")
    async with caller.platform.db.session() as db:
        channel = await db.get(Channel, broadcaster_id)
        owner = await db.get(User, broadcaster_id)
        if channel is None or owner is None:
            raise bad_request("The broadcaster does not exist")
        if body.title is not None:
            if len(body.title) > 140:
                raise bad_request("The title may not be longer than 140 characters")
            if not body.title.strip():
                raise bad_request("The title may not be empty")
            channel.title = body.title
        if body.game_id is not None:
            if body.game_id in {"", "0"}:
                channel.category_id, channel.category_name = "", ""
            else:
                category = await db.get(Category, body.game_id)
                if category is None:
                    raise bad_request("The game_id is not valid")
                channel.category_id, channel.category_name = category.id, category.name
        if body.broadcaster_language is not None:
            if not LANG_RE.match(body.broadcaster_language):
                raise bad_request("The broadcaster_language must be an ISO 639-1 code or \"other\"")
            channel.language = body.broadcaster_language
        if body.tags is not None:
            if len(body.tags) > 10:
                raise bad_request("A channel may have at most 10 tags")
            seen: dict[str, None] = {}
            for tag in body.tags:
                if not TAG_RE.match(tag):
                    raise bad_request(f"The tag {tag[:40]!r} is invalid: letters and digits only, 25 at most")
                seen.setdefault(tag, None)
            channel.tags = list(seen)
        if body.delay is not None:
            if not 0 <= body.delay <= 900:
                raise bad_request("The delay must be between 0 and 900 seconds")
            if body.delay and owner.broadcaster_type != "partner":
                raise HelixError(403, "Only partners may set a stream delay")
            channel.delay = body.delay
        if body.is_branded_content is not None:
            channel.is_branded_content = body.is_branded_content
        await db.execute(
            update(Stream)
            .where(Stream.user_id == broadcaster_id, Stream.status.in_(render.LIVE))
            .values(title=channel.title, category_id=channel.category_id, category_name=channel.category_name,
                    language=channel.language, tags=list(channel.tags))
        )
        event = {
            "broadcaster_user_id": owner.id,
            "broadcaster_user_login": owner.login,
            "broadcaster_user_name": owner.display_name,
            "title": channel.title,
            "language": channel.language,
            "category_id": channel.category_id,
            "category_name": channel.category_name,
            "content_classification_labels": [],
        }
    await publish_event(caller.platform.bus, "channel.update", event)
    return no_content()
