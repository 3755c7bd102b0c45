"""Chat over Helix: settings, sending, chatters, announcements, colors, emotes and badges."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import or_, select

from livecast.api.helix import chatlink, pagination
from livecast.api.helix.auth import Caller, check_ids, requires
from livecast.api.helix.errors import HelixError, bad_request
from livecast.api.helix.respond import json_response, no_content
from livecast.api.helix.schemas import ERRORS, CountedPage, Data
from livecast.chat import emotes as emote_rules
from livecast.chat import service as chat
from livecast.chat.models import ChatRole, ChatSettings, Emote
from livecast.chat.rules import RoomSettings
from livecast.identity.models import User

router = APIRouter()


class Settings(BaseModel):
    broadcaster_id: str
    moderator_id: str | None = None
    emote_mode: bool
    follower_mode: bool
    follower_mode_duration: int | None
    non_moderator_chat_delay: bool
    non_moderator_chat_delay_duration: int | None
    slow_mode: bool
    slow_mode_wait_time: int | None
    subscriber_mode: bool
    unique_chat_mode: bool


class SettingsPatch(BaseModel):
    emote_mode: bool | None = None
    follower_mode: bool | None = None
    follower_mode_duration: int | None = None
    slow_mode: bool | None = None
    slow_mode_wait_time: int | None = None
    subscriber_mode: bool | None = None
    unique_chat_mode: bool | None = None
    non_moderator_chat_delay: bool | None = None
    non_moderator_chat_delay_duration: int | None = None


class SendBody(BaseModel):
    broadcaster_id: str
    sender_id: str
    message: str
    reply_parent_message_id: str | None = None


class DropReason(BaseModel):
    code: str
    message: str


class Sent(BaseModel):
    message_id: str
    is_sent: bool
    drop_reason: DropReason | None = None


class Chatter(BaseModel):
    user_id: str
    user_login: str
    user_name: str


class AnnouncementBody(BaseModel):
    message: str
    color: str = "primary"


class Color(BaseModel):
    user_id: str
    user_login: str
    user_name: str
    color: str


class Images(BaseModel):
    url_1x: str
    url_2x: str
    url_4x: str


class EmoteOut(BaseModel):
    id: str
    name: str
    images: Images
    tier: str | None = None
    emote_type: str | None = None
    emote_set_id: str | None = None
    format: list[str]
    scale: list[str]
    theme_mode: list[str]


class EmoteList(BaseModel):
    data: list[EmoteOut]
    template: str


class BadgeVersion(BaseModel):
    id: str
    image_url_1x: str
    image_url_2x: str
    image_url_4x: str
    title: str
    description: str
    click_action: str | None
    click_url: str | None


class BadgeSet(BaseModel):
    set_id: str
    versions: list[BadgeVersion]


def _settings_doc(broadcaster_id: str, s: RoomSettings, moderator_id: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "broadcaster_id": broadcaster_id,
        "emote_mode": s.emote_only,
        "follower_mode": s.followers_only_minutes >= 0,
        "follower_mode_duration": s.followers_only_minutes if s.followers_only_minutes >= 0 else None,
        "non_moderator_chat_delay": False,
        "non_moderator_chat_delay_duration": None,
        "slow_mode": s.slow_seconds > 0,
        "slow_mode_wait_time": s.slow_seconds or None,
        "subscriber_mode": s.subscribers_only,
        "unique_chat_mode": s.unique_chat,
    }
    if moderator_id:
        doc["moderator_id"] = moderator_id
    return doc


@router.get("/chat/settings", responses={200: {"model": Data[Settings]}, **ERRORS})
async def get_settings(
    broadcaster_id: str = Query(), moderator_id: str | None = Query(default=None),
    caller: Caller = Depends(requires()),
) -> Response:
    await chatlink.user(caller, broadcaster_id, "broadcaster_id")
    async with caller.platform.db.session() as db:
        row = await db.get(ChatSettings, broadcaster_id)
    settings = RoomSettings() if row is None else RoomSettings(
        row.slow_seconds, row.followers_only_minutes, row.subscribers_only, row.emote_only, row.unique_chat,
        row.automod_level)
    return json_response({"data": [_settings_doc(broadcaster_id, settings, moderator_id)]})


@router.patch("/chat/settings", responses={200: {"model": Data[Settings]}, **ERRORS})
async def update_settings(
    broadcaster_id: str = Query(), moderator_id: str = Query(), body: SettingsPatch = Body(),
    caller: Caller = Depends(requires("moderator:manage:chat_settings", user=True)),
) -> Response:
    actor = await chatlink.acting(caller, moderator_id)
    login = (await chatlink.user(caller, broadcaster_id, "broadcaster_id")).login
    changes: dict[str, Any] = {}
    if body.emote_mode is not None:
        changes["emote_only"] = body.emote_mode
    if body.subscriber_mode is not None:
        changes["subscribers_only"] = body.subscriber_mode
    if body.unique_chat_mode is not None:
        changes["unique_chat"] = body.unique_chat_mode
    if body.slow_mode is not None or body.slow_mode_wait_time is not None:
        if body.slow_mode is False:
            changes["slow_seconds"] = 0
        else:
            wait = 30 if body.slow_mode_wait_time is None else body.slow_mode_wait_time
            if not 3 <= wait <= 120:
                raise bad_request("slow_mode_wait_time must be between 3 and 120 seconds")
            changes["slow_seconds"] = wait
    if body.follower_mode is not None or body.follower_mode_duration is not None:
        if body.follower_mode is False:
            changes["followers_only_minutes"] = -1
        else:
            minutes = 0 if body.follower_mode_duration is None else body.follower_mode_duration
            if not 0 <= minutes <= 129600:
                raise bad_request("follower_mode_duration must be between 0 and 129600 minutes")
            changes["followers_only_minutes"] = minutes
    if body.non_moderator_chat_delay:
        raise bad_request("non_moderator_chat_delay is not supported")
    try:
        new = await chat.update_settings(caller.platform, login, actor, **changes)
    except chat.ChatError as exc:
        raise chatlink.chat_error(exc) from None
    return json_response({"data": [_settings_doc(broadcaster_id, new, moderator_id)]})


@router.post("/chat/messages", responses={200: {"model": Data[Sent]}, **ERRORS})
async def send_message(
    body: SendBody = Body(), caller: Caller = Depends(requires("user:write:chat", user=True)),
) -> Response:
    sender = await chatlink.acting(caller, body.sender_id, "sender_id")
    login = (await chatlink.user(caller, body.broadcaster_id, "broadcaster_id")).login
    if not body.message:
        raise bad_request("The message may not be empty")
    if len(body.message) > 500:
        raise bad_request("The message may not be longer than 500 characters")
    try:
        result = await chat.send_message(caller.platform, login, sender, body.message,
                                         reply_parent_id=body.reply_parent_message_id or "")
    except chat.ChatError as exc:
        raise chatlink.chat_error(exc) from None
    doc: dict[str, Any] = {"message_id": result.message_id, "is_sent": result.rejection is None}
    if result.rejection is not None:
        doc["drop_reason"] = {"code": result.rejection.msg_id, "message": result.rejection.text}
    return json_response({"data": [doc]})


@router.get("/chat/chatters", responses={200: {"model": CountedPage[Chatter]}, **ERRORS})
async def chatters(
    broadcaster_id: str = Query(), moderator_id: str = Query(),
    first: int = Query(default=100, ge=1, le=1000), after: str | None = Query(default=None),
    caller: Caller = Depends(requires("moderator:read:chatters", user=True)),
) -> Response:
    await chatlink.acting(caller, moderator_id)
    owner = await chatlink.user(caller, broadcaster_id, "broadcaster_id")
    if moderator_id != broadcaster_id:
        async with caller.platform.db.session() as db:
            if await db.get(ChatRole, (broadcaster_id, moderator_id, "moderator")) is None:
                raise HelixError(403, "The user in moderator_id is not one of the broadcaster's moderators")
    logins = await chat.get_chatters(caller.platform, owner.login)
    if after:
        (last,) = pagination.decode(after, (str,))
        page = [name for name in logins if name > last]
    else:
        page = list(logins)
    more = len(page) > first
    page = page[:first]
    async with caller.platform.db.session() as db:
        users = {u.login: u for u in (await db.execute(select(User).where(User.login.in_(page)))).scalars()}
    data = [{"user_id": users[n].id, "user_login": n, "user_name": users[n].display_name}
            for n in page if n in users]
    cursor = pagination.encode(page[-1]) if more else None
    return json_response({"data": data, "total": len(logins), "pagination": pagination.pagination(cursor)})


@router.post("/chat/announcements", status_code=204, responses={204: {"description": "Sent"}, **ERRORS})
async def announcement(
    broadcaster_id: str = Query(), moderator_id: str = Query(), body: AnnouncementBody = Body(),
    caller: Caller = Depends(requires("moderator:manage:announcements", user=True)),
) -> Response:
    actor = await chatlink.acting(caller, moderator_id)
    login = (await chatlink.user(caller, broadcaster_id, "broadcaster_id")).login
    if body.color.lower() not in {"blue", "green", "orange", "purple", "primary"}:
        raise bad_request("color must be blue, green, orange, purple or primary")
    try:
        await chat.send_announcement(caller.platform, login, actor, body.message, body.color)
    except chat.ChatError as exc:
        raise chatlink.chat_error(exc) from None
    return no_content()


@router.get("/chat/color", responses={200: {"model": Data[Color]}, **ERRORS})
async def colors(user_id: list[str] = Query(default=[]), caller: Caller = Depends(requires())) -> Response:
    if not user_id:
        raise bad_request("Missing required parameter \"user_id\"")
    check_ids("user_id", user_id)
    found = await chatlink.users_by_id(caller, user_id)
    return json_response({"data": [{"user_id": u.id, "user_login": u.login, "user_name": u.display_name,
                                    "color": u.color} for u in found.values()]})


def _emote(base: str, row: Emote, broadcaster: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": row.id, "name": row.code,
        "images": {"url_1x": f"{base}/emotes/{row.id}/1.0.png", "url_2x": f"{base}/emotes/{row.id}/2.0.png",
                   "url_4x": f"{base}/emotes/{row.id}/3.0.png"},
        "format": ["static"], "scale": ["1.0", "2.0", "3.0"], "theme_mode": ["light", "dark"],
    }
    if broadcaster:
        doc.update(tier=str(row.tier) if row.tier else "", emote_type="subscriptions" if row.tier else "follower",
                   emote_set_id=row.owner_id or "0")
    return doc




@router.get("/chat/emotes", responses={200: {"model": EmoteList}, **ERRORS})
async def channel_emotes(broadcaster_id: str = Query(), caller: Caller = Depends(requires())) -> Response:
    base = caller.platform.base_url()
    async with caller.platform.db.session() as db:
        rows = (await db.execute(select(Emote).where(Emote.owner_id == broadcaster_id))).scalars().all()
    return json_response({"data": [_emote(base, r, True) for r in rows],
                          "template": f"{base}/emotes/{{{{id}}}}/{{{{scale}}}}.png"})


@router.get("/chat/emotes/global", responses={200: {"model": EmoteList}, **ERRORS})
async def global_emotes(caller: Caller = Depends(requires())) -> Response:
    base = caller.platform.base_url()
    async with caller.platform.db.session() as db:
        rows = (await db.execute(select(Emote).where(or_(Emote.owner_id.is_(None))))).scalars().all()
    return json_response({"data": [_emote(base, r, False) for r in rows],
                          "template": f"{base}/emotes/{{{{id}}}}/{{{{scale}}}}.png"})


_GLOBAL_BADGES = [("broadcaster", "1", "Broadcaster"), ("moderator", "1", "Moderator"), ("vip", "1", "VIP"),
                  ("partner", "1", "Verified"), ("staff", "1", "Staff")]


def _badge(base: str, set_id: str, version: str, title: str) -> dict[str, Any]:
    url = f"{base}/helix/chat/badges/images/{set_id}/{version}"
    return {"id": version, "image_url_1x": f"{url}/1.png", "image_url_2x": f"{url}/2.png",
            "image_url_4x": f"{url}/4.png", "title": title, "description": title, "click_action": None,
            "click_url": None}


@router.get("/chat/badges/global", responses={200: {"model": Data[BadgeSet]}, **ERRORS})
async def global_badges(caller: Caller = Depends(requires())) -> Response:
    base = caller.platform.base_url()
    return json_response({"data": [{"set_id": s, "versions": [_badge(base, s, v, t)]} for s, v, t in _GLOBAL_BADGES]})


@router.get("/chat/badges", responses={200: {"model": Data[BadgeSet]}, **ERRORS})
async def channel_badges(broadcaster_id: str = Query(), caller: Caller = Depends(requires())) -> Response:
    from livecast.chat.badges import SUBSCRIBER_BADGE_STEPS

    await chatlink.user(caller, broadcaster_id, "broadcaster_id")
    base = caller.platform.base_url()
    versions = [_badge(base, "subscriber", str(step), f"{step}-Month Subscriber") for step in SUBSCRIBER_BADGE_STEPS]
    return json_response({"data": [{"set_id": "subscriber", "versions": versions}]})


@router.get("/chat/badges/images/{set_id}/{version}/{scale}.png", include_in_schema=False)
async def badge_image(set_id: str, version: str, scale: str) -> Response:
    size = {"1": 18, "2": 36, "4": 72}.get(scale)
    if size is None or len(set_id) > 32 or len(version) > 8:
        raise HelixError(404, "No such badge image")
    return Response(emote_rules.png(f"badge:{set_id}/{version}", size), media_type="image/png",
                    headers={"Cache-Control": "public, max-age=86400"})
