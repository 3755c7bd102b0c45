"""The sans-IO IRC core against the ircdocs parser test vectors and Twitch's wire forms."""

from __future__ import annotations

import pytest
from parser_tests import data

from livecast.protocols import irc


@pytest.mark.parametrize("case", data.msg_split["tests"], ids=lambda c: c["input"][:40])
def test_msg_split(case: dict) -> None:
    msg = irc.parse(case["input"])
    atoms = case["atoms"]
    assert msg.tags == atoms.get("tags", {}) or (msg.tags == {} and not atoms.get("tags"))
    assert msg.source == atoms.get("source")
    assert msg.command == atoms["verb"].upper()
    assert list(msg.params) == atoms.get("params", [])


@pytest.mark.parametrize("case", data.msg_join["tests"], ids=lambda c: c.get("desc", "")[:40])
def test_msg_join(case: dict) -> None:
    atoms = case["atoms"]
    msg = irc.Message(
        command=atoms["verb"],
        params=tuple(atoms.get("params", [])),
        tags={k: ("" if v is None else v) for k, v in (atoms.get("tags") or {}).items()},
        source=atoms.get("source"),
    )
    assert irc.serialize(msg) in case["matches"]


def test_twitch_privmsg_round_trip() -> None:
    line = (
        "@badge-info=;badges=broadcaster/1;color=#FF0000;display-name=Alice;emotes=25:0-4;"
        "id=abc;room-id=1;tmi-sent-ts=1700000000000;user-id=1;user-type= "
        ":alice!alice@alice.tmi.twitch.tv PRIVMSG #alice :Kappa hello there"
    )
    msg = irc.parse(line)
    assert msg.tags["badges"] == "broadcaster/1"
    assert msg.tags["user-type"] == ""
    assert msg.params == ("#alice", "Kappa hello there")
    assert irc.serialize(msg, trailing=True, bare_empty_tags=False) == line


def test_tag_escaping_round_trip() -> None:
    value = "a;b c\\d\r\ne"
    msg = irc.Message("NOTICE", ("*", "x"), {"k": value})
    assert irc.parse(irc.serialize(msg)).tags["k"] == value


def test_line_reader_splits_and_limits() -> None:
    reader = irc.LineReader(max_line=100)
    assert reader.feed(b"PING :a\r\nPI") == [b"PING :a"]
    assert reader.feed(b"NG :b\n\r\n") == [b"PING :b"]
    with pytest.raises(irc.LineTooLong):
        reader.feed(b"x" * 101)
    with pytest.raises(irc.LineTooLong):
        irc.LineReader(max_line=100).feed(b"y" * 150 + b"\n")


def test_tag_bomb_and_garbage_are_errors() -> None:
    with pytest.raises(irc.IrcError):
        irc.parse("@" + ";".join(f"k{i}=v" for i in range(500)) + " PRIVMSG #a :x")
    with pytest.raises(irc.IrcError):
        irc.parse("   ")
    with pytest.raises(irc.IrcError):
        irc.parse("@=x PING")


def test_middle_param_with_space_refused() -> None:
    with pytest.raises(irc.IrcError):
        irc.serialize(irc.Message("PRIVMSG", ("#a b", "x")))


def test_split_frame() -> None:
    assert irc.split_frame("PING :a\r\nPONG :b\r\n") == ["PING :a", "PONG :b"]


def test_line_breaks_inside_lines_are_refused() -> None:
    with pytest.raises(irc.IrcError):
        irc.parse("PRIVMSG #a :hi\rPRIVMSG #a :injected")
    with pytest.raises(irc.IrcError):
        irc.parse("PRIVMSG #a :nul\0")
    with pytest.raises(irc.IrcError):
        irc.serialize(irc.Message("PRIVMSG", ("#a", "two\nlines")))
