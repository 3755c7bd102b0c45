"""Chat's service functions: moderation, room settings, roles and sending, for chat commands
and Helix alike.

Each operation stores its effect, tells every chat node on the bus (a room line on
``chat.room.<login>`` for the clients, a ``chat.ctl.<login>`` note so nodes drop their cached
rules) and publishes a domain event in EventSub's payload shape (``event.channel.ban`` ...).
Refusals raise :class:`ChatError` whose ``code`` is the NOTICE ``msg-id`` Twitch would send.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import delete, select

from livecast import metrics
from livecast.bus import Bus, publish_event
from livecast.chat import badges as badge_rules
from livecast.chat import emotes as emote_rules
from livecast.chat import rules, tmi
from livecast.chat.models import (
    ROLE_MODERATOR,
    ROLE_SUBSCRIBER,
    ROLE_VIP,
    BlockedTerm,
    ChatBan,
    ChatRole,
    ChatSettings,
    Emote,
)
from livecast.chat.rules import Rejection, RoomSettings
from livecast.chat.state import ChannelCache, ChannelState, Chatter
from livecast.discovery.follows import follow_age
from livecast.identity.models import User
from livecast.platform import Platform
from livecast.store.base import utcnow

_LINE_BREAKS = str.maketrans({"\r": " ", "\n": " ", "\0": None})
MESSAGE_MEMORY_S = 600.0  # how long /delete and replies can find a message
MAX_TIMEOUT_S = 1_209_600  # two weeks, as on Twitch


class ChatError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def cache(platform: Platform) -> ChannelCache:
    existing = platform.state.get("chat.cache")
    if existing is None:
        existing = platform.state["chat.cache"] = ChannelCache(platform.db)
    return existing


# Bus plumbing ------------------------------------------------------------------------------------

def room_topic(login: str) -> str:
    return f"chat.room.{login}"


def control_topic(login: str) -> str:
    return f"chat.ctl.{login}"


async def publish_room(bus: Bus, login: str, *lines: bytes, exclude: str = "") -> None:
    """Room lines for every node; ``exclude`` names the one connection that must not get them
    (a sender never receives its own PRIVMSG back, as on Twitch)."""
    await bus.publish(room_topic(login), exclude.encode() + b"\n" + b"".join(lines))


async def _changed(platform: Platform, state: ChannelState, op: str, **data: Any) -> None:
    cache(platform).invalidate(state.login)
    await platform.bus.publish(control_topic(state.login), json.dumps({"op": op, **data}).encode())


def _now_ts() -> str:
    return str(int(time.time() * 1000))


async def channel(platform: Platform, login: str) -> ChannelState:
    state = await cache(platform).get(login.lower().lstrip("#"))
    if state is None:
        raise ChatError("msg_channel_suspended", "This channel does not exist or has been suspended.")
    return state


async def _user_by_login(platform: Platform, login: str) -> User:
    async with platform.db.session() as db:
        user = (await db.execute(select(User).where(User.login == login.lower().lstrip("@")))).scalar_one_or_none()
    if user is None:
        raise ChatError("invalid_user", f"Invalid username: {login}")
    return user


async def user_by_login(platform: Platform, login: str) -> User:
    return await _user_by_login(platform, login)


def _require_moderator(state: ChannelState, actor: Chatter) -> None:
    standing = state.standing(actor)
    if not (standing.is_broadcaster or standing.is_moderator or standing.is_staff):
        raise ChatError("no_permission", "You don't have permission to perform that action.")


def _require_broadcaster(state: ChannelState, actor: Chatter) -> None:
    standing = state.standing(actor)
    if not (standing.is_broadcaster or standing.is_staff):
        raise ChatError("no_permission", "You don't have permission to perform that action.")


def _event_base(state: ChannelState) -> dict[str, Any]:
    return {"broadcaster_user_id": state.channel_id, "broadcaster_user_login": state.login,
            "broadcaster_user_name": state.display_name}


def _moderator_fields(actor: Chatter) -> dict[str, Any]:
    return {"moderator_user_id": actor.user_id, "moderator_user_login": actor.login,
            "moderator_user_name": actor.display_name}


# Bans and timeouts -------------------------------------------------------------------------------

async def ban_user(
    platform: Platform, channel_login: str, actor: Chatter, target_login: str, *,
    duration: int | None = None, reason: str = "",
) -> ChatBan:
    """Ban (``duration`` None) or time out a user; refuses the broadcaster, staff, and mods
    unless the broadcaster acts."""
    state = await channel(platform, channel_login)
    _require_moderator(state, actor)
    kind = "timeout" if duration is not None else "ban"
    if duration is not None and not 1 <= duration <= MAX_TIMEOUT_S:
        raise ChatError("bad_timeout_duration", f"Invalid timeout duration: {duration}")
    target = await _user_by_login(platform, target_login)
    if target.id == actor.user_id:
        raise ChatError(f"bad_{kind}_self", f"You cannot {kind} yourself.")
    if target.id == state.channel_id:
        raise ChatError(f"bad_{kind}_broadcaster", f"You cannot {kind} the broadcaster.")
    if target.type == "staff":
        raise ChatError(f"bad_{kind}_staff", f"You cannot {kind} staff {target.login}.")
    target_standing = state.standing(Chatter.from_user(target))
    if target_standing.is_moderator and not state.standing(actor).is_broadcaster:
        raise ChatError(f"bad_{kind}_mod", f"You cannot {kind} moderator {target.login} unless you are the owner.")
    now = utcnow()
    expires = now + dt.timedelta(seconds=duration) if duration is not None else None
    banned, current = state.ban_of(target.id, now)
    if kind == "ban" and banned and current is None:
        raise ChatError("already_banned", f"{target.login} is already banned in this channel.")
    async with platform.db.session() as db:
        await db.execute(delete(ChatBan).where(ChatBan.channel_id == state.channel_id, ChatBan.user_id == target.id))
        row = ChatBan(channel_id=state.channel_id, user_id=target.id, moderator_id=actor.user_id,
                      reason=reason[:500], created_at=now, expires_at=expires)
        db.add(row)
    tags = {"room-id": state.channel_id, "target-user-id": target.id, "tmi-sent-ts": _now_ts()}
    if duration is not None:
        tags = {"ban-duration": str(duration), **tags}
    await publish_room(platform.bus, state.login, tmi.clearchat(state.login, target.login, tags))
    await _changed(platform, state, "ban", user_id=target.id)
    await publish_event(platform.bus, "channel.ban", {
        **_event_base(state), "user_id": target.id, "user_login": target.login, "user_name": target.display_name,
        **_moderator_fields(actor), "reason": reason, "banned_at": now.isoformat(),
        "ends_at": expires.isoformat() if expires else None, "is_permanent": expires is None,
    })
    return row


async def unban_user(platform: Platform, channel_login: str, actor: Chatter, target_login: str,
                     *, timeout_only: bool = False) -> None:
    state = await channel(platform, channel_login)
    _require_moderator(state, actor)
    target = await _user_by_login(platform, target_login)
    banned, expires = state.ban_of(target.id, utcnow())
    if not banned or (timeout_only and expires is None):
        code = "untimeout_banned" if timeout_only and banned else "bad_unban_no_ban"
        raise ChatError(code, f"{target.login} is not banned from this channel.")
    async with platform.db.session() as db:
        await db.execute(delete(ChatBan).where(ChatBan.channel_id == state.channel_id, ChatBan.user_id == target.id))
    await _changed(platform, state, "unban", user_id=target.id)
    await publish_event(platform.bus, "channel.unban", {
        **_event_base(state), "user_id": target.id, "user_login": target.login, "user_name": target.display_name,
        **_moderator_fields(actor),
    })


async def timeout_user(platform: Platform, channel_login: str, actor: Chatter, target_login: str,
                       duration: int, reason: str = "") -> ChatBan:
    return await ban_user(platform, channel_login, actor, target_login, duration=duration, reason=reason)


# Messages ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SendResult:
    message_id: str
    rejection: Rejection | None
    userstate: dict[str, str]


def userstate_tags(state: ChannelState, chatter: Chatter) -> dict[str, str]:
    standing = state.standing(chatter)
    badge_value, badge_info = badge_rules.badges(standing)
    return {
        "badge-info": badge_info, "badges": badge_value, "color": chatter.color,
        "display-name": chatter.display_name, "emote-sets": "0",
        "mod": "1" if standing.is_moderator else "0",
        "subscriber": "1" if standing.is_subscriber else "0",
        "user-type": badge_rules.user_type(standing),
    }


def global_userstate_tags(chatter: Chatter) -> dict[str, str]:
    standing = badge_rules.Standing(is_partner=chatter.is_partner, is_staff=chatter.is_staff)
    badge_value, _ = badge_rules.badges(standing)
    return {"badge-info": "", "badges": badge_value, "color": chatter.color,
            "display-name": chatter.display_name, "emote-sets": "0", "user-id": chatter.user_id,
            "user-type": badge_rules.user_type(standing)}


async def send_message(
    platform: Platform, channel_login: str, chatter: Chatter, text: str, *,
    reply_parent_id: str = "", exclude: str = "", client_nonce: str = "", custom_reward_id: str = "",
) -> SendResult:
    """Check a message against every rule and, if it passes, fan it out to the room."""
    text = text.translate(_LINE_BREAKS)  # Helix callers may pass newlines; IRC lines cannot hold them
    state = await channel(platform, channel_login)
    standing = state.standing(chatter)
    userstate = userstate_tags(state, chatter)
    now = utcnow()
    banned, expires = state.ban_of(chatter.user_id, now)
    rejection = rules.check_ban(state.login, expires, banned, now)
    action = text.startswith("\x01ACTION ") and text.endswith("\x01")
    body = text[8:-1] if action else text
    usable = state.emotes_for(standing)
    if rejection is None:
        age = None
        if state.settings.followers_only_minutes >= 0 and not standing.is_privileged:
            async with platform.db.session() as db:
                age = await follow_age(db, chatter.user_id, state.channel_id)
        rejection = rules.check_content(body, state.login, standing, state.settings, usable,
                                        state.blocked_terms, age)
    if rejection is None:
        rejection = await rules.check_rates(platform.bus, state.channel_id, chatter.user_id, body, standing,
                                            state.settings)
    if rejection is not None:
        return SendResult("", rejection, userstate)
    message_id = str(uuid.uuid4())
    badge_value, badge_info = badge_rules.badges(standing)
    first = await platform.bus.set(f"chat:seen:{state.channel_id}:{chatter.user_id}", b"1", only_if_absent=True)
    tags: dict[str, str] = {"badge-info": badge_info, "badges": badge_value}
    if client_nonce:
        tags["client-nonce"] = client_nonce
    if custom_reward_id:  # a channel-points reward's message, as Twitch tags it for bots
        tags["custom-reward-id"] = custom_reward_id
    tags.update({
        "color": chatter.color, "display-name": chatter.display_name,
        "emotes": emote_rules.emotes_tag(emote_rules.find_emotes(body, usable)),
        "first-msg": "1" if first else "0", "flags": "", "id": message_id,
        "mod": "1" if standing.is_moderator else "0", "returning-chatter": "0",
    })
    parent = await _remembered(platform.bus, reply_parent_id) if reply_parent_id else None
    if parent is not None:
        tags.update({
            "reply-parent-display-name": parent["display_name"], "reply-parent-msg-body": parent["text"],
            "reply-parent-msg-id": reply_parent_id, "reply-parent-user-id": parent["user_id"],
            "reply-parent-user-login": parent["login"],
            "reply-thread-parent-msg-id": parent.get("thread_id") or reply_parent_id,
            "reply-thread-parent-user-login": parent.get("thread_login") or parent["login"],
        })
    ts = _now_ts()
    tags.update({
        "room-id": state.channel_id, "subscriber": "1" if standing.is_subscriber else "0",
        "tmi-sent-ts": ts, "turbo": "0", "user-id": chatter.user_id,
        "user-type": badge_rules.user_type(standing),
    })
    if standing.is_vip:
        tags["vip"] = "1"
    line = tmi.privmsg(chatter.login, state.login, text, tags)
    await publish_room(platform.bus, state.login, line, exclude=exclude)
    metrics.chat_messages.inc()
    memo = {"login": chatter.login, "user_id": chatter.user_id, "display_name": chatter.display_name,
            "text": body, "channel": state.login, "ts": ts}
    if parent is not None:
        memo["thread_id"] = tags["reply-thread-parent-msg-id"]
        memo["thread_login"] = tags["reply-thread-parent-user-login"]
    await platform.bus.set(f"chat:msg:{message_id}", json.dumps(memo).encode(), ttl=MESSAGE_MEMORY_S)
    await publish_event(platform.bus, "channel.chat.message", {
        **_event_base(state), "chatter_user_id": chatter.user_id, "chatter_user_login": chatter.login,
        "chatter_user_name": chatter.display_name, "message_id": message_id,
        "message": {"text": body, "fragments": [{"type": "text", "text": body}]},
        "color": chatter.color, "badges": [
            {"set_id": b.split("/")[0], "id": b.split("/")[1], "info": ""} for b in badge_value.split(",") if b
        ],
        "message_type": "action" if action else "text",
        "reply": {"parent_message_id": reply_parent_id} if parent is not None else None,
    })
    return SendResult(message_id, None, userstate)


async def _remembered(bus: Bus, message_id: str) -> dict[str, str] | None:
    raw = await bus.get(f"chat:msg:{message_id}")
    if raw is None:
        return None
    data: dict[str, str] = json.loads(raw)
    return data


async def delete_message(platform: Platform, channel_login: str, actor: Chatter, message_id: str) -> None:
    state = await channel(platform, channel_login)
    _require_moderator(state, actor)
    memo = await _remembered(platform.bus, message_id)
    if memo is None or memo.get("channel") != state.login:
        raise ChatError("bad_delete_message_error", "The message you specified was not found.")
    if memo["user_id"] == state.channel_id:
        raise ChatError("bad_delete_message_broadcaster", "You cannot delete the broadcaster's messages.")
    if ROLE_MODERATOR in state.roles.get(memo["user_id"], {}) and actor.user_id != state.channel_id:
        raise ChatError("bad_delete_message_mod", f"You cannot delete messages from another moderator {memo['login']}.")
    tags = {"login": memo["login"], "room-id": state.channel_id, "target-msg-id": message_id,
            "tmi-sent-ts": _now_ts()}
    await publish_room(platform.bus, state.login, tmi.clearmsg(state.login, memo["text"], tags))
    await publish_event(platform.bus, "channel.chat.message_delete", {
        **_event_base(state), "target_user_id": memo["user_id"], "target_user_login": memo["login"],
        "target_user_name": memo["display_name"], "message_id": message_id,
    })


async def clear_chat(platform: Platform, channel_login: str, actor: Chatter) -> None:
    state = await channel(platform, channel_login)
    _require_moderator(state, actor)
    tags = {"room-id": state.channel_id, "tmi-sent-ts": _now_ts()}
    await publish_room(platform.bus, state.login, tmi.clearchat(state.login, None, tags))
    await publish_event(platform.bus, "channel.chat.clear", _event_base(state))


# Settings --------------------------------------------------------------------------------------------

_SETTING_TAGS = {
    "slow_seconds": "slow", "followers_only_minutes": "followers-only", "subscribers_only": "subs-only",
    "emote_only": "emote-only", "unique_chat": "r9k",
}


async def update_settings(platform: Platform, channel_login: str, actor: Chatter, **changes: Any) -> RoomSettings:
    """Change room modes; each changed mode goes to the room as its own partial ROOMSTATE."""
    state = await channel(platform, channel_login)
    _require_moderator(state, actor)
    unknown = set(changes) - set(RoomSettings.__dataclass_fields__)
    if unknown:
        raise ChatError("invalid_setting", f"Unknown setting {sorted(unknown)[0]}")
    new = replace(state.settings, **changes)
    if not 0 <= new.slow_seconds <= 120 or not -1 <= new.followers_only_minutes <= 129600 \
            or not 0 <= new.automod_level <= 4:
        raise ChatError("invalid_setting", "Setting out of range")
    async with platform.db.session() as db:
        row = await db.get(ChatSettings, state.channel_id)
        if row is None:
            row = ChatSettings(channel_id=state.channel_id)
            db.add(row)
        for key, value in vars(new).items():
            setattr(row, key, value)
    old_tags = state.settings.roomstate_tags(state.channel_id)
    new_tags = new.roomstate_tags(state.channel_id)
    lines = [tmi.roomstate(state.login, {key: value, "room-id": state.channel_id})
             for key, value in new_tags.items() if key != "room-id" and old_tags[key] != value]
    if lines:
        await publish_room(platform.bus, state.login, *lines)
    await _changed(platform, state, "settings")
    await publish_event(platform.bus, "channel.chat_settings.update", {
        **_event_base(state), "emote_mode": new.emote_only,
        "follower_mode": new.followers_only_minutes >= 0,
        "follower_mode_duration_minutes": new.followers_only_minutes if new.followers_only_minutes >= 0 else None,
        "slow_mode": new.slow_seconds > 0, "slow_mode_wait_time_seconds": new.slow_seconds or None,
        "subscriber_mode": new.subscribers_only, "unique_chat_mode": new.unique_chat,
    })
    return new


# Roles -------------------------------------------------------------------------------------------------

async def _set_role(platform: Platform, channel_login: str, actor: Chatter, target_login: str, role: str,
                    add: bool, *, months: int = 0, tier: int = 0) -> User:
    state = await channel(platform, channel_login)
    if role == ROLE_SUBSCRIBER:
        _require_broadcaster(state, actor)
    elif role == ROLE_VIP:
        _require_moderator(state, actor)
        if not state.standing(actor).is_broadcaster and not add:
            _require_broadcaster(state, actor)
    else:
        _require_broadcaster(state, actor)
    target = await _user_by_login(platform, target_login)
    has = role in state.roles.get(target.id, {})
    if add and has and role != ROLE_SUBSCRIBER:
        raise ChatError(f"bad_{'mod' if role == ROLE_MODERATOR else 'vip'}_{'mod' if role == ROLE_MODERATOR else 'grantee_already_vip'}",
                        f"{target.login} is already a {role} of this channel.")
    if not add and not has:
        code = {"moderator": "bad_unmod_mod", "vip": "bad_unvip_grantee_not_vip"}.get(role, "invalid_user")
        raise ChatError(code, f"{target.login} is not a {role} of this channel.")
    async with platform.db.session() as db:
        await db.execute(delete(ChatRole).where(ChatRole.channel_id == state.channel_id,
                                                ChatRole.user_id == target.id, ChatRole.role == role))
        if add:
            db.add(ChatRole(channel_id=state.channel_id, user_id=target.id, role=role, months=months, tier=tier))
    await _changed(platform, state, "role", user_id=target.id)
    if role in (ROLE_MODERATOR, ROLE_VIP):
        topic = f"channel.{'moderator' if role == ROLE_MODERATOR else 'vip'}.{'add' if add else 'remove'}"
        await publish_event(platform.bus, topic, {
            **_event_base(state), "user_id": target.id, "user_login": target.login,
            "user_name": target.display_name,
        })
    return target


async def add_moderator(platform: Platform, channel_login: str, actor: Chatter, target_login: str) -> User:
    return await _set_role(platform, channel_login, actor, target_login, ROLE_MODERATOR, True)


async def remove_moderator(platform: Platform, channel_login: str, actor: Chatter, target_login: str) -> User:
    return await _set_role(platform, channel_login, actor, target_login, ROLE_MODERATOR, False)


async def add_vip(platform: Platform, channel_login: str, actor: Chatter, target_login: str) -> User:
    return await _set_role(platform, channel_login, actor, target_login, ROLE_VIP, True)


async def remove_vip(platform: Platform, channel_login: str, actor: Chatter, target_login: str) -> User:
    return await _set_role(platform, channel_login, actor, target_login, ROLE_VIP, False)


async def set_subscriber(platform: Platform, channel_login: str, actor: Chatter, target_login: str, *,
                         months: int = 1, tier: int = 1000, subscribed: bool = True) -> User:
    """The stored subscriber flag, until the subscriptions domain owns subscriptions."""
    return await _set_role(platform, channel_login, actor, target_login, ROLE_SUBSCRIBER, subscribed,
                           months=months, tier=tier)


# Blocked terms, announcements, chatters ------------------------------------------------------------------

async def add_blocked_term(platform: Platform, channel_login: str, actor: Chatter, text: str) -> BlockedTerm:
    state = await channel(platform, channel_login)
    _require_moderator(state, actor)
    if not 2 <= len(text) <= 500:
        raise ChatError("invalid_term", "A blocked term is 2 to 500 characters.")
    async with platform.db.session() as db:
        row = BlockedTerm(channel_id=state.channel_id, text=text, moderator_id=actor.user_id)
        db.add(row)
        await db.flush()
    await _changed(platform, state, "blocked_terms")
    return row


async def remove_blocked_term(platform: Platform, channel_login: str, actor: Chatter, term_id: str) -> None:
    state = await channel(platform, channel_login)
    _require_moderator(state, actor)
    async with platform.db.session() as db:
        await db.execute(delete(BlockedTerm).where(BlockedTerm.channel_id == state.channel_id,
                                                   BlockedTerm.id == term_id))
    await _changed(platform, state, "blocked_terms")


async def list_blocked_terms(platform: Platform, channel_login: str) -> list[BlockedTerm]:
    state = await channel(platform, channel_login)
    async with platform.db.session() as db:
        rows = await db.execute(select(BlockedTerm).where(BlockedTerm.channel_id == state.channel_id))
        return list(rows.scalars())


async def send_announcement(platform: Platform, channel_login: str, actor: Chatter, text: str,
                            color: str = "PRIMARY") -> None:
    state = await channel(platform, channel_login)
    _require_moderator(state, actor)
    if not text or len(text) > rules.MAX_MESSAGE_CHARS:
        raise ChatError("usage_announce", "Usage: \"/announce <message>\"")
    await _usernotice(platform, state, actor, "announcement", text, {"msg-param-color": color.upper()},
                      f"{actor.display_name} made an announcement")


async def send_usernotice(platform: Platform, channel_login: str, actor: Chatter, msg_id: str, text: str,
                          params: dict[str, str], system_msg: str) -> None:
    """Subs, resubs, gifts and raids; the subscriptions and raid domains call this."""
    state = await channel(platform, channel_login)
    await _usernotice(platform, state, actor, msg_id, text, params, system_msg)


async def _usernotice(platform: Platform, state: ChannelState, actor: Chatter, msg_id: str, text: str,
                      params: dict[str, str], system_msg: str) -> None:
    standing = state.standing(actor)
    badge_value, badge_info = badge_rules.badges(standing)
    tags = {
        "badge-info": badge_info, "badges": badge_value, "color": actor.color, "display-name": actor.display_name,
        "emotes": "", "flags": "", "id": str(uuid.uuid4()), "login": actor.login,
        "mod": "1" if standing.is_moderator else "0", "msg-id": msg_id, **params,
        "room-id": state.channel_id, "subscriber": "1" if standing.is_subscriber else "0",
        "system-msg": system_msg, "tmi-sent-ts": _now_ts(), "user-id": actor.user_id,
        "user-type": badge_rules.user_type(standing),
    }
    await publish_room(platform.bus, state.login, tmi.usernotice(state.login, text, tags))
    if msg_id == "announcement":
        await publish_event(platform.bus, "channel.chat.notification", {
            **_event_base(state), "chatter_user_id": actor.user_id, "chatter_user_login": actor.login,
            "chatter_user_name": actor.display_name, "notice_type": "announcement",
            "message": {"text": text}, "announcement": {"color": params.get("msg-param-color", "PRIMARY")},
        })


_PLAN_NAMES = {"Prime": "Prime", "1000": "Tier 1", "2000": "Tier 2", "3000": "Tier 3"}


def _plan(tier: int | str) -> str:
    return "Prime" if str(tier).lower() == "prime" else str(tier)


async def notify_subscription(platform: Platform, channel_login: str, subscriber: Chatter, *, tier: int | str = 1000,
                              months: int = 1, message: str = "") -> None:
    """``sub`` for a first month, ``resub`` after; the subscriptions domain calls this."""
    plan = _plan(tier)
    kind = "sub" if months <= 1 else "resub"
    system = (f"{subscriber.display_name} subscribed at {_PLAN_NAMES.get(plan, plan)}."
              + (f" They've subscribed for {months} months!" if months > 1 else ""))
    await send_usernotice(platform, channel_login, subscriber, kind, message, {
        "msg-param-cumulative-months": str(max(1, months)), "msg-param-should-share-streak": "0",
        "msg-param-sub-plan": plan, "msg-param-sub-plan-name": _PLAN_NAMES.get(plan, plan),
    }, system)


async def notify_gift(platform: Platform, channel_login: str, gifter: Chatter, recipient: Chatter, *,
                      tier: int | str = 1000, months: int = 1) -> None:
    plan = _plan(tier)
    await send_usernotice(platform, channel_login, gifter, "subgift", "", {
        "msg-param-months": str(months), "msg-param-recipient-display-name": recipient.display_name,
        "msg-param-recipient-id": recipient.user_id, "msg-param-recipient-user-name": recipient.login,
        "msg-param-sub-plan": plan, "msg-param-sub-plan-name": _PLAN_NAMES.get(plan, plan),
    }, f"{gifter.display_name} gifted a {_PLAN_NAMES.get(plan, plan)} sub to {recipient.display_name}!")


async def notify_mystery_gift(platform: Platform, channel_login: str, gifter: Chatter, count: int, *,
                              tier: int | str = 1000) -> None:
    plan = _plan(tier)
    await send_usernotice(platform, channel_login, gifter, "submysterygift", "", {
        "msg-param-mass-gift-count": str(count), "msg-param-sub-plan": plan,
    }, f"{gifter.display_name} is gifting {count} {_PLAN_NAMES.get(plan, plan)} Subs to the community!")


async def notify_raid(platform: Platform, channel_login: str, raider: Chatter, viewers: int) -> None:
    await send_usernotice(platform, channel_login, raider, "raid", "", {
        "msg-param-displayName": raider.display_name, "msg-param-login": raider.login,
        "msg-param-viewerCount": str(viewers),
    }, f"{viewers} raiders from {raider.display_name} have joined!")


async def add_emote(platform: Platform, channel_login: str, actor: Chatter, code: str, tier: int = 1000) -> Emote:
    """A channel emote; ``tier`` 0 lets anyone use it, else subscribers of that tier or higher."""
    state = await channel(platform, channel_login)
    _require_broadcaster(state, actor)
    if not code.isalnum() or not 2 <= len(code) <= 64 or tier not in (0, 1000, 2000, 3000):
        raise ChatError("invalid_emote", "An emote code is 2-64 letters or digits; tier is 0, 1000, 2000 or 3000.")
    async with platform.db.session() as db:
        row = Emote(code=code, owner_id=state.channel_id, tier=tier)
        db.add(row)
        await db.flush()
    await _changed(platform, state, "emotes")
    return row


async def send_whisper(platform: Platform, sender: Chatter, to_login: str, text: str) -> None:
    target = await _user_by_login(platform, to_login)
    tags = {"badges": "", "color": sender.color, "display-name": sender.display_name, "emotes": "",
            "message-id": "1", "thread-id": f"{sender.user_id}_{target.id}", "turbo": "0",
            "user-id": sender.user_id, "user-type": ""}
    await platform.bus.publish(f"chat.user.{target.login}", tmi.whisper(sender.login, target.login, text, tags))


async def get_chatters(platform: Platform, channel_login: str) -> list[str]:
    """Signed-in logins in the room across every chat node (this node's live, the others' from
    their presence entries, at most ``PRESENCE_S`` old); empty where no chat role runs."""
    from livecast.chat.rooms import present_elsewhere

    hub = platform.state.get("chat.hub")
    if hub is None:  # no chat role in this process: presence is all there is
        return sorted(await present_elsewhere(platform.bus, channel_login))
    return sorted(await hub.chatters(channel_login))
