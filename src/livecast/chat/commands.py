"""Slash commands typed in chat (``/ban``, ``/slow`` ...) as tmi.js still sends them, mapped onto
the chat service and answered with the NOTICE ``msg-id`` each client waits for."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from livecast.chat import service, tmi
from livecast.chat.service import ChatError
from livecast.chat.state import Chatter
from livecast.platform import Platform

Reply = list[bytes]
Handler = Callable[[Platform, str, Chatter, list[str]], Awaitable[Reply]]


def is_command(text: str) -> bool:
    return len(text) > 1 and text[0] in "/." and text[1].isalpha()


def _n(channel: str, msg_id: str, text: str) -> Reply:
    return [tmi.notice(f"#{channel}", msg_id, text)]


def _need(args: list[str], count: int, channel: str, usage_id: str, usage: str) -> None:
    if len(args) < count:
        raise ChatError(usage_id, usage)


async def _ban(p: Platform, ch: str, who: Chatter, args: list[str]) -> Reply:
    _need(args, 1, ch, "usage_ban", "Usage: \"/ban <username> [reason]\"")
    await service.ban_user(p, ch, who, args[0], reason=" ".join(args[1:]))
    return _n(ch, "ban_success", f"{args[0].lower()} is now banned from this channel.")


async def _unban(p: Platform, ch: str, who: Chatter, args: list[str]) -> Reply:
    _need(args, 1, ch, "usage_unban", "Usage: \"/unban <username>\"")
    await service.unban_user(p, ch, who, args[0])
    return _n(ch, "unban_success", f"{args[0].lower()} is no longer banned from this channel.")


async def _timeout(p: Platform, ch: str, who: Chatter, args: list[str]) -> Reply:
    _need(args, 1, ch, "usage_timeout", "Usage: \"/timeout <username> [duration][time unit] [reason]\"")
    seconds = _duration(args[1]) if len(args) > 1 else 600
    if seconds is None:
        raise ChatError("bad_timeout_duration", f"Invalid timeout duration: {args[1]}")
    await service.timeout_user(p, ch, who, args[0], seconds, " ".join(args[2:]))
    return _n(ch, "timeout_success", f"{args[0].lower()} has been timed out for {seconds} seconds.")


async def _untimeout(p: Platform, ch: str, who: Chatter, args: list[str]) -> Reply:
    _need(args, 1, ch, "usage_untimeout", "Usage: \"/untimeout <username>\"")
    await service.unban_user(p, ch, who, args[0], timeout_only=True)
    return _n(ch, "untimeout_success", f"{args[0].lower()} is no longer timed out in this channel.")


async def _delete(p: Platform, ch: str, who: Chatter, args: list[str]) -> Reply:
    _need(args, 1, ch, "usage_delete", "Usage: \"/delete <msg id>\"")
    await service.delete_message(p, ch, who, args[0])
    return _n(ch, "delete_message_success", "The message is now deleted.")


async def _clear(p: Platform, ch: str, who: Chatter, args: list[str]) -> Reply:
    await service.clear_chat(p, ch, who)
    return []


def _setting(key: str, value: object, msg_id: str, text: str) -> Handler:
    async def handler(p: Platform, ch: str, who: Chatter, args: list[str]) -> Reply:
        await service.update_settings(p, ch, who, **{key: value})
        return _n(ch, msg_id, text)
    return handler


async def _slow(p: Platform, ch: str, who: Chatter, args: list[str]) -> Reply:
    seconds = int(args[0]) if args and args[0].isascii() and args[0].isdigit() else 30
    if not 1 <= seconds <= 120:
        raise ChatError("usage_slow_on", "Usage: \"/slow [duration]\" - duration is 1 to 120 seconds.")
    await service.update_settings(p, ch, who, slow_seconds=seconds)
    return _n(ch, "slow_on", f"This room is now in slow mode. You may send messages every {seconds} seconds.")


async def _followers(p: Platform, ch: str, who: Chatter, args: list[str]) -> Reply:
    minutes = 0
    if args:
        parsed = _duration(args[0], default_unit=60)
        if parsed is None:
            raise ChatError("usage_followers_on", "Usage: \"/followers [duration]\"")
        minutes = parsed // 60
    await service.update_settings(p, ch, who, followers_only_minutes=minutes)
    return _n(ch, "followers_on", f"This room is now in {minutes} minute followers-only mode.")


def _role(func: Callable[..., Awaitable[object]], usage: str, msg_id: str, text: str) -> Handler:
    async def handler(p: Platform, ch: str, who: Chatter, args: list[str]) -> Reply:
        _need(args, 1, ch, f"usage_{usage}", f"Usage: \"/{usage} <username>\"")
        await func(p, ch, who, args[0])
        return _n(ch, msg_id, text.format(args[0].lower()))
    return handler


async def _whisper(p: Platform, ch: str, who: Chatter, args: list[str]) -> Reply:
    _need(args, 2, ch, "usage_whisper", "Usage: \"/w <login> <message>\"")
    await service.send_whisper(p, who, args[0], " ".join(args[1:]))
    return []


async def _announce(p: Platform, ch: str, who: Chatter, args: list[str]) -> Reply:
    await service.send_announcement(p, ch, who, " ".join(args))
    return []


COMMANDS: dict[str, Handler] = {
    "ban": _ban, "unban": _unban, "timeout": _timeout, "untimeout": _untimeout, "delete": _delete,
    "clear": _clear, "slow": _slow,
    "slowoff": _setting("slow_seconds", 0, "slow_off", "This room is no longer in slow mode."),
    "subscribers": _setting("subscribers_only", True, "subs_on", "This room is now in subscribers-only mode."),
    "subscribersoff": _setting("subscribers_only", False, "subs_off",
                               "This room is no longer in subscribers-only mode."),
    "emoteonly": _setting("emote_only", True, "emote_only_on", "This room is now in emote-only mode."),
    "emoteonlyoff": _setting("emote_only", False, "emote_only_off", "This room is no longer in emote-only mode."),
    "followers": _followers,
    "followersoff": _setting("followers_only_minutes", -1, "followers_off",
                             "This room is no longer in followers-only mode."),
    "uniquechat": _setting("unique_chat", True, "r9k_on", "This room is now in unique-chat mode."),
    "uniquechatoff": _setting("unique_chat", False, "r9k_off", "This room is no longer in unique-chat mode."),
    "r9kbeta": _setting("unique_chat", True, "r9k_on", "This room is now in unique-chat mode."),
    "r9kbetaoff": _setting("unique_chat", False, "r9k_off", "This room is no longer in unique-chat mode."),
    "mod": _role(service.add_moderator, "mod", "mod_success", "You have added {} as a moderator of this channel."),
    "unmod": _role(service.remove_moderator, "unmod", "unmod_success",
                   "You have removed {} as a moderator of this channel."),
    "vip": _role(service.add_vip, "vip", "vip_success", "You have added {} as a VIP of this channel."),
    "unvip": _role(service.remove_vip, "unvip", "unvip_success", "You have removed {} as a VIP of this channel."),
    "announce": _announce, "w": _whisper,
}


def _duration(raw: str, default_unit: int = 1) -> int | None:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    raw = raw.strip().lower()
    unit = default_unit
    if raw and raw[-1] in units:
        unit, raw = units[raw[-1]], raw[:-1]
    # isascii: str.isdigit() is also true for "²", which int() refuses (a ValueError, which
    # dropped the moderator's connection with "Internal error").
    if not (raw.isascii() and raw.isdigit()):
        return None
    return int(raw) * unit


async def run(platform: Platform, channel: str, chatter: Chatter, text: str) -> tuple[Reply, str | None]:
    """Run one command; returns reply lines and, for ``/me``, the message text to send instead."""
    name, _, rest = text[1:].partition(" ")
    name = name.lower()
    if name == "me":
        return [], f"\x01ACTION {rest}\x01"
    handler = COMMANDS.get(name)
    if handler is None:
        return _n(channel, "unrecognized_cmd", f"Unrecognized command: /{name}"), None
    try:
        return await handler(platform, channel, chatter, rest.split()), None
    except ChatError as exc:
        return _n(channel, exc.code, exc.message), None
