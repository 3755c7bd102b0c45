"""Byte-level tests of the RTMP handshake, chunk stream and AMF0 codec."""

from __future__ import annotations

import datetime as dt
import struct

import pytest

from livecast.protocols.rtmp import amf0, chunk
from livecast.protocols.rtmp.handshake import PACKET_SIZE, HandshakeError, ServerHandshake

# Handshake -----------------------------------------------------------------------------------


def test_handshake_plain_echo_scheme() -> None:
    hs = ServerHandshake(epoch_ms=0x01020304, random_bytes=b"r" * (PACKET_SIZE - 8))
    c1 = struct.pack(">II", 77, 0) + (bytes(range(256)) * 6)[: PACKET_SIZE - 8]
    assert hs.feed(b"\x03").consumed == 0  # C1 not here yet
    result = hs.feed(b"\x03" + c1[:100])
    assert result.consumed == 0 and result.reply == b""
    result = hs.feed(b"\x03" + c1 + b"extra")
    assert result.consumed == 1 + PACKET_SIZE and not result.done
    reply = result.reply
    assert len(reply) == 1 + 2 * PACKET_SIZE
    assert reply[0] == 3
    s1 = reply[1 : 1 + PACKET_SIZE]
    assert s1[:8] == b"\x01\x02\x03\x04\x00\x00\x00\x00"  # time, zero version: no digest checks
    assert s1[8:] == b"r" * (PACKET_SIZE - 8)
    assert reply[1 + PACKET_SIZE :] == c1  # S2 echoes C1
    assert hs.feed(bytes(PACKET_SIZE - 1)).consumed == 0
    done = hs.feed(bytes(PACKET_SIZE))
    assert done.done and done.consumed == PACKET_SIZE


def test_handshake_accepts_digest_client_version() -> None:
    hs = ServerHandshake()
    c1 = struct.pack(">II", 0, 0x80000702) + bytes(PACKET_SIZE - 8)  # librtmp's FP9 version
    result = hs.feed(b"\x03" + c1)
    assert hs.client_version == 0x80000702
    assert result.reply[1 + 4 : 1 + 8] == bytes(4)


@pytest.mark.parametrize("version", [0, 6, 0x16, ord("G")])
def test_handshake_refuses_other_versions(version: int) -> None:
    with pytest.raises(HandshakeError):
        ServerHandshake().feed(bytes((version,)) + bytes(PACKET_SIZE))


# Chunk stream --------------------------------------------------------------------------------


def fmt0(csid: int, ts: int, length: int, type_id: int, stream_id: int) -> bytes:
    return bytes((csid,)) + ts.to_bytes(3, "big") + length.to_bytes(3, "big") + bytes((type_id,)) + \
        stream_id.to_bytes(4, "little")


def test_chunk_single_message_type0() -> None:
    p = chunk.ChunkParser()
    msgs = p.feed(fmt0(4, 1000, 3, chunk.AUDIO, 1) + b"abc")
    assert msgs == [chunk.Message(4, chunk.AUDIO, 1, 1000, b"abc")]
    assert p.buffered == 0


def test_chunk_message_split_across_chunks_and_deltas() -> None:
    body = bytes(range(200))
    data = fmt0(6, 10, 200, chunk.VIDEO, 1) + body[:128] + b"\xc6" + body[128:]
    # type 1: new length and type, delta 33; type 2: delta 40; type 3: same delta again.
    data += b"\x46" + (33).to_bytes(3, "big") + (2).to_bytes(3, "big") + b"\x09" + b"xy"
    data += b"\x86" + (40).to_bytes(3, "big") + b"zw"
    data += b"\xc6" + b"uv"
    msgs = chunk.ChunkParser().feed(data)
    assert [(m.timestamp, m.payload) for m in msgs] == [(10, body), (43, b"xy"), (83, b"zw"), (123, b"uv")]
    assert all(m.stream_id == 1 and m.type_id == chunk.VIDEO for m in msgs)


