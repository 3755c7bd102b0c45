"""The sans-IO TMI session, rules, badges and emotes: bytes in, events and lines out."""

from __future__ import annotations

import datetime as dt

from livecast.chat import badges, emotes, rules
from livecast.chat.session import Authenticate, Closed, JoinRequested, MessageRequested, TmiSession
from livecast.protocols import irc


def lines(session: TmiSession) -> list[irc.Message]:
    return [irc.parse(line) for line in session.data_to_send().decode().split("\r\n") if line]


def test_registration_holds_pipelined_lines_until_login() -> None:
    s = TmiSession()
    events = s.receive_data(b"CAP REQ :twitch.tv/tags twitch.tv/commands\r\nPASS oauth:tok\r\n"
                            b"NICK Alice\r\nJOIN #alice,#bob\r\nPRIVMSG #alice :hi\r\n")
    assert events == [Authenticate("alice", "tok")]
    out = lines(s)
    assert [m.params[1] for m in out] == ["ACK"]
    s.accept_login("alice", anonymous=False, userstate={"user-id": "1"})
    assert s.release_held() == [JoinRequested(("alice", "bob")), MessageRequested("alice", "hi")]
    out = lines(s)
    assert [m.command for m in out] == ["001", "002", "003", "004", "375", "372", "376", "GLOBALUSERSTATE"]


def test_cap_ls_waits_for_cap_end() -> None:
    s = TmiSession()
    assert s.receive_data(b"CAP LS\r\nNICK justinfan1\r\n") == []
    assert s.receive_data(b"CAP END\r\n") == [Authenticate("justinfan1", None)]


def test_unknown_capability_is_naked() -> None:
    s = TmiSession()
    s.receive_data(b"CAP REQ :twitch.tv/tags sasl\r\n")
    msg = lines(s)[0]
    assert msg.params[1:] == ("NAK", "twitch.tv/tags sasl")
    assert s.caps == set()


def test_missing_password_fails_like_twitch() -> None:
    s = TmiSession()
    events = s.receive_data(b"NICK alice\r\n")
    assert isinstance(events[0], Closed)
    assert lines(s)[0].params == ("*", "Login authentication failed")


def test_commands_before_login_and_garbage() -> None:
    s = TmiSession()
    assert s.receive_data(b"JOIN #a\r\n\xff\xfe\r\n@=x PING\r\n") == []
    out = lines(s)
    assert out[0].command == "451"
    assert "UTF-8" in out[1].params[1] and "Malformed" in out[2].params[1]
    events = s.receive_data(b"PING\r\n" * 30)
    assert isinstance(events[-1], Closed)


def test_ping_pong_and_line_limit() -> None:
    s = TmiSession()
    s.receive_data(b"PING :tmi.twitch.tv\r\n")
    assert lines(s)[0].params == ("tmi.twitch.tv", "tmi.twitch.tv")
    s.receive_data(b"PING\r\n")
    assert lines(s)[0].command == "PONG"
    events = s.receive_data(b"x" * 20_000)
    assert events == [Closed("Line too long")]


def test_websocket_frames_may_hold_several_lines() -> None:
    s = TmiSession()
    events = s.receive_text("CAP REQ :twitch.tv/tags\r\nPASS oauth:x\r\nNICK bob\r\n")
    assert events == [Authenticate("bob", "x")]


def test_channel_names_validated() -> None:
    s = TmiSession()
    s.receive_data(b"NICK justinfan5\r\n")
    s.accept_login("justinfan5", anonymous=True, userstate={})
    s.data_to_send()
    assert s.receive_data(b"JOIN #ok,#Bad!Name,notachannel\r\n") == [JoinRequested(("ok",))]
    assert [m.command for m in lines(s)] == ["403", "403"]


def test_badges_and_user_type() -> None:
    st = badges.Standing(is_broadcaster=True, is_subscriber=True, sub_months=14, sub_tier=2000, is_partner=True)
    assert badges.badges(st) == ("broadcaster/1,subscriber/2012,partner/1", "subscriber/14")
    mod = badges.Standing(is_moderator=True, is_vip=False)
    assert badges.badges(mod) == ("moderator/1", "")
    assert badges.user_type(mod) == "mod"
    assert badges.badges(badges.Standing(is_staff=True))[0] == "staff/1"


def test_emote_positions_in_code_points() -> None:
    found = emotes.find_emotes("\U0001F600 Kappa x Kappa", {"Kappa": "25"})
    assert emotes.emotes_tag(found) == "25:2-6,10-14"
    assert emotes.only_emotes("Kappa  Kappa", {"Kappa": "25"})
    assert not emotes.only_emotes("Kappa hi", {"Kappa": "25"})
    png = emotes.png("25", 28)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and b"IHDR" in png


def test_content_rules() -> None:
    viewer = badges.Standing()
    mod = badges.Standing(is_moderator=True)
    room = rules.RoomSettings(subscribers_only=True)
    assert rules.check_content("hi", "c", viewer, room, {}, [], None).msg_id == "msg_subsonly"  # type: ignore[union-attr]
    assert rules.check_content("hi", "c", mod, room, {}, [], None) is None
    followers = rules.RoomSettings(followers_only_minutes=10)
    got = rules.check_content("hi", "c", viewer, followers, {}, [], dt.timedelta(minutes=5))
    assert got is not None and got.msg_id == "msg_followersonly_followed"
    assert rules.check_content("hi", "c", viewer, followers, {}, [], dt.timedelta(minutes=11)) is None
    assert rules.check_content("x" * 501, "c", viewer, rules.RoomSettings(), {}, [], None).msg_id == "msg_too_long"  # type: ignore[union-attr]
