"""The chat panel's IRC parser (static/js/irc.js) under Node, against the ircdocs vectors.

The browser tests show the panel working against Livecast; these pin the parser itself to the
shared IRC test vectors and to Twitch's tag forms (emote positions count code points, so an
emoji before an emote must not shift it).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from parser_tests import data

IRC_JS = Path(__file__).resolve().parents[1] / "src" / "livecast" / "web" / "static" / "js" / "irc.js"
NODE = "/usr/bin/node"

RUNNER = """
globalThis.window = globalThis;
require(process.argv[1]);
const IRC = globalThis.LivecastIRC;
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = {
  parsed: input.lines.map((line) => IRC.parse(line)),
  formatted: input.format.map((f) => IRC.format(f[0], f[1], f[2])),
  emotes: input.emotes.map((e) => IRC.splitEmotes(e[0], IRC.emotes(e[1]))),
  badges: input.badges.map((b) => IRC.badges(b)),
  actions: input.actions.map((a) => IRC.action(a)),
};
process.stdout.write(JSON.stringify(out));
"""


def run_js(**payload: Any) -> dict[str, Any]:
    for key in ("lines", "format", "emotes", "badges", "actions"):
        payload.setdefault(key, [])
    done = subprocess.run([NODE, "-e", RUNNER, str(IRC_JS)], input=json.dumps(payload), capture_output=True,
                          text=True, timeout=30, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_parser_matches_the_ircdocs_split_vectors() -> None:
    cases = data.msg_split["tests"]
    parsed = run_js(lines=[c["input"] for c in cases])["parsed"]
    failures = []
    for case, msg in zip(cases, parsed, strict=True):
        atoms = case["atoms"]
        expected = ({k: ("" if v is None else v) for k, v in (atoms.get("tags") or {}).items()},
                    atoms.get("source") or "", atoms["verb"].upper(), atoms.get("params", []))
        got = (msg["tags"], msg["prefix"], msg["command"], msg["params"])
        if got != expected:
            failures.append((case["input"], got, expected))
    assert not failures, failures[:5]
    assert len(parsed) >= 30  # the whole ircdocs set ran


def test_formatted_lines_parse_back() -> None:
    cases = data.msg_join["tests"]
    fmt = [[c["atoms"]["verb"], c["atoms"].get("params", []), c["atoms"].get("tags")] for c in cases]
    lines = run_js(format=fmt)["formatted"]
    back = run_js(lines=lines)["parsed"]
    for case, msg in zip(cases, back, strict=True):
        atoms = case["atoms"]
        assert msg["command"] == atoms["verb"].upper()
        assert msg["params"] == atoms.get("params", [])
        assert msg["tags"] == {k: ("" if v is None else v) for k, v in (atoms.get("tags") or {}).items()}
    # A chat message is always a trailing parameter, and tag values are escaped.
    line = run_js(format=[["PRIVMSG", ["#chan", "hi"], {"reply-parent-msg-id": "a;b c\\d"}]])["formatted"][0]
    assert line == "@reply-parent-msg-id=a\\:b\\sc\\\\d PRIVMSG #chan :hi"


def test_twitch_tags_emotes_badges_and_actions() -> None:
    line = ("@badge-info=subscriber/14;badges=moderator/1,subscriber/12;color=#1E90FF;display-name=Ünïcode;"
            "emotes=25:7-11/1902:13-17;id=m1;reply-parent-display-name=Bob;reply-parent-msg-body=hi\\sthere "
            ":user!user@user.tmi.twitch.tv PRIVMSG #chan :hello 😀 Kappa Keepo!")
    out = run_js(
        lines=[line],
        emotes=[["hello 😀 Kappa Keepo!", "25:8-12/1902:14-18"], ["Kappa", "25:0-4"], ["short", "25:3-40"]],
        badges=["moderator/1,subscriber/12", "", "vip"],
        actions=["\u0001ACTION waves\u0001", "plain text"],
    )
    msg = out["parsed"][0]
    assert msg["nick"] == "user" and msg["params"] == ["#chan", "hello 😀 Kappa Keepo!"]
    assert msg["tags"]["display-name"] == "Ünïcode" and msg["tags"]["reply-parent-msg-body"] == "hi there"
    assert out["emotes"][0] == [{"text": "hello 😀 "}, {"emote": "25", "code": "Kappa"}, {"text": " "},
                                {"emote": "1902", "code": "Keepo"}, {"text": "!"}]
    assert out["emotes"][1] == [{"emote": "25", "code": "Kappa"}]
    assert out["emotes"][2] == [{"text": "short"}]  # a range past the end is ignored, not a crash
    assert out["badges"] == [[["moderator", "1"], ["subscriber", "12"]], [], [["vip", ""]]]
    assert out["actions"] == [{"action": True, "text": "waves"}, {"action": False, "text": "plain text"}]
