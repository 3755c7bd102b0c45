"""Property tests: whatever a client sends, the parsers answer with their own errors only.

Bounded (a few hundred examples each) so they run in the normal suite.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livecast.protocols import flv
from livecast.protocols.rtmp import amf0, chunk
from livecast.protocols.rtmp.connection import CLOSED, NEED_DATA, ProtocolError, RTMPConnection
from livecast.protocols.rtmp.handshake import PACKET_SIZE

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in [*points, len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


@FAST
@given(st.binary(max_size=2000), st.lists(st.integers(0, 4000), max_size=8))
def test_chunk_parser_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    parser = chunk.ChunkParser()
    try:
        for piece in splits(data, cuts):
            for msg in parser.feed(piece):
                assert len(msg.payload) <= 0xFFFFFF
    except chunk.ChunkError:
        pass


amf_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20) | st.just(amf0.UNDEFINED_VALUE),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=4),
    max_leaves=20,
)


@FAST
@given(amf_values)
def test_amf0_round_trip(value: object) -> None:
    assert amf0.decode(amf0.encode(value)) == value


@FAST
@given(st.binary(max_size=500))
def test_amf0_decoder_arbitrary_bytes(data: bytes) -> None:
    try:
        amf0.decode_all(data)
    except amf0.AMF0Error:
        pass


@FAST
@given(st.binary(max_size=300), st.integers(0, 12))
def test_amf0_decoder_mutated_commands(noise: bytes, where: int) -> None:
    good = amf0.encode("connect", 1.0, {"app": "app", "tcUrl": "rtmp://h/app", "n": [1.0, {"x": None}]})
    data = good[:where * 5] + noise + good[where * 5 :]
    try:
        amf0.decode_all(data)
    except amf0.AMF0Error:
        pass


def handshaken() -> RTMPConnection:
    conn = RTMPConnection()
    conn.receive_data(b"\x03" + bytes(PACKET_SIZE) + bytes(PACKET_SIZE))
    conn.data_to_send()
    return conn


def drive(conn: RTMPConnection, pieces: list[bytes]) -> None:
    """Feed pieces, accepting whatever asks for a decision, as the server shell does."""
    for piece in pieces:
        conn.receive_data(piece)
        while (ev := conn.next_event()) is not NEED_DATA:
            name = type(ev).__name__
            if name == "Connect":
                conn.accept_connect()
            elif name == "Publish":
                conn.accept_publish()
            elif isinstance(ev, ProtocolError):
                assert conn.state == CLOSED
        conn.data_to_send()


@FAST
@given(st.binary(max_size=3000), st.lists(st.integers(0, 6000), max_size=6))
def test_connection_arbitrary_bytes_before_and_after_handshake(data: bytes, cuts: list[int]) -> None:
    drive(RTMPConnection(), splits(b"\x03" + data, cuts))
    drive(handshaken(), splits(data, cuts))


command_names = st.sampled_from(["connect", "releaseStream", "FCPublish", "createStream", "publish", "FCUnpublish",
                                 "deleteStream", "_checkbw", "play", "@setDataFrame"])
messages = st.tuples(
    st.sampled_from([1, 2, 3, 4, 5, 6, 8, 9, 15, 17, 18, 20, 22]),
    st.one_of(
        st.tuples(command_names, st.floats(0, 10), amf_values, amf_values).map(lambda t: amf0.encode(*t)),
        st.binary(max_size=64),
        st.sampled_from([b"\x17\x00\x00\x00\x00\x01\x64", b"\x90hvc1", b"\xaf\x00\x12\x10", b"\x00\x00\x10\x00"]),
    ),
    st.integers(0, 0xFFFFFFFF),
)


@FAST
@given(st.lists(messages, max_size=12), st.lists(st.integers(0, 3000), max_size=6))
def test_connection_structured_messages(msgs: list[tuple[int, bytes, int]], cuts: list[int]) -> None:
    conn = handshaken()
    prologue = [
        chunk.serialize(3, 20, 0, 0, amf0.encode("connect", 1.0, {"app": "app"}), 128),
        chunk.serialize(3, 20, 0, 0, amf0.encode("publish", 2.0, None, "k", "live"), 128),
    ]
    body = b"".join(chunk.serialize(4 + i % 3, t, 1, ts, p, 128) for i, (t, p, ts) in enumerate(msgs))
    drive(conn, prologue + splits(body, cuts))


@FAST
@given(st.binary(max_size=400))
def test_flv_parsers_arbitrary_bytes(data: bytes) -> None:
    for parse in (flv.parse_avc_config, flv.parse_aac_config):
        try:
            parse(data)
        except flv.FLVError:
            pass
    try:
        flv.FLVReader().feed(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00" + data)
    except flv.FLVError:
        pass
