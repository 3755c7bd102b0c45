"""Twitch's EventSub subscription types: versions, condition fields, required authorization.

Pure data and pure functions: which condition a type needs, which user must have authorized
the client (and with which scopes), and which field of a domain event selects subscribers.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SubType:
    name: str
    version: str
    required: tuple[str, ...]  # condition fields that must be present
    optional: tuple[str, ...] = ()
    one_of: tuple[str, ...] = ()  # exactly one of these must be present (channel.raid)
    scopes: tuple[str, ...] = ()  # any of them; empty: no authorization needed
    authorizer: str = ""  # the condition field naming the user who must have authorized
    match: tuple[str, ...] = ("broadcaster_user_id",)  # condition fields compared with the event
    webhook_only: bool = False
    # optional condition fields compared with a nested event field ("reward_id" -> "reward.id")
    nested: tuple[tuple[str, str], ...] = ()


_BROADCASTER = ("broadcaster_user_id",)
_CHAT = ("broadcaster_user_id", "user_id")

_REDEMPTIONS = ("channel:read:redemptions", "channel:manage:redemptions")
_COMMUNITY = (
    *(SubType(f"channel.channel_points_custom_reward_redemption.{stage}", "1", _BROADCASTER, optional=("reward_id",),
              scopes=_REDEMPTIONS, authorizer="broadcaster_user_id", nested=(("reward_id", "reward.id"),))
      for stage in ("add", "update")),
    *(SubType(f"channel.prediction.{stage}", "1", _BROADCASTER,
              scopes=("channel:read:predictions", "channel:manage:predictions"), authorizer="broadcaster_user_id")
      for stage in ("begin", "progress", "lock", "end")),
    *(SubType(f"channel.poll.{stage}", "1", _BROADCASTER, scopes=("channel:read:polls", "channel:manage:polls"),
              authorizer="broadcaster_user_id")
      for stage in ("begin", "progress", "end")),
)

TYPES: dict[tuple[str, str], SubType] = {
    (t.name, t.version): t
    for t in (
        SubType("stream.online", "1", _BROADCASTER),
        SubType("stream.offline", "1", _BROADCASTER),
        SubType("channel.update", "2", _BROADCASTER),
        SubType("channel.follow", "2", ("broadcaster_user_id", "moderator_user_id"),
                scopes=("moderator:read:followers",), authorizer="moderator_user_id"),
        SubType("channel.subscribe", "1", _BROADCASTER, scopes=("channel:read:subscriptions",),
                authorizer="broadcaster_user_id"),
        SubType("channel.subscription.gift", "1", _BROADCASTER, scopes=("channel:read:subscriptions",),
                authorizer="broadcaster_user_id"),
        SubType("channel.subscription.message", "1", _BROADCASTER, scopes=("channel:read:subscriptions",),
                authorizer="broadcaster_user_id"),
        SubType("channel.subscription.end", "1", _BROADCASTER, scopes=("channel:read:subscriptions",),
                authorizer="broadcaster_user_id"),
        SubType("channel.ban", "1", _BROADCASTER, scopes=("channel:moderate",), authorizer="broadcaster_user_id"),
        SubType("channel.unban", "1", _BROADCASTER, scopes=("channel:moderate",),
                authorizer="broadcaster_user_id"),
        SubType("channel.moderator.add", "1", _BROADCASTER, scopes=("moderation:read",),
                authorizer="broadcaster_user_id"),
        SubType("channel.moderator.remove", "1", _BROADCASTER, scopes=("moderation:read",),
                authorizer="broadcaster_user_id"),
        SubType("channel.raid", "1", (), one_of=("from_broadcaster_user_id", "to_broadcaster_user_id"),
                match=("from_broadcaster_user_id", "to_broadcaster_user_id")),
        SubType("channel.chat.message", "1", _CHAT, scopes=("user:read:chat",), authorizer="user_id"),
        SubType("channel.chat.clear", "1", _CHAT, scopes=("user:read:chat",), authorizer="user_id"),
        SubType("channel.chat.message_delete", "1", _CHAT, scopes=("user:read:chat",), authorizer="user_id"),
        SubType("channel.chat_settings.update", "1", _CHAT, scopes=("user:read:chat",), authorizer="user_id"),
        *_COMMUNITY,
        SubType("user.authorization.revoke", "1", ("client_id",), match=("client_id",), webhook_only=True),
    )
}

NAMES = frozenset(name for name, _ in TYPES)


class ConditionError(ValueError):
    pass


def lookup(name: str, version: str) -> SubType:
    sub = TYPES.get((name, version))
    if sub is None:
        if name in NAMES:
            raise ConditionError(f"unsupported version {version!r} for subscription type {name!r}")
        raise ConditionError(f"unknown subscription type {name!r}")
    return sub


def normalize_condition(sub: SubType, condition: Any) -> dict[str, str]:
    """Validate a condition object: known fields only, strings, required ones present."""
    if not isinstance(condition, dict):
        raise ConditionError("condition must be an object")
    allowed = set(sub.required) | set(sub.optional) | set(sub.one_of)
    clean: dict[str, str] = {}
    for key, value in condition.items():
        if key not in allowed:
            raise ConditionError(f"unknown condition field {key!r} for {sub.name}")
        if not isinstance(value, str) or len(value) > 64:
            raise ConditionError(f"condition field {key!r} must be a string")
        if value:
            clean[key] = value
    for key in sub.required:
        if key not in clean:
            raise ConditionError(f"condition field {key!r} is required for {sub.name}")
    if sub.one_of and sum(1 for key in sub.one_of if key in clean) != 1:
        raise ConditionError(f"exactly one of {', '.join(sub.one_of)} is required for {sub.name}")
    return clean


def condition_key(condition: dict[str, str]) -> str:
    return json.dumps(condition, sort_keys=True, separators=(",", ":"))


def matches(sub: SubType, condition: dict[str, Any], event: dict[str, Any]) -> bool:
    """Does this subscription's condition select this event?"""
    for key in sub.match:
        wanted = condition.get(key)
        if wanted is not None and str(event.get(key, "")) != wanted:
            return False
    for key, path in sub.nested:
        wanted = condition.get(key)
        if wanted is None:
            continue
        value: Any = event
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if str(value) != wanted:
            return False
    return True


def timestamp(value: dt.datetime) -> str:
    """RFC 3339 in UTC with the fraction's trailing zeros removed, as EventSub sends them."""
    value = value.astimezone(dt.UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{value.microsecond:06d}".rstrip("0")
    return f"{text}.{frac}Z" if frac else f"{text}Z"