def test_chunk_byte_at_a_time_gives_the_same_messages() -> None:
    payload = bytes(range(256)) * 3
    data = chunk.serialize(7, chunk.VIDEO, 1, 0x1234, payload, 100) + chunk.serialize(4, chunk.AUDIO, 1, 5, b"a", 100)
    p = chunk.ChunkParser()
    p.chunk_size = 100
    out = []
    for i in range(len(data)):
        out += p.feed(data[i : i + 1])
    assert [(m.csid, m.timestamp, m.payload) for m in out] == [(7, 0x1234, payload), (4, 5, b"a")]


def test_chunk_extended_timestamp_in_type0_and_type3_continuations() -> None:
    ts = 0x01234567
    data = chunk.serialize(5, chunk.VIDEO, 1, ts, b"q" * 300, 128)
    assert data[1:4] == b"\xff\xff\xff" and data[12:16] == struct.pack(">I", ts)
    # every type 3 continuation repeats the 4-byte extended timestamp (ffmpeg and librtmp do)
    assert data[16 + 128 : 16 + 128 + 5] == b"\xc5" + struct.pack(">I", ts)
    msgs = chunk.ChunkParser().feed(data)
    assert msgs == [chunk.Message(5, chunk.VIDEO, 1, ts, b"q" * 300)]


def test_chunk_two_and_three_byte_chunk_stream_ids() -> None:
    two = b"\x00" + bytes((100 - 64,)) + fmt0(0, 1, 1, chunk.AUDIO, 1)[1:] + b"A"
    three = b"\x01" + (400 - 64).to_bytes(2, "little") + fmt0(0, 2, 1, chunk.AUDIO, 1)[1:] + b"B"
    msgs = chunk.ChunkParser().feed(two + three)
    assert [(m.csid, m.payload) for m in msgs] == [(100, b"A"), (400, b"B")]


def test_set_chunk_size_applies_to_the_next_chunk() -> None:
    body = b"v" * 4096
    data = chunk.set_chunk_size(4096) + chunk.serialize(6, chunk.VIDEO, 1, 0, body, 4096)
    p = chunk.ChunkParser()
    msgs = p.feed(data)
    assert p.chunk_size == 4096
    assert msgs == [chunk.Message(6, chunk.VIDEO, 1, 0, body)]  # Set Chunk Size is not passed up


def test_abort_drops_a_partial_message() -> None:
    p = chunk.ChunkParser()
    partial = fmt0(6, 0, 300, chunk.VIDEO, 1) + b"x" * 128
    abort = chunk.serialize(2, chunk.ABORT, 0, 0, struct.pack(">I", 6), 128)
    fresh = fmt0(6, 5, 2, chunk.VIDEO, 1) + b"ok"
    assert p.feed(partial + abort + fresh) == [chunk.Message(6, chunk.VIDEO, 1, 5, b"ok")]


@pytest.mark.parametrize("data", [
    b"\x46" + bytes(7),  # type 1 header on a chunk stream never started
    b"\xc9",  # type 3 likewise
    chunk.serialize(2, chunk.SET_CHUNK_SIZE, 0, 0, b"\x00\x00\x00\x00", 128),  # chunk size 0
    chunk.serialize(2, chunk.SET_CHUNK_SIZE, 0, 0, b"\x80\x00\x00\x10", 128),  # top bit set
    chunk.serialize(2, chunk.SET_CHUNK_SIZE, 0, 0, b"\x01", 128),  # too short
    fmt0(6, 0, 300, 9, 1) + b"x" * 128 + fmt0(6, 0, 3, 9, 1),  # new header inside a message
])
def test_chunk_errors(data: bytes) -> None:
    with pytest.raises(chunk.ChunkError):
        chunk.ChunkParser().feed(data)


def test_too_many_chunk_streams() -> None:
    data = b"".join(b"\x00" + bytes((i,)) + fmt0(0, 0, 1, 8, 1)[1:] + b"a" for i in range(chunk.MAX_CHUNK_STREAMS + 1))
    with pytest.raises(chunk.ChunkError):
        chunk.ChunkParser().feed(data)


