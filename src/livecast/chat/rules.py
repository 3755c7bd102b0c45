"""The rules a message must pass before fan-out, each answered with Twitch's NOTICE ``msg-id``.

Content rules (length, modes, blocked terms, AutoMod) are pure functions of the message and the
channel's cached state. Rules that count across time (rate limit, slow mode, duplicates,
unique-chat) keep their counters on the bus, so a chatter spread over several nodes is counted
once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from livecast.bus import Bus
from livecast.chat import automod, emotes
from livecast.chat.badges import Standing

MAX_MESSAGE_CHARS = 500
RATE_WINDOW_S = 30.0
RATE_LIMIT = 20
RATE_LIMIT_PRIVILEGED = 100
JOIN_WINDOW_S = 10.0
JOIN_LIMIT = 20
AUTH_WINDOW_S = 10.0
AUTH_LIMIT = 20
DUPLICATE_WINDOW_S = 30.0
UNIQUE_WINDOW_S = 3600.0


@dataclass(frozen=True)
class Rejection:
    msg_id: str
    text: str


@dataclass(frozen=True)
class RoomSettings:
    slow_seconds: int = 0
    followers_only_minutes: int = -1
    subscribers_only: bool = False
    emote_only: bool = False
    unique_chat: bool = False
    automod_level: int = 0

    def roomstate_tags(self, room_id: str) -> dict[str, str]:
        return {
            "emote-only": "1" if self.emote_only else "0",
            "followers-only": str(self.followers_only_minutes),
            "r9k": "1" if self.unique_chat else "0",
            "room-id": room_id,
            "slow": str(self.slow_seconds),
            "subs-only": "1" if self.subscribers_only else "0",
        }


def check_ban(channel: str, ban_expires: dt.datetime | None, banned: bool, now: dt.datetime) -> Rejection | None:
    if not banned:
        return None
    if ban_expires is None:
        return Rejection("msg_banned", f"You are permanently banned from talking in {channel}.")
    left = int((ban_expires - now).total_seconds()) + 1
    return Rejection("msg_timedout", f"You are timed out for {left} more seconds.")


def check_content(
    text: str,
    channel: str,
    standing: Standing,
    settings: RoomSettings,
    available_emotes: dict[str, str],
    blocked_terms: list[str],
    follow_age: dt.timedelta | None,
) -> Rejection | None:
    if not text.strip():
        return Rejection("msg_rejected", "Your message was not sent because it is empty.")
    if len(text) > MAX_MESSAGE_CHARS:
        return Rejection("msg_too_long", f"Your message is longer than {MAX_MESSAGE_CHARS} characters.")
    if not standing.is_privileged:
        if settings.subscribers_only and not (standing.is_subscriber or standing.is_vip):
            return Rejection(
                "msg_subsonly",
                f"This room is in subscribers-only mode. To talk, purchase a channel subscription at "
                f"https://www.twitch.tv/products/{channel}.",
            )
        if settings.followers_only_minutes >= 0 and not standing.is_vip:
            needed = dt.timedelta(minutes=settings.followers_only_minutes)
            if follow_age is None:
                return Rejection(
                    "msg_followersonly",
                    f"This room is in {settings.followers_only_minutes} minutes followers-only mode. "
                    f"Follow {channel} to join the community!",
                )
            if follow_age < needed:
                return Rejection(
                    "msg_followersonly_followed",
                    f"This room is in {settings.followers_only_minutes} minutes followers-only mode. "
                    "You have not been following long enough to chat.",
                )
        if settings.emote_only and not emotes.only_emotes(text, available_emotes):
            return Rejection("msg_emoteonly", "This room is in emote-only mode.")
    if not standing.is_broadcaster:
        lowered = text.lower()
        for term in blocked_terms:
            if term and term.lower() in lowered:
                return Rejection(
                    "msg_rejected_mandatory",
                    "Your message wasn't posted due to conflicts with the channel's moderation settings.",
                )
        if settings.automod_level and not standing.is_privileged and automod.should_hold(text, settings.automod_level):
            return Rejection("msg_rejected", "Your message is being checked by mods and has not been sent.")
    return None


def _digest(text: str) -> str:
    return hashlib.sha256(" ".join(text.lower().split()).encode()).hexdigest()[:32]


async def check_rates(
    bus: Bus, channel_id: str, user_id: str, text: str, standing: Standing, settings: RoomSettings
) -> Rejection | None:
    """Rate limit, slow mode, duplicate and unique-chat; only an accepted message is counted."""
    limit = RATE_LIMIT_PRIVILEGED if standing.is_privileged else RATE_LIMIT
    allowed, _, _ = await bus.take_tokens(f"chat:rate:{user_id}:{limit}", 1, limit, limit / RATE_WINDOW_S)
    if not allowed:
        return Rejection(
            "msg_ratelimit", "Your message was not sent because you are sending messages too quickly."
        )
    exempt = standing.is_privileged or standing.is_vip
    if settings.slow_seconds > 0 and not exempt:
        key = f"chat:slow:{channel_id}:{user_id}"
        if not await bus.set(key, b"1", ttl=settings.slow_seconds, only_if_absent=True):
            return Rejection(
                "msg_slowmode",
                "This room is in slow mode and you are sending messages too quickly. "
                f"You will be able to talk again in {settings.slow_seconds} seconds.",
            )
    digest = _digest(text).encode()
    last_key = f"chat:last:{channel_id}:{user_id}"
    if not standing.is_privileged and await bus.get(last_key) == digest:
        return Rejection(
            "msg_duplicate",
            "Your message was not sent because it is identical to the previous one you sent, "
            "less than 30 seconds ago.",
        )
    if settings.unique_chat:  # everyone's messages count; only moderators may repeat them
        fresh = await bus.set(f"chat:r9k:{channel_id}:{digest.decode()}", b"1", ttl=UNIQUE_WINDOW_S,
                              only_if_absent=True)
        if not fresh and not exempt:
            return Rejection(
                "msg_r9k",
                "This room is in unique-chat mode and the message you attempted to send is not unique.",
            )
    await bus.set(last_key, digest, ttl=DUPLICATE_WINDOW_S)
    return None


async def allow_join(bus: Bus, who: str) -> bool:
    allowed, _, _ = await bus.take_tokens(f"chat:join:{who}", 1, JOIN_LIMIT, JOIN_LIMIT / JOIN_WINDOW_S)
    return allowed


async def allow_auth(bus: Bus, peer: str) -> bool:
    """Whether this address may try a token now: it is refused after ``AUTH_LIMIT`` failures in
    ``AUTH_WINDOW_S``. Only failures count, so a busy NAT of honest clients is not locked out."""
    raw = await bus.get(f"chat:authfail:{peer}")
    return raw is None or int(raw) < AUTH_LIMIT


async def auth_failed(bus: Bus, peer: str) -> None:
    await bus.incr(f"chat:authfail:{peer}", 1, ttl=AUTH_WINDOW_S)
