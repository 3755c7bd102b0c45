"""Moderation: bans, deleting messages, moderators, VIPs and blocked terms, via the chat domain."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import select

from livecast.api.helix import chatlink, pagination, render
from livecast.api.helix.auth import Caller, check_ids, requires
from livecast.api.helix.errors import HelixError, bad_request
from livecast.api.helix.respond import json_response, no_content
from livecast.api.helix.schemas import ERRORS, Data, Page
from livecast.chat import service as chat
from livecast.chat.models import ROLE_MODERATOR, ROLE_VIP, BlockedTerm, ChatBan, ChatRole
from livecast.identity.models import User

router = APIRouter()


class BanRequest(BaseModel):
    user_id: str
    duration: int | None = None
    reason: str = ""


class BanBody(BaseModel):
    data: BanRequest


class Ban(BaseModel):
    broadcaster_id: str
    moderator_id: str
    user_id: str
    created_at: str
    end_time: str | None


class Banned(BaseModel):
    user_id: str
    user_login: str
    user_name: str
    expires_at: str
    created_at: str
    reason: str
    moderator_id: str
    moderator_login: str
    moderator_name: str


class UserRef(BaseModel):
    user_id: str
    user_login: str
    user_name: str


class TermBody(BaseModel):
    text: str


class Term(BaseModel):
    broadcaster_id: str
    moderator_id: str
    id: str
    text: str
    created_at: str
    updated_at: str | None
    expires_at: str | None


async def _login(caller: Caller, broadcaster_id: str) -> str:
    return (await chatlink.user(caller, broadcaster_id, "broadcaster_id")).login


@router.post("/moderation/bans", responses={200: {"model": Data[Ban]}, **ERRORS})
async def ban_user(
    broadcaster_id: str = Query(), moderator_id: str = Query(), body: BanBody = Body(),
    caller: Caller = Depends(requires("moderator:manage:banned_users", user=True)),
) -> Response:
    actor = await chatlink.acting(caller, moderator_id)
    target = await chatlink.user(caller, body.data.user_id)
    if len(body.data.reason) > 500:
        raise bad_request("The reason may not be longer than 500 characters")
    try:
        row = await chat.ban_user(caller.platform, await _login(caller, broadcaster_id), actor, target.login,
                                  duration=body.data.duration, reason=body.data.reason)
    except chat.ChatError as exc:
        raise chatlink.chat_error(exc) from None
    return json_response({"data": [{
        "broadcaster_id": broadcaster_id, "moderator_id": moderator_id, "user_id": target.id,
        "created_at": render.rfc3339(row.created_at),
        "end_time": render.rfc3339(row.expires_at) if row.expires_at else None,
    }]})


@router.delete("/moderation/bans", status_code=204, responses={204: {"description": "Unbanned"}, **ERRORS})
async def unban_user(
    broadcaster_id: str = Query(), moderator_id: str = Query(), user_id: str = Query(),
    caller: Caller = Depends(requires("moderator:manage:banned_users", user=True)),
) -> Response:
    actor = await chatlink.acting(caller, moderator_id)
    target = await chatlink.user(caller, user_id)
    try:
        await chat.unban_user(caller.platform, await _login(caller, broadcaster_id), actor, target.login)
    except chat.ChatError as exc:
        raise chatlink.chat_error(exc) from None
    return no_content()


async def _require_mod_or_broadcaster(caller: Caller, broadcaster_id: str) -> None:
    if caller.user_id == broadcaster_id:
        return
    async with caller.platform.db.session() as db:
        row = await db.get(ChatRole, (broadcaster_id, caller.user_id, ROLE_MODERATOR))
    if row is None:
        raise HelixError(403, "The user in the access token is not one of the broadcaster's moderators")


@router.get("/moderation/banned", responses={200: {"model": Page[Banned]}, **ERRORS})
async def banned_users(
    broadcaster_id: str = Query(), user_id: list[str] = Query(default=[]),
    first: int = Query(default=20, ge=1, le=100), after: str | None = Query(default=None),
    caller: Caller = Depends(requires("moderation:read", "moderator:manage:banned_users",
                                      "moderator:read:banned_users", user=True)),
) -> Response:
    check_ids("user_id", user_id)
    await _require_mod_or_broadcaster(caller, broadcaster_id)
    stmt = select(ChatBan, User).join(User, User.id == ChatBan.user_id).where(ChatBan.channel_id == broadcaster_id)
    if user_id:
        stmt = stmt.where(ChatBan.user_id.in_(user_id))
    if after:
        (last_id,) = pagination.decode(after, (str,))
        stmt = stmt.where(ChatBan.id > last_id)
    stmt = stmt.order_by(ChatBan.id).limit(first + 1)
    async with caller.platform.db.session() as db:
        rows = (await db.execute(stmt)).all()
    mods = await chatlink.users_by_id(caller, [b.moderator_id for b, _ in rows])
    more = len(rows) > first
    rows = rows[:first]
    data = []
    for ban, u in rows:
        mod = mods.get(ban.moderator_id)
        data.append({
            "user_id": u.id, "user_login": u.login, "user_name": u.display_name,
            "expires_at": render.rfc3339(ban.expires_at), "created_at": render.rfc3339(ban.created_at),
            "reason": ban.reason, "moderator_id": ban.moderator_id,
            "moderator_login": mod.login if mod else "", "moderator_name": mod.display_name if mod else "",
        })
    cursor = pagination.encode(rows[-1][0].id) if more else None
    return json_response({"data": data, "pagination": pagination.pagination(cursor)})


@router.delete("/moderation/chat", status_code=204, responses={204: {"description": "Deleted"}, **ERRORS})
async def delete_messages(
    broadcaster_id: str = Query(), moderator_id: str = Query(), message_id: str | None = Query(default=None),
    caller: Caller = Depends(requires("moderator:manage:chat_messages", user=True)),
) -> Response:
    actor = await chatlink.acting(caller, moderator_id)
    login = await _login(caller, broadcaster_id)
    try:
        if message_id:
            await chat.delete_message(caller.platform, login, actor, message_id)
        else:
            await chat.clear_chat(caller.platform, login, actor)
    except chat.ChatError as exc:
        raise chatlink.chat_error(exc) from None
    return no_content()


async def _role_list(caller: Caller, broadcaster_id: str, role: str, user_id: list[str], first: int,
                     after: str | None) -> Response:
    check_ids("user_id", user_id)
    stmt = select(ChatRole, User).join(User, User.id == ChatRole.user_id).where(
        ChatRole.channel_id == broadcaster_id, ChatRole.role == role)
    if user_id:
        stmt = stmt.where(ChatRole.user_id.in_(user_id))
    if after:
        (last,) = pagination.decode(after, (str,))
        stmt = stmt.where(ChatRole.user_id > last)
    stmt = stmt.order_by(ChatRole.user_id).limit(first + 1)
    async with caller.platform.db.session() as db:
        rows = (await db.execute(stmt)).all()
    more = len(rows) > first
    rows = rows[:first]
    data = [{"user_id": u.id, "user_login": u.login, "user_name": u.display_name} for _, u in rows]
    cursor = pagination.encode(rows[-1][1].id) if more else None
    return json_response({"data": data, "pagination": pagination.pagination(cursor)})


def _same_broadcaster(caller: Caller, broadcaster_id: str) -> None:
    if caller.user_id != broadcaster_id:
        raise HelixError(401, "The ID in broadcaster_id must match the user ID in the access token")


@router.get("/moderation/moderators", responses={200: {"model": Page[UserRef]}, **ERRORS})
async def moderators(
    broadcaster_id: str = Query(), user_id: list[str] = Query(default=[]),
    first: int = Query(default=20, ge=1, le=100), after: str | None = Query(default=None),
    caller: Caller = Depends(requires("moderation:read", "channel:manage:moderators", user=True)),
) -> Response:
    _same_broadcaster(caller, broadcaster_id)
    return await _role_list(caller, broadcaster_id, ROLE_MODERATOR, user_id, first, after)


async def _set_role(caller: Caller, broadcaster_id: str, user_id: str, action: Any) -> Response:
    _same_broadcaster(caller, broadcaster_id)
    actor = await chatlink.acting(caller, broadcaster_id, "broadcaster_id")
    target = await chatlink.user(caller, user_id)
    try:
        await action(caller.platform, actor.login, actor, target.login)
    except chat.ChatError as exc:
        raise chatlink.chat_error(exc) from None
    return no_content()


@router.post("/moderation/moderators", status_code=204, responses={204: {"description": "Added"}, **ERRORS})
async def add_moderator(
    broadcaster_id: str = Query(), user_id: str = Query(),
    caller: Caller = Depends(requires("channel:manage:moderators", user=True)),
) -> Response:
    return await _set_role(caller, broadcaster_id, user_id, chat.add_moderator)


@router.delete("/moderation/moderators", status_code=204, responses={204: {"description": "Removed"}, **ERRORS})
async def remove_moderator(
    broadcaster_id: str = Query(), user_id: str = Query(),
    caller: Caller = Depends(requires("channel:manage:moderators", user=True)),
) -> Response:
    return await _set_role(caller, broadcaster_id, user_id, chat.remove_moderator)


@router.get("/channels/vips", responses={200: {"model": Page[UserRef]}, **ERRORS})
async def vips(
    broadcaster_id: str = Query(), user_id: list[str] = Query(default=[]),
    first: int = Query(default=20, ge=1, le=100), after: str | None = Query(default=None),
    caller: Caller = Depends(requires("channel:read:vips", "channel:manage:vips", user=True)),
) -> Response:
    _same_broadcaster(caller, broadcaster_id)
    return await _role_list(caller, broadcaster_id, ROLE_VIP, user_id, first, after)


@router.post("/channels/vips", status_code=204, responses={204: {"description": "Added"}, **ERRORS})
async def add_vip(
    broadcaster_id: str = Query(), user_id: str = Query(),
    caller: Caller = Depends(requires("channel:manage:vips", user=True)),
) -> Response:
    return await _set_role(caller, broadcaster_id, user_id, chat.add_vip)


@router.delete("/channels/vips", status_code=204, responses={204: {"description": "Removed"}, **ERRORS})
async def remove_vip(
    broadcaster_id: str = Query(), user_id: str = Query(),
    caller: Caller = Depends(requires("channel:manage:vips", user=True)),
) -> Response:
    return await _set_role(caller, broadcaster_id, user_id, chat.remove_vip)


def _term(row: BlockedTerm, broadcaster_id: str) -> dict[str, Any]:
    return {"broadcaster_id": broadcaster_id, "moderator_id": row.moderator_id, "id": row.id, "text": row.text,
            "created_at": render.rfc3339(row.created_at), "updated_at": render.rfc3339(row.created_at),
            "expires_at": render.rfc3339(row.expires_at) if row.expires_at else None}


@router.get("/moderation/blocked_terms", responses={200: {"model": Page[Term]}, **ERRORS})
async def blocked_terms(
    broadcaster_id: str = Query(), moderator_id: str = Query(),
    first: int = Query(default=20, ge=1, le=100), after: str | None = Query(default=None),
    caller: Caller = Depends(requires("moderator:read:blocked_terms", "moderator:manage:blocked_terms",
                                      user=True)),
) -> Response:
    await chatlink.acting(caller, moderator_id)
    await _require_mod_or_broadcaster(caller, broadcaster_id)
    stmt = select(BlockedTerm).where(BlockedTerm.channel_id == broadcaster_id)
    if after:
        (last,) = pagination.decode(after, (str,))
        stmt = stmt.where(BlockedTerm.id > last)
    async with caller.platform.db.session() as db:
        rows = list((await db.execute(stmt.order_by(BlockedTerm.id).limit(first + 1))).scalars())
    more = len(rows) > first
    rows = rows[:first]
    cursor = pagination.encode(rows[-1].id) if more else None
    return json_response({"data": [_term(r, broadcaster_id) for r in rows],
                          "pagination": pagination.pagination(cursor)})


@router.post("/moderation/blocked_terms", responses={200: {"model": Data[Term]}, **ERRORS})
async def add_blocked_term(
    broadcaster_id: str = Query(), moderator_id: str = Query(), body: TermBody = Body(),
    caller: Caller = Depends(requires("moderator:manage:blocked_terms", user=True)),
) -> Response:
    actor = await chatlink.acting(caller, moderator_id)
    try:
        row = await chat.add_blocked_term(caller.platform, await _login(caller, broadcaster_id), actor, body.text)
    except chat.ChatError as exc:
        raise chatlink.chat_error(exc) from None
    return json_response({"data": [_term(row, broadcaster_id)]})


@router.delete("/moderation/blocked_terms", status_code=204, responses={204: {"description": "Removed"}, **ERRORS})
async def remove_blocked_term(
    broadcaster_id: str = Query(), moderator_id: str = Query(), id: str = Query(),
    caller: Caller = Depends(requires("moderator:manage:blocked_terms", user=True)),
) -> Response:
    actor = await chatlink.acting(caller, moderator_id)
    try:
        await chat.remove_blocked_term(caller.platform, await _login(caller, broadcaster_id), actor, id)
    except chat.ChatError as exc:
        raise chatlink.chat_error(exc) from None
    return no_content()
