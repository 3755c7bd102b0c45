"""IRC lines with IRCv3 message tags: parsing, serialization and line framing, sans-IO.

Nothing here touches a socket or the event loop. :class:`LineReader` turns received bytes into
complete lines and enforces the size limits that keep a hostile client from making the server
buffer without bound; :func:`parse` turns one line into a :class:`Message`; :func:`serialize`
turns a :class:`Message` back into wire text. Both follow the ircdocs parser test vectors
(``irc-parser-tests``), which pin down the corner cases clients disagree about: repeated
spaces between parameters, a trailing parameter that is empty or holds only spaces, and tag
value escaping (``\\:`` ``\\s`` ``\\\\`` ``\\r`` ``\\n``, an unknown escape dropping the
backslash, a lone trailing backslash being dropped).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# IRCv3 allows 8191 bytes of tags (with the leading "@" and the space) plus 512 for the rest.
MAX_TAGS_BYTES = 8191
MAX_REST_BYTES = 512
MAX_LINE_BYTES = MAX_TAGS_BYTES + MAX_REST_BYTES
MAX_TAG_COUNT = 64
MAX_PARAMS = 15


class IrcError(ValueError):
    """A line that is not valid IRC or breaks a limit; the message is safe to show the client."""


class LineTooLong(IrcError):
    pass


@dataclass(frozen=True, slots=True)
class Message:
    """One IRC message. ``tags`` values are unescaped; a tag without a value maps to ``""``."""

    command: str
    params: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    source: str | None = None

    def param(self, index: int, default: str = "") -> str:
        return self.params[index] if index < len(self.params) else default


_ESCAPES = {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"}
_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_ESCAPE_TABLE = str.maketrans(_ESCAPES)


def escape_tag_value(value: str) -> str:
    return value.translate(_ESCAPE_TABLE)


def unescape_tag_value(raw: str) -> str:
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        if ch == "\\":
            if i + 1 < n:
                nxt = raw[i + 1]
                out.append(_UNESCAPES.get(nxt, nxt))
            i += 2  # a lone trailing backslash is dropped
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def parse_tags(raw: str) -> dict[str, str]:
    """Parse the text between ``@`` and the first space; later duplicates win, as IRCv3 says."""
    tags: dict[str, str] = {}
    for item in raw.split(";"):
        if not item:
            continue
        key, _, value = item.partition("=")
        if not key:
            raise IrcError("empty tag key")
        tags[key] = unescape_tag_value(value)
        if len(tags) > MAX_TAG_COUNT:
            raise IrcError("too many tags")
    return tags


def parse(line: str) -> Message:
    """Parse one line (without its CR LF). Raises :class:`IrcError` on malformed input."""
    line = line.rstrip("\r\n")
    if "\r" in line or "\n" in line or "\0" in line:
        raise IrcError("CR, LF and NUL are not allowed inside a line")
    tags: dict[str, str] = {}
    source: str | None = None
    rest = line.lstrip(" ")
    if rest.startswith("@"):
        raw_tags, _, rest = rest[1:].partition(" ")
        if len(raw_tags) + 2 > MAX_TAGS_BYTES:
            raise LineTooLong("tags too long")
        tags = parse_tags(raw_tags)
        rest = rest.lstrip(" ")
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    trailing: str | None = None
    if " :" in rest:
        rest, _, trailing = rest.partition(" :")
    elif rest.startswith(":"):
        trailing, rest = rest[1:], ""
    parts = rest.split()
    if not parts:
        raise IrcError("no command")
    command = parts[0].upper()
    # RFC 1459: letters or three digits. Anything else (":x!y@z" after a source, found by
    # fuzzing) could not even be echoed back in a 421/451 reply without breaking the framing.
    if not (command.isascii() and (command.isalpha() or (len(command) == 3 and command.isdigit()))):
        raise IrcError("bad command")
    params = parts[1:]
    if trailing is not None:
        params.append(trailing)
    if len(params) > MAX_PARAMS + 1:
        raise IrcError("too many parameters")
    return Message(command=command, params=tuple(params), tags=tags, source=source)


def serialize_tags(tags: Mapping[str, str], *, bare_empty: bool = True) -> str:
    """``key=value;...``. Twitch writes ``key=`` for empty values (``bare_empty=False``)."""
    parts = []
    for key, value in tags.items():
        if value == "" and bare_empty:
            parts.append(key)
        else:
            parts.append(f"{key}={escape_tag_value(value)}")
    return ";".join(parts)


def serialize(
    msg: Message, *, trailing: bool = False, bare_empty_tags: bool = True, with_tags: bool = True
) -> str:
    """Wire text without CR LF. ``trailing`` forces ``:`` before the last parameter, as Twitch
    does for message text; it is added anyway when the parameter needs it."""
    out: list[str] = []
    if with_tags and msg.tags:
        out.append("@" + serialize_tags(msg.tags, bare_empty=bare_empty_tags))
    if msg.source:
        out.append(":" + msg.source)
    out.append(msg.command)
    params = msg.params
    for i, p in enumerate(params):
        if "\r" in p or "\n" in p or "\0" in p:
            raise IrcError("CR, LF and NUL cannot be sent inside a parameter")
        last = i == len(params) - 1
        if last and (trailing or not p or " " in p or p.startswith(":")):
            out.append(":" + p)
        else:
            if not p or " " in p or p.startswith(":"):
                raise IrcError(f"middle parameter {p!r} cannot be sent")
            out.append(p)
    return " ".join(out)


def encode(msg: Message, **kwargs: bool) -> bytes:
    return (serialize(msg, **kwargs) + "\r\n").encode()


class LineReader:
    """Splits a byte stream into lines, refusing lines over ``max_line`` bytes.

    A line ends at LF (an optional CR before it is removed). Once a line is too long the reader
    raises :class:`LineTooLong` rather than buffering on: the caller answers and disconnects.
    """

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self.max_line = max_line
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        lines: list[bytes] = []
        start = 0
        buf = self._buf
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            if end - start > self.max_line:
                raise LineTooLong("line too long")
            line = bytes(buf[start:end])
            if line.endswith(b"\r"):
                line = line[:-1]
            if line:
                lines.append(line)
            start = end + 1
        del buf[:start]
        if len(buf) > self.max_line:
            raise LineTooLong("line too long")
        return lines


def split_frame(text: str) -> list[str]:
    """A WebSocket text frame may carry several lines (Twitch sends and accepts that)."""
    return [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