def test_control_message_bytes() -> None:
    assert chunk.window_ack_size(2_500_000) == bytes.fromhex("02 000000 000004 05 00000000 002625a0")
    assert chunk.set_peer_bandwidth(2_500_000, 2) == bytes.fromhex("02 000000 000005 06 00000000 002625a0 02")
    assert chunk.user_control(chunk.STREAM_BEGIN, 1) == bytes.fromhex("02 000000 000006 04 00000000 0000 00000001")
    assert chunk.acknowledgement(5000) == bytes.fromhex("02 000000 000004 03 00000000 00001388")


# AMF0 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "encoded"), [
    (1.0, "00 3ff0000000000000"),
    (True, "01 01"),
    ("ab", "02 0002 6162"),
    (None, "05"),
    (amf0.UNDEFINED_VALUE, "06"),
    ({"a": 1.0}, "03 0001 61 00 3ff0000000000000 000009"),
    (amf0.ECMAArray({"w": 2.0}), "08 00000001 0001 77 00 4000000000000000 000009"),
    ([1.0, "x"], "0a 00000002 00 3ff0000000000000 02 0001 78"),
    (dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.UTC), "0b 408f400000000000 0000"),
])
def test_amf0_known_encodings(value: object, encoded: str) -> None:
    raw = bytes.fromhex(encoded)
    assert amf0.encode(value) == raw
    assert amf0.decode(raw) == value


def test_amf0_long_string_and_command() -> None:
    text = "é" * 40000
    raw = amf0.encode(text)
    assert raw[0] == amf0.LONG_STRING and amf0.decode(raw) == text
    body = amf0.encode("connect", 1.0, {"app": "app", "tcUrl": "rtmp://h/app"}, None)
    assert amf0.decode_all(body) == ["connect", 1.0, {"app": "app", "tcUrl": "rtmp://h/app"}, None]


@pytest.mark.parametrize("raw", [
    "00 3ff0",  # truncated number
    "02 0005 6162",  # truncated string
    "03 0001 61",  # object without a value or end
    "07 0001",  # reference: refused
    "10 0001 61",  # typed object: refused
    "11",  # AVM+ switch: refused
    "02 0002 ff fe",  # not UTF-8
    "0a ffffffff 05",  # strict array claiming more values than bytes
    "0b 7ff0000000000000 0000",  # infinite date
    "0b 4310000000000000 0000",  # a date past year 9999
])
def test_amf0_malformed(raw: str) -> None:
    with pytest.raises(amf0.AMF0Error):
        amf0.decode_all(bytes.fromhex(raw))


def test_amf0_depth_is_bounded() -> None:
    deep = b"\x0a\x00\x00\x00\x01" * (amf0.MAX_DEPTH + 2) + b"\x05"
    with pytest.raises(amf0.AMF0Error, match="deep"):
        amf0.decode(deep)
    nested: list[object] = []
    for _ in range(amf0.MAX_DEPTH + 2):
        nested = [nested]
    with pytest.raises(amf0.AMF0Error):
        amf0.encode(nested)


def test_unfinished_messages_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunk, "MAX_PENDING", 1000)
    p = chunk.ChunkParser()
    # Two chunk streams each start a 100 kB message and never finish it.
    p.feed(fmt0(4, 0, 100_000, chunk.VIDEO, 1) + b"x" * 128 + fmt0(5, 0, 100_000, chunk.VIDEO, 1) + b"y" * 128)
    with pytest.raises(chunk.ChunkError, match="unfinished"):
        p.feed(b"".join(b"\xc4" + b"x" * 128 for _ in range(6)))
    # Finished messages release their share.
    p = chunk.ChunkParser()
    for _ in range(20):
        assert len(p.feed(chunk.serialize(4, chunk.VIDEO, 1, 0, b"z" * 600, 128))) == 1
