"""Property tests for the parsers strangers' bytes reach, beyond the RTMP ones in
``test_rtmp_fuzz.py``: IRC lines, tags and the TMI session; FLV tags, avcC/SPS and the ingest
health tracker; AMF0 nesting; LL-HLS query strings as Starlette hands them over; MP4 box
headers. Bounded so they run in the normal suite; ``fuzz/`` has the atheris harnesses for
longer runs. The tests at the end are the regressions for what fuzzing found.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from livecast.chat import commands
from livecast.chat.session import Closed, TmiSession
from livecast.delivery.query import HlsQuery, QueryError, parse_hls_query, too_far_ahead
from livecast.discovery import viewers
from livecast.ingest.health import HealthTracker
from livecast.protocols import flv, irc, mp4
from livecast.protocols.rtmp import amf0
from livecast.subscriptions.providers import stripe
from tests.conftest import Server
from tests.test_chat_tcp import Client

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A real AVC sequence header (x264 High, 640x360, so with frame cropping) from ffmpeg.
AVC_HEADER = bytes.fromhex(
    "17000000000164001effe1001a6764001eacd940a02ff970110000030001000003003c0f162d9601000668ebe3cb22c0fdf8f800"
)


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in [*points, len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


# IRC ------------------------------------------------------------------------------------------

tag_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-/.", min_size=1, max_size=12)
tag_values = st.text(max_size=24).filter(lambda v: "\0" not in v)
line_text = st.text(alphabet=st.characters(blacklist_characters="\r\n\0"), max_size=60)


@FAST
@given(st.text(max_size=400))
def test_irc_parse_arbitrary_text(text: str) -> None:
    try:
        msg = irc.parse(text)
    except irc.IrcError:
        return
    assert msg.command and len(msg.params) <= irc.MAX_PARAMS + 1 and len(msg.tags) <= irc.MAX_TAG_COUNT


@FAST
@given(st.dictionaries(tag_keys, tag_values, max_size=6), line_text)
def test_irc_tags_and_text_round_trip(tags: dict[str, str], text: str) -> None:
    """Whatever a tag value holds (spaces, ``;``, backslashes, CR LF) survives escaping."""
    msg = irc.Message("PRIVMSG", ("#chan", text), tags=tags, source="a!a@a.tmi.twitch.tv")
    back = irc.parse(irc.serialize(msg, trailing=True, bare_empty_tags=False))
    assert dict(back.tags) == tags
    assert back.params == ("#chan", text) and back.source == msg.source


@FAST
@given(st.binary(max_size=3000), st.lists(st.integers(0, 6000), max_size=8))
def test_irc_line_reader_is_split_independent_and_bounded(data: bytes, cuts: list[int]) -> None:
    reader = irc.LineReader(max_line=512)
    whole: list[bytes] | None
    try:
        whole = irc.LineReader(max_line=512).feed(data)
    except irc.LineTooLong:
        whole = None
    got: list[bytes] = []
    try:
        for piece in splits(data, cuts):
            got += reader.feed(piece)
            assert len(reader._buf) <= 512
    except irc.LineTooLong:
        return  # refusing at some piece is right even if the whole data, fed at once, was refused too
    assert whole is not None and got == whole


def _lines_out(session: TmiSession) -> list[irc.Message]:
    return [irc.parse(line.decode()) for line in session.data_to_send().split(b"\r\n") if line]


@FAST
@given(st.lists(st.binary(max_size=400), max_size=12))
def test_tmi_session_arbitrary_tcp_bytes(chunks: list[bytes]) -> None:
    """Any bytes: the session answers with well-formed lines, and closes at most once."""
    session = TmiSession()
    closes = 0
    for chunk in chunks:
        closes += sum(isinstance(ev, Closed) for ev in session.receive_data(chunk))
        for msg in _lines_out(session):
            assert msg.source == "tmi.twitch.tv" or msg.command in {"PONG", "CAP"}
    assert closes <= 1 and (closes == 0 or session.closed)


commands_text = st.lists(
    st.sampled_from(["CAP REQ :twitch.tv/tags twitch.tv/commands", "CAP END", "NICK justinfan1", "PASS oauth:x",
                     "JOIN #a", "JOIN #a,#b,#", "PART #a", "PING :x", "PRIVMSG #a :hi", "PRIVMSG", "@a=b PING",
                     "WHO #a", ":src NICK", "CAP LS 302"])
    # Text a WebSocket frame can carry: valid UTF-8, so no lone surrogates (the server's
    # WebSocket layer refuses those frames before chat sees them).
    | st.text(alphabet=st.characters(codec="utf-8", blacklist_characters="\r\n\0"), max_size=60),
    max_size=15,
).map("\r\n".join)


@FAST
@given(commands_text)
def test_tmi_session_websocket_frames(frame: str) -> None:
    session = TmiSession()
    for ev in session.receive_text(frame):
        if type(ev).__name__ == "Authenticate":
            session.accept_login("justinfan1", anonymous=True, userstate={})
            session.release_held()
    _lines_out(session)


# FLV and the ingest health tracker -----------------------------------------------------------

flv_tags = st.lists(st.tuples(st.sampled_from([flv.AUDIO, flv.VIDEO, flv.SCRIPT]), st.integers(0, 0xFFFFFFFF),
                              st.binary(max_size=300)), max_size=8)


@FAST
@given(flv_tags, st.lists(st.integers(0, 4000), max_size=8))
def test_flv_reader_round_trip_in_any_pieces(tags: list[tuple[int, int, bytes]], cuts: list[int]) -> None:
    data = flv.header() + b"".join(flv.tag(t, ts, body) for t, ts, body in tags)
    reader = flv.FLVReader()
    got: list[flv.Tag] = []
    for piece in splits(data, cuts):
        got += reader.feed(piece)
    assert [(t.tag_type, t.timestamp, t.body) for t in got] == tags


@FAST
@given(st.data())
def test_avc_config_mutated(data: st.DataObject) -> None:
    body = bytearray(AVC_HEADER)
    for _ in range(data.draw(st.integers(1, 6))):
        body[data.draw(st.integers(5, len(body) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(5, len(body)))
    for blob in (bytes(body), bytes(body[:cut])):
        try:
            cfg = flv.parse_avc_config(blob)
        except flv.FLVError:
            continue
        assert cfg.width > 0 and cfg.height > 0


@FAST
@given(st.lists(st.tuples(st.integers(0, 0xFFFFFFFF), st.binary(max_size=80)), max_size=20),
       st.lists(st.binary(max_size=40), max_size=10), st.floats(0, 1e6))
def test_health_tracker_takes_any_tags(video: list[tuple[int, bytes]], audio: list[bytes], now: float) -> None:
    health = HealthTracker()
    for ts, body in video:
        health.video_tag(ts, body)
        health.bytes_in(len(body), now)
    health.video_tag(0, AVC_HEADER[:20])  # a truncated sequence header
    for body in audio:
        health.audio_tag(body)
    health.bitrate_kbps(now + 1)
    health.fps()


# AMF0 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", [b"\x03\x00\x01a", b"\x0a\x00\x00\x00\x01", b"\x08\x00\x00\x00\x01\x00\x01a"])
def test_amf0_nesting_bomb_is_an_amf0_error(unit: bytes) -> None:
    """100,000 nested containers in 900 KB: refused by depth, never a RecursionError."""
    with pytest.raises(amf0.AMF0Error):
        amf0.decode(unit * 100_000)


def test_amf0_counts_lie() -> None:
    with pytest.raises(amf0.AMF0Error):
        amf0.decode(b"\x0a\xff\xff\xff\xff")  # a strict array claiming 4 billion items in 5 bytes
    with pytest.raises(amf0.AMF0Error):
        amf0.decode(b"\x0a\x00\x01\x00\x00" + b"\x05" * 0x10000)  # 65,536 nulls: over the value cap


# LL-HLS query strings, as the HTTP layer decodes them -------------------------------------------

query_parts = st.lists(st.tuples(
    st.sampled_from(["_HLS_msn", "_HLS_part", "_HLS_skip", "_HLS_msn%00", "x"]),
    st.sampled_from(["", "0", "1", "12", "-1", "+1", "1.0", "%31", "%EF%BC%91", "YES", "v2", "1e2", "9" * 20,
                     "%00", "%FF", " 1", "1 "]) | st.text(max_size=8),
), max_size=5).map(lambda kv: "&".join(f"{k}={v}" for k, v in kv))


@FAST
@given(query_parts)
def test_hls_query_strings(qs: str) -> None:
    try:
        query = parse_hls_query(QueryParams(qs))
    except QueryError:
        return
    assert query.msn is None or 0 <= query.msn < 10**15
    assert query.part is None or (query.msn is not None and 0 <= query.part < 10**15)


@FAST
@given(st.integers(0, 10**15 - 1), st.none() | st.integers(0, 10**15 - 1), st.integers(-1, 10**15),
       st.integers(-1, 10**6), st.floats(0.05, 4), st.integers(0, 240))
def test_too_far_ahead_is_total(msn: int, part: int | None, last_msn: int, last_part: int, target: float,
                                per: int) -> None:
    assert isinstance(too_far_ahead(HlsQuery(msn, part), last_msn, last_part, part_target=target,
                                    parts_per_segment=per), bool)


# MP4 box headers ------------------------------------------------------------------------------


@FAST
@given(st.sampled_from([0, 1, 7, 8, 16, 0xFFFFFFFF]), st.sampled_from([b"moof", b"mdat", b"ftyp", b"uuid"]),
       st.integers(0, 2**64 - 1), st.binary(max_size=64))
def test_mp4_box_headers(size: int, kind: bytes, large: int, rest: bytes) -> None:
    data = struct.pack(">I", size) + kind + (struct.pack(">Q", large) if size == 1 else b"") + rest
    try:
        boxes = list(mp4.iter_boxes(data))
    except mp4.Mp4Error:
        return
    for box in boxes:
        assert box.end <= len(data)


# Regressions: what fuzzing found ----------------------------------------------------------------


@pytest.mark.parametrize("raw", ["²", "1²", "٣", "१०", "10m²", "", "m", "-5", "1.5"])
def test_command_durations_are_ascii_digits_only(raw: str) -> None:
    """``"²".isdigit()`` is true and ``int("²")`` raises: "/timeout bob ²" dropped the moderator."""
    assert commands._duration(raw) is None


@FAST
@given(st.text(max_size=80))
def test_playback_token_verify_takes_any_text(token: str) -> None:
    """A non-ASCII MAC made ``hmac.compare_digest`` raise TypeError: a 500 on /api/heartbeat."""
    assert viewers.verify_token(b"secret", token) is None
    assert viewers.verify_token(b"secret", "eyJ4Ijo.é") is None
    assert viewers.verify_token(b"secret", "\ud800.x") is None  # JSON "\ud800": a lone surrogate


@FAST
@given(st.text(alphabet=st.characters(max_codepoint=255), max_size=80))
def test_stripe_signature_header_takes_any_latin1(header: str) -> None:
    """Headers arrive as latin-1 text; ``v1=é`` made the webhook answer 500, not 400."""
    with pytest.raises(stripe.SignatureError):
        stripe.verify(b"{}", header, "whsec_x")
    with pytest.raises(stripe.SignatureError):
        stripe.verify(b"{}", "t=1,v1=\xe9\xe9", "whsec_x")


async def test_moderator_commands_with_unicode_digits_keep_the_connection(server: Server) -> None:
    alice = await server.create_user("alice")
    await server.create_user("bob")
    c = await Client.in_room(server.irc_port, "alice", alice["token"], "alice")
    c.send("PRIVMSG #alice :/timeout bob ²", "PRIVMSG #alice :/followers ٣", "PRIVMSG #alice :/slow ²")
    bad = await c.expect("NOTICE", lambda m: m.tags.get("msg-id") == "bad_timeout_duration")
    assert bad.params[-1] == "Invalid timeout duration: ²"
    await c.expect("NOTICE", lambda m: m.tags.get("msg-id") == "usage_followers_on")
    await c.expect("NOTICE", lambda m: m.tags.get("msg-id") == "slow_on")
    c.send("PING :alive")
    await c.expect("PONG", lambda m: m.params[-1] == "alive")
    assert not c.eof
    await c.close()


@pytest.mark.parametrize("line", [b"@a=b :x!sc;d :x!x@x PRIVMSG #a :hi", b":src :cmd", b"PRIV\xc3\xa9MSG #a :x",
                                  b"12 x", b"1234 x", b"PR1VMSG #a :x"])
def test_odd_commands_are_malformed_lines_not_errors(line: bytes) -> None:
    """Found by atheris: a command of ``:x!x@x`` was echoed in the 451 reply, whose serializer
    raised, so the connection died with a traceback instead of a NOTICE."""
    session = TmiSession()
    session.receive_data(line + b"\r\n")
    replies = _lines_out(session)
    assert [m.command for m in replies] == ["NOTICE"] and replies[0].params[-1].startswith("Malformed line")


async def test_vod_media_names_with_unicode_digits_are_404(server: Server) -> None:
    """``/vods/<id>/source/init².mp4`` reached ``int("²")``: a 500 instead of a 404."""
    import httpx

    async with httpx.AsyncClient(base_url=server.http_url) as http:
        for name in ("init².mp4", "²².m4s", "١٢.m4s", "init٣.mp4", "12.m4s"):
            r = await http.get(f"/vods/{'1' * 20}/source/{name}")
            assert r.status_code == 404, (name, r.status_code)


@FAST
@given(st.text(max_size=40) | st.builds(lambda a, b: f"bytes={a}-{b}", st.text("0123456789٣", max_size=20),
                                        st.text("0123456789", max_size=5000)))
def test_clip_range_header_takes_any_text(header: str) -> None:
    """A 5,000-digit Range made int() raise: a 500 on clip MP4s instead of the whole file."""
    from starlette.requests import Request

    from livecast.vod.routes import _ranged

    try:
        encoded = header.encode("latin-1")
    except UnicodeEncodeError:
        return  # not a header value HTTP can carry
    request = Request({"type": "http", "method": "GET", "headers": [(b"range", encoded)]})
    response = _ranged(request, b"x" * 1000, "video/mp4")
    assert response.status_code in {200, 206, 416}


async def test_checkout_count_infinity_is_a_400(server: Server) -> None:
    """JSON's ``Infinity`` made ``int()`` raise OverflowError: a 500 at checkout."""
    import httpx

    from tests.test_web_auth import CSRF, signup

    await server.create_user("alice", partner=True)
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        await signup(http, "payer")
        page = await http.get("/alice")
        match = CSRF.search(page.text)
        assert match, "the channel page has no CSRF token"
        r = await http.post("/subscriptions/checkout", content=b'{"channel": "alice", "count": Infinity}',
                            headers={"Content-Type": "application/json", "X-CSRF-Token": match.group(1)})
        assert r.status_code == 400, r.text


async def test_lone_surrogates_in_json_are_a_400(server: Server) -> None:
    """``"\\ud800"`` in a JSON body becomes text no encoder takes: 500s from the database and the
    chat wire before; the client's malformed input, so a 400 with Twitch's envelope."""
    import httpx

    alice = await server.create_user("alice")
    auth = {"Client-Id": alice["client_id"], "Authorization": f"Bearer {alice['token']}",
            "Content-Type": "application/json"}
    uid = alice["user_id"]
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        r = await http.patch(f"/helix/channels?broadcaster_id={uid}", headers=auth,
                             content=b'{"title": "x\\ud800"}')
        assert r.status_code == 400 and r.json()["status"] == 400, r.text
        body = f'{{"broadcaster_id": "{uid}", "sender_id": "{uid}", "message": "hi \\ud800"}}'
        r = await http.post("/helix/chat/messages", headers=auth, content=body.encode())
        assert r.status_code == 400, r.text
        r = await http.patch(f"/helix/channels?broadcaster_id={uid}", headers=auth,
                             content=b'{"title": "emoji \\ud83d\\ude00 pairs are fine"}')
        assert r.status_code == 204, r.text
