"""Twitch's TMI dialect: the exact lines Twitch sends, as pure functions of their inputs.

Clients such as tmi.js key their promises on these shapes (the JOIN reply ending in a full
``ROOMSTATE``, partial ``ROOMSTATE`` updates for mode changes, NOTICE ``msg-id`` values), so
each builder here mirrors one Twitch message and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping

from livecast.protocols.irc import Message, encode

SERVER = "tmi.twitch.tv"
CAPABILITIES = ("twitch.tv/tags", "twitch.tv/commands", "twitch.tv/membership")


def wire(msg: Message) -> bytes:
    """Twitch's wire form: empty tag values written as ``key=``, text always after ``:``."""
    return encode(msg, trailing=msg.command in _TEXT_COMMANDS, bare_empty_tags=False)


_TEXT_COMMANDS = frozenset({"PRIVMSG", "NOTICE", "USERNOTICE", "WHISPER", "CLEARCHAT", "CLEARMSG", "CAP"})


def user_source(login: str) -> str:
    return f"{login}!{login}@{login}.{SERVER}"


def numeric(code: str, target: str, *params: str) -> bytes:
    return wire(Message(code, (target, *params), source=SERVER))


def welcome(login: str) -> list[bytes]:
    return [
        numeric("001", login, "Welcome, GLHF!"),
        numeric("002", login, f"Your host is {SERVER}"),
        numeric("003", login, "This server is rather new"),
        numeric("004", login, "-"),
        numeric("375", login, "-"),
        numeric("372", login, "You are in a maze of twisty passages, all alike."),
        numeric("376", login, ">"),
    ]


def cap_reply(target: str, sub: str, caps: str) -> bytes:
    return wire(Message("CAP", (target, sub, caps), source=SERVER))


def notice(channel: str, msg_id: str, text: str) -> bytes:
    tags = {"msg-id": msg_id} if msg_id else {}
    return wire(Message("NOTICE", (channel, text), tags=tags, source=SERVER))


def auth_failed() -> bytes:
    return wire(Message("NOTICE", ("*", "Login authentication failed"), source=SERVER))


def global_userstate(tags: Mapping[str, str]) -> bytes:
    return wire(Message("GLOBALUSERSTATE", (), tags=dict(tags), source=SERVER))


def join_echo(login: str, channel: str) -> bytes:
    return wire(Message("JOIN", (f"#{channel}",), source=user_source(login)))


def part_echo(login: str, channel: str) -> bytes:
    return wire(Message("PART", (f"#{channel}",), source=user_source(login)))


def names(login: str, channel: str, members: list[str]) -> list[bytes]:
    host = f"{login}.{SERVER}"
    return [
        wire(Message("353", (login, "=", f"#{channel}", " ".join(members) or login), source=host)),
        wire(Message("366", (login, f"#{channel}", "End of /NAMES list"), source=host)),
    ]


def userstate(channel: str, tags: Mapping[str, str]) -> bytes:
    return wire(Message("USERSTATE", (f"#{channel}",), tags=dict(tags), source=SERVER))


def roomstate(channel: str, tags: Mapping[str, str]) -> bytes:
    """A full ROOMSTATE on join, or one carrying only the changed mode (what tmi.js expects)."""
    return wire(Message("ROOMSTATE", (f"#{channel}",), tags=dict(tags), source=SERVER))


def privmsg(login: str, channel: str, text: str, tags: Mapping[str, str]) -> bytes:
    return wire(Message("PRIVMSG", (f"#{channel}", text), tags=dict(tags), source=user_source(login)))


def usernotice(channel: str, text: str, tags: Mapping[str, str]) -> bytes:
    params = (f"#{channel}", text) if text else (f"#{channel}",)
    return encode(Message("USERNOTICE", params, tags=dict(tags), source=SERVER),
                  trailing=bool(text), bare_empty_tags=False)


def clearchat(channel: str, target_login: str | None, tags: Mapping[str, str]) -> bytes:
    params = (f"#{channel}", target_login) if target_login else (f"#{channel}",)
    return encode(Message("CLEARCHAT", params, tags=dict(tags), source=SERVER),
                  trailing=bool(target_login), bare_empty_tags=False)


def clearmsg(channel: str, text: str, tags: Mapping[str, str]) -> bytes:
    return wire(Message("CLEARMSG", (f"#{channel}", text), tags=dict(tags), source=SERVER))


def whisper(from_login: str, to_login: str, text: str, tags: Mapping[str, str]) -> bytes:
    return wire(Message("WHISPER", (to_login, text), tags=dict(tags), source=user_source(from_login)))


def pong(token: str) -> bytes:
    return wire(Message("PONG", (SERVER, token), source=SERVER)) if token else b"PONG :" + SERVER.encode() + b"\r\n"


def ping() -> bytes:
    return b"PING :" + SERVER.encode() + b"\r\n"


def reconnect() -> bytes:
    return b":" + SERVER.encode() + b" RECONNECT\r\n"


def unknown_command(login: str, command: str) -> bytes:
    return numeric("421", login or "*", command, "Unknown command")


def not_registered(command: str) -> bytes:
    return numeric("451", "*", command, "You have not registered")


def strip_tags(line: bytes) -> bytes:
    """The same line for a client that did not ask for ``twitch.tv/tags``."""
    if line.startswith(b"@"):
        return line[line.index(b" ") + 1:]
    return line


def line_command(line: bytes) -> bytes:
    """The command word of a serialized line, found without a full parse."""
    rest = strip_tags(line)
    if rest.startswith(b":"):
        rest = rest[rest.index(b" ") + 1:]
    return rest.split(b" ", 1)[0]


TWITCH_ONLY_COMMANDS = frozenset(
    {b"USERNOTICE", b"CLEARCHAT", b"CLEARMSG", b"ROOMSTATE", b"USERSTATE", b"HOSTTARGET", b"RECONNECT"}
)
MEMBERSHIP_COMMANDS = frozenset({b"JOIN", b"PART"})
