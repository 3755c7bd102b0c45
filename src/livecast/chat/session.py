"""One TMI connection's protocol state, sans-IO: lines in, events and reply lines out.

The session owns what needs no I/O: framing limits, capability negotiation, PING/PONG, the
registration order (``CAP``/``PASS``/``NICK``), and refusing commands before login. Anything
that needs the database or the room hub (checking a token, joining, sending) becomes an event
for the shell (:mod:`livecast.chat.connection`), which answers with the ``accept_*`` methods.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from livecast.chat import tmi
from livecast.protocols import irc

ANONYMOUS_RE = re.compile(r"^justinfan\d{1,16}$")
CHANNEL_RE = re.compile(r"^#[a-z0-9_]{1,25}$")
MAX_UNREGISTERED_LINES = 20
MAX_PROTOCOL_ERRORS = 20
MAX_HELD_LINES = 1000
# Bytes held the same way: 1000 lines of 8 KiB would be 8 MiB per connection while a slow (or
# down) database answers the login, times every connection an address may open.
MAX_HELD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Authenticate:
    nick: str
    password: str | None  # the token without its "oauth:" prefix


@dataclass(frozen=True)
class JoinRequested:
    channels: tuple[str, ...]  # logins, without "#"


@dataclass(frozen=True)
class PartRequested:
    channels: tuple[str, ...]


@dataclass(frozen=True)
class MessageRequested:
    channel: str
    text: str
    reply_parent_id: str = ""
    client_nonce: str = ""


@dataclass(frozen=True)
class Closed:
    """The connection must be closed after the pending lines are written."""

    reason: str


Event = Authenticate | JoinRequested | PartRequested | MessageRequested | Closed


@dataclass
class TmiSession:
    caps: set[str] = field(default_factory=set)
    login: str = ""
    anonymous: bool = True
    registered: bool = False
    closed: bool = False
    channels: set[str] = field(default_factory=set)
    _nick: str = ""
    _password: str | None = None
    _negotiating: bool = False
    _unregistered_lines: int = 0
    _errors: int = 0
    _out: list[bytes] = field(default_factory=list)
    _held: list[bytes] = field(default_factory=list)
    _held_bytes: int = 0
    _awaiting_login: bool = False
    _reader: irc.LineReader = field(default_factory=irc.LineReader)

    # Input --------------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[Event]:
        """Bytes from a TCP stream."""
        if self.closed:
            return []
        try:
            lines = self._reader.feed(data)
        except irc.LineTooLong:
            return [self._close("Line too long")]
        events: list[Event] = []
        for raw in lines:
            events.extend(self.receive_line(raw))
            if self.closed:
                break
        return events

    def receive_text(self, text: str) -> list[Event]:
        """One WebSocket text frame, which may hold several lines."""
        events: list[Event] = []
        for line in irc.split_frame(text):
            if len(line.encode()) > irc.MAX_LINE_BYTES:
                return [self._close("Line too long")]
            events.extend(self.receive_line(line.encode()))
            if self.closed:
                break
        return events

    def receive_line(self, raw: bytes) -> list[Event]:
        if self.closed:
            return []
        if self._awaiting_login:  # clients pipeline JOIN right after NICK; keep it for after login
            self._held.append(raw)
            self._held_bytes += len(raw)
            if len(self._held) > MAX_HELD_LINES or self._held_bytes > MAX_HELD_BYTES:
                return [self._close("Too many lines before login")]
            return []
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return self._error("Invalid UTF-8")
        try:
            msg = irc.parse(text)
        except irc.IrcError as exc:
            return self._error(str(exc))
        if not self.registered:
            self._unregistered_lines += 1
            if self._unregistered_lines > MAX_UNREGISTERED_LINES:
                return [self._close("Too many lines before login")]
        return self._dispatch(msg)

    def _dispatch(self, msg: irc.Message) -> list[Event]:
        cmd = msg.command
        if cmd == "PING":
            self._out.append(tmi.pong(msg.param(0)))
            return []
        if cmd == "PONG":
            return []
        if cmd == "CAP":
            return self._cap(msg)
        if cmd == "PASS":
            password = msg.param(0)
            self._password = password[6:] if password.lower().startswith("oauth:") else password
            return []
        if cmd == "NICK":
            self._nick = msg.param(0).lower()
            return self._maybe_login()
        if cmd == "USER":
            return []
        if cmd == "QUIT":
            return [self._close("Client quit")]
        if not self.registered:
            self._out.append(tmi.not_registered(cmd))
            return []
        if cmd == "JOIN":
            channels = self._channels(msg.param(0))
            return [JoinRequested(channels)] if channels else []
        if cmd == "PART":
            channels = self._channels(msg.param(0))
            return [PartRequested(channels)] if channels else []
        if cmd == "PRIVMSG":
            target, text = msg.param(0), msg.param(1)
            if not CHANNEL_RE.match(target) or len(msg.params) < 2:
                self._out.append(tmi.numeric("411", self.login, "No recipient given (PRIVMSG)"))
                return []
            return [
                MessageRequested(
                    target[1:], text,
                    reply_parent_id=msg.tags.get("reply-parent-msg-id", "")[:64],
                    client_nonce=msg.tags.get("client-nonce", "")[:64],
                )
            ]
        self._out.append(tmi.unknown_command(self.login, cmd))
        return []

    def _cap(self, msg: irc.Message) -> list[Event]:
        sub = msg.param(0).upper()
        target = self._nick or "*"
        if sub == "LS":
            self._negotiating = True
            self._out.append(tmi.cap_reply(target, "LS", " ".join(tmi.CAPABILITIES)))
        elif sub == "REQ":
            requested = msg.param(1).split()
            if requested and all(c in tmi.CAPABILITIES for c in requested):
                self.caps.update(requested)
                self._out.append(tmi.cap_reply(target, "ACK", " ".join(requested)))
            else:
                self._out.append(tmi.cap_reply(target, "NAK", " ".join(requested)))
        elif sub == "END":
            self._negotiating = False
            return self._maybe_login()
        return []

    def _maybe_login(self) -> list[Event]:
        if self.registered or not self._nick or self._negotiating:
            return []
        if ANONYMOUS_RE.match(self._nick):  # any password, as on Twitch (tmi.js sends SCHMOOPIIE)
            self._awaiting_login = True
            return [Authenticate(self._nick, None)]
        if not self._password:
            self._out.append(tmi.auth_failed())
            return [self._close("Login authentication failed")]
        self._awaiting_login = True
        return [Authenticate(self._nick, self._password)]

    def _channels(self, raw: str) -> tuple[str, ...]:
        out: list[str] = []
        for part in raw.lower().split(","):
            part = part.strip()
            if not part:
                continue
            if not CHANNEL_RE.match(part):
                self._out.append(tmi.numeric("403", self.login, part[:30] or "*", "No such channel"))
                continue
            out.append(part[1:])
        return tuple(out)

    def _error(self, reason: str) -> list[Event]:
        self._errors += 1
        self._out.append(tmi.notice("*", "", f"Malformed line: {reason}"))
        if self._errors > MAX_PROTOCOL_ERRORS:
            return [self._close("Too many malformed lines")]
        return []

    def _close(self, reason: str) -> Closed:
        if not self.closed:
            self.closed = True
            self._out.append(tmi.notice("*", "", reason))
        return Closed(reason)

    # Answers from the shell ---------------------------------------------------------------------
    def accept_login(self, login: str, *, anonymous: bool, userstate: dict[str, str]) -> None:
        self.login = login
        self.anonymous = anonymous
        self.registered = True
        self._awaiting_login = False
        self._out.extend(tmi.welcome(login))
        if not anonymous and "twitch.tv/commands" in self.caps:
            self._out.append(tmi.global_userstate(userstate))

    def reject_login(self) -> Closed:
        self._awaiting_login = False
        self._held.clear()
        self._held_bytes = 0
        self._out.append(tmi.auth_failed())
        return self._close("Login authentication failed")

    def release_held(self) -> list[Event]:
        """Lines that arrived while the login was being checked, now that it has been."""
        held, self._held, self._held_bytes = self._held, [], 0
        events: list[Event] = []
        for raw in held:
            events.extend(self.receive_line(raw))
        return events

    def close(self, reason: str) -> Closed:
        return self._close(reason)

    def send(self, *lines: bytes) -> None:
        """Queue lines for this connection only (USERSTATE, NOTICE replies...)."""
        self._out.extend(lines)

    def wants(self, line: bytes) -> bool:
        """Whether a room line is for this client, given the capabilities it asked for."""
        cmd = tmi.line_command(line)
        if cmd in tmi.TWITCH_ONLY_COMMANDS:
            return "twitch.tv/commands" in self.caps
        if cmd in tmi.MEMBERSHIP_COMMANDS:
            return "twitch.tv/membership" in self.caps
        return True

    def format(self, line: bytes) -> bytes:
        return line if "twitch.tv/tags" in self.caps else tmi.strip_tags(line)

    # Output -------------------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data
