"""Fuzz targets: one function per parser that reads bytes from strangers.

Each target takes arbitrary bytes and may raise only the parser's own error class (which the
server turns into the protocol's error reply); anything else is a finding. The targets are
plain functions so that ``fuzz/run.py`` can drive them with atheris (coverage-guided, long
runs) and ``tests/test_fuzz_harness.py`` can keep them working with a few seeds in the normal
suite, without atheris.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from starlette.datastructures import QueryParams

from livecast.chat.session import TmiSession
from livecast.delivery.query import QueryError, parse_hls_query, parse_media_name
from livecast.ingest.health import HealthTracker
from livecast.protocols import flv, irc, mp4
from livecast.protocols.rtmp import amf0, chunk
from livecast.protocols.rtmp.connection import NEED_DATA, Connect, Publish, RTMPConnection
from livecast.protocols.rtmp.handshake import PACKET_SIZE


def rtmp_connection(data: bytes) -> None:
    """A whole connection after a valid handshake, accepting connect and publish as the shell does."""
    conn = RTMPConnection()
    conn.receive_data(b"\x03" + bytes(PACKET_SIZE) + bytes(PACKET_SIZE))
    conn.data_to_send()
    for i in range(0, len(data), 997):  # odd-sized pieces exercise partial chunks
        conn.receive_data(data[i : i + 997])
        while (ev := conn.next_event()) is not NEED_DATA:
            if isinstance(ev, Connect):
                conn.accept_connect()
            elif isinstance(ev, Publish):
                conn.accept_publish()
        conn.data_to_send()


def rtmp_handshake(data: bytes) -> None:
    conn = RTMPConnection()
    conn.receive_data(data)
    while conn.next_event() is not NEED_DATA:
        pass
    conn.data_to_send()


def rtmp_chunks(data: bytes) -> None:
    try:
        chunk.ChunkParser().feed(data)
    except chunk.ChunkError:
        pass


def amf0_values(data: bytes) -> None:
    try:
        amf0.decode_all(data)
    except amf0.AMF0Error:
        pass


def flv_stream(data: bytes) -> None:
    try:
        flv.FLVReader().feed(flv.header() + data)
    except flv.FLVError:
        pass


def flv_codec_config(data: bytes) -> None:
    for parse in (flv.parse_avc_config, flv.parse_aac_config):
        try:
            parse(data)
        except flv.FLVError:
            pass
    health = HealthTracker()
    health.video_tag(0, data)
    health.audio_tag(data)


def mp4_boxes(data: bytes) -> None:
    for fn in (lambda: mp4.FragmentSplitter().feed(data), lambda: mp4.parse_init(data),
               lambda: mp4.parse_fragment(data), lambda: list(mp4.iter_boxes(data))):
        try:
            fn()
        except mp4.Mp4Error:
            pass


def irc_lines(data: bytes) -> None:
    """TCP bytes through the TMI session (framing, UTF-8, parsing, registration)."""
    session = TmiSession()
    session.receive_data(data)
    for line in session.data_to_send().split(b"\r\n"):
        if line:
            irc.parse(line.decode())  # what we send must itself be valid IRC
    text = data.decode("utf-8", errors="replace")
    try:
        irc.parse(text)
    except irc.IrcError:
        pass


def hls_query(data: bytes) -> None:
    qs = data.decode("latin-1")
    try:
        parse_hls_query(QueryParams(qs))
    except QueryError:
        pass
    parse_media_name(qs)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "rtmp_connection": rtmp_connection,
    "rtmp_handshake": rtmp_handshake,
    "rtmp_chunks": rtmp_chunks,
    "amf0": amf0_values,
    "flv": flv_stream,
    "flv_config": flv_codec_config,
    "mp4": mp4_boxes,
    "irc": irc_lines,
    "hls_query": hls_query,
}

# A few valid inputs per target, so a run starts from the interesting shapes.
SEEDS: dict[str, list[bytes]] = {
    "rtmp_connection": [
        chunk.serialize(3, 20, 0, 0, amf0.encode("connect", 1.0, {"app": "app", "tcUrl": "rtmp://h/app"}), 128)
        + chunk.serialize(3, 20, 0, 0, amf0.encode("createStream", 2.0, None), 128)
        + chunk.serialize(4, 20, 1, 0, amf0.encode("publish", 3.0, None, "key", "live"), 128)
        + chunk.serialize(6, 9, 1, 0, b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f", 128),
    ],
    "rtmp_handshake": [b"\x03" + bytes(PACKET_SIZE) + bytes(PACKET_SIZE), b"\x06" + bytes(10)],
    "rtmp_chunks": [chunk.set_chunk_size(4096) + chunk.serialize(3, 8, 1, 5, b"\xaf\x01" * 200, 4096)],
    "amf0": [amf0.encode("onMetaData", {"width": 1280.0, "list": [1.0, "x", None, True]})],
    "flv": [flv.tag(flv.VIDEO, 0, b"\x17\x01" + b"v" * 40) + flv.tag(flv.AUDIO, 5, b"\xaf\x01ab")],
    "flv_config": [bytes.fromhex("17000000000164001effe1001a6764001eacd940a02ff970110000030001000003003c0f16"
                                 "2d9601000668ebe3cb22c0fdf8f800"), b"\xaf\x00\x12\x10"],
    "mp4": [struct.pack(">I", 16) + b"ftypiso6" + bytes(4), struct.pack(">I", 8) + b"moof"],
    "irc": [b"CAP REQ :twitch.tv/tags\r\nPASS oauth:x\r\nNICK justinfan1\r\nJOIN #a\r\n",
            b"@a=b\\sc;d :x!x@x PRIVMSG #a :hi there\r\nPING :tmi\r\n"],
    "hls_query": [b"_HLS_msn=12&_HLS_part=3&_HLS_skip=YES", b"part12.3.m4s"],
}
