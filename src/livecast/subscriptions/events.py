"""What a subscription change tells the world: EventSub events, chat USERNOTICEs, chat roles.

Service functions only *collect* these in an :class:`Outbox` while their transaction runs;
:func:`publish` sends them after the commit, so a rolled-back change never announces itself.
Event payloads follow Twitch's EventSub shapes field for field (``channel.subscribe`` v1 and
friends); USERNOTICE tags follow what Twitch sends for ``sub``, ``resub``, ``subgift`` and
``submysterygift``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from livecast.bus import publish_event
from livecast.identity.models import User
from livecast.logs import event as log_event
from livecast.platform import Platform
from livecast.subscriptions.pricing import tier_name

log = logging.getLogger("livecast.subscriptions")

# Twitch's stand-in for an anonymous gifter, as clients expect to see it in chat tags.
ANON_ID = "274598607"
ANON_LOGIN = "ananonymousgifter"
ANON_NAME = "AnAnonymousGifter"


@dataclass(frozen=True)
class Person:
    id: str
    login: str
    name: str

    @classmethod
    def of(cls, user: User) -> Person:
        return cls(user.id, user.login, user.display_name or user.login)


ANONYMOUS = Person(ANON_ID, ANON_LOGIN, ANON_NAME)


@dataclass(frozen=True)
class Notice:
    """A USERNOTICE to show in the channel's chat."""

    channel_login: str
    actor: Person
    msg_id: str
    text: str
    params: dict[str, str]
    system_msg: str


@dataclass
class Outbox:
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    roles_changed: dict[str, set[str]] = field(default_factory=dict)  # channel login -> user ids

    def extend(self, other: Outbox) -> None:
        self.events.extend(other.events)
        self.notices.extend(other.notices)
        for login, users in other.roles_changed.items():
            self.roles_changed.setdefault(login, set()).update(users)


def _users(prefix: str, person: Person | None) -> dict[str, Any]:
    return {f"{prefix}_id": person.id if person else None, f"{prefix}_login": person.login if person else None,
            f"{prefix}_name": person.name if person else None}


def broadcaster(channel: Person) -> dict[str, Any]:
    return _users("broadcaster_user", channel)


def subscribe_event(channel: Person, user: Person, tier: str, is_gift: bool) -> dict[str, Any]:
    return {**_users("user", user), **broadcaster(channel), "tier": tier, "is_gift": is_gift}


def end_event(channel: Person, user: Person, tier: str, is_gift: bool) -> dict[str, Any]:
    return subscribe_event(channel, user, tier, is_gift)


def gift_event(channel: Person, gifter: Person | None, total: int, tier: str,
               cumulative_total: int | None) -> dict[str, Any]:
    return {**_users("user", gifter), **broadcaster(channel), "total": total, "tier": tier,
            "cumulative_total": cumulative_total if gifter is not None else None,
            "is_anonymous": gifter is None}


def message_event(channel: Person, user: Person, tier: str, text: str, cumulative: int,
                  streak: int | None) -> dict[str, Any]:
    return {**_users("user", user), **broadcaster(channel), "tier": tier,
            "message": {"text": text, "emotes": []}, "cumulative_months": cumulative,
            "streak_months": streak, "duration_months": 1}


def plan_name(channel: Person) -> str:
    return f"Channel Subscription ({channel.login})"


def sub_notice(channel: Person, user: Person, tier: str) -> Notice:
    return Notice(channel.login, user, "sub", "", {
        "msg-param-cumulative-months": "1", "msg-param-months": "0", "msg-param-multimonth-duration": "1",
        "msg-param-multimonth-tenure": "0", "msg-param-should-share-streak": "0", "msg-param-sub-plan": tier,
        "msg-param-sub-plan-name": plan_name(channel), "msg-param-was-gifted": "false",
    }, f"{user.name} subscribed at {tier_name(tier)}.")


def resub_notice(channel: Person, user: Person, tier: str, text: str, cumulative: int,
                 streak: int | None) -> Notice:
    params = {
        "msg-param-cumulative-months": str(cumulative), "msg-param-months": "0",
        "msg-param-multimonth-duration": "1", "msg-param-multimonth-tenure": "0",
        "msg-param-should-share-streak": "1" if streak is not None else "0",
        "msg-param-sub-plan": tier, "msg-param-sub-plan-name": plan_name(channel), "msg-param-was-gifted": "false",
    }
    system = f"{user.name} subscribed at {tier_name(tier)}. They've subscribed for {cumulative} months"
    if streak is not None:
        params["msg-param-streak-months"] = str(streak)
        system += f", currently on a {streak} month streak"
    return Notice(channel.login, user, "resub", text, params, system + "!")


def subgift_notice(channel: Person, gifter: Person | None, recipient: Person, tier: str, months: int,
                   sender_count: int | None, in_community_gift: bool) -> Notice:
    actor = gifter or ANONYMOUS
    params = {
        "msg-param-gift-months": "1", "msg-param-months": str(months),
        "msg-param-recipient-display-name": recipient.name, "msg-param-recipient-id": recipient.id,
        "msg-param-recipient-user-name": recipient.login, "msg-param-sub-plan": tier,
        "msg-param-sub-plan-name": plan_name(channel),
        "msg-param-sender-count": str(sender_count if sender_count is not None and not in_community_gift else 0),
    }
    return Notice(channel.login, actor, "subgift", "", params,
                  f"{actor.name} gifted a {tier_name(tier)} sub to {recipient.name}!")


def mystery_notice(channel: Person, gifter: Person | None, tier: str, count: int,
                   sender_count: int | None) -> Notice:
    actor = gifter or ANONYMOUS
    system = f"{actor.name} is gifting {count} {tier_name(tier)} Subs to {channel.name}'s community!"
    if gifter is not None and sender_count:
        system += f" They've gifted a total of {sender_count} in the channel!"
    return Notice(channel.login, actor, "submysterygift", "", {
        "msg-param-mass-gift-count": str(count), "msg-param-sender-count": str(sender_count or 0),
        "msg-param-sub-plan": tier,
    }, system)


async def publish(platform: Platform, out: Outbox) -> None:
    """Send what a committed change collected: chat cache drops, USERNOTICEs, EventSub events."""
    try:
        from livecast.chat import service as chat
        from livecast.chat.state import Chatter
    except ImportError:  # a build without chat: the EventSub events still go out
        chat = None  # type: ignore[assignment]
    for login, user_ids in out.roles_changed.items():
        if chat is not None:
            chat.cache(platform).invalidate(login)
            for user_id in sorted(user_ids):
                await platform.bus.publish(chat.control_topic(login),
                                           b'{"op":"role","role":"subscriber","user_id":"%s"}' % user_id.encode())
    if chat is not None:
        for notice in out.notices:
            actor = Chatter(notice.actor.id, notice.actor.login, notice.actor.name)
            try:
                await chat.send_usernotice(platform, notice.channel_login, actor, notice.msg_id, notice.text,
                                           notice.params, notice.system_msg)
            except chat.ChatError as exc:
                log_event(log, "subscriptions: usernotice not sent", level=logging.WARNING,
                          channel=notice.channel_login, code=exc.code)
    for topic, payload in out.events:
        # "_id" (dropped before delivery) keeps two identical-looking events apart, e.g. the
        # same viewer subscribing, being refunded and subscribing again within minutes
        await publish_event(platform.bus, topic, {**payload, "_id": uuid.uuid4().hex})
