"""The sans-IO RTMP connection: scripted byte-level sessions, and a real ffmpeg publisher."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from livecast.protocols.rtmp import amf0, chunk
from livecast.protocols.rtmp.connection import (
    CLOSED,
    NEED_DATA,
    AudioData,
    Connect,
    Event,
    Metadata,
    ProtocolError,
    Publish,
    RTMPConnection,
    Unpublish,
    UnsupportedCodec,
    VideoData,
)
from livecast.protocols.rtmp.handshake import PACKET_SIZE

FFMPEG = "/usr/bin/ffmpeg"


class Client:
    """Drives an RTMPConnection as a publisher would, and decodes what it answers."""

    def __init__(self) -> None:
        self.conn = RTMPConnection()
        self.parser = chunk.ChunkParser()
        self.conn.receive_data(b"\x03" + bytes(PACKET_SIZE))
        reply = self.conn.data_to_send()
        assert len(reply) == 1 + 2 * PACKET_SIZE
        self.conn.receive_data(reply[1 : 1 + PACKET_SIZE])

    def send(self, data: bytes) -> list[Event]:
        self.conn.receive_data(data)
        events = []
        while (ev := self.conn.next_event()) is not NEED_DATA:
            events.append(ev)
        return events

    def command(self, *values: Any, stream_id: int = 0) -> list[Event]:
        return self.send(chunk.serialize(3, chunk.COMMAND_AMF0, stream_id, 0, amf0.encode(*values), 128))

    def replies(self) -> list[chunk.Message]:
        return self.parser.feed(self.conn.data_to_send())

    def commands(self) -> list[list[Any]]:
        return [amf0.decode_all(m.payload) for m in self.replies() if m.type_id == chunk.COMMAND_AMF0]

    def publish(self, name: str = "live_key") -> list[Event]:
        events = self.command("connect", 1, {"app": "app", "tcUrl": "rtmp://h/app"})
        self.conn.accept_connect()
        events += self.command("createStream", 2, None)
        events += self.command("publish", 3, None, name, "live", stream_id=1)
        self.conn.accept_publish()
        self.replies()
        return events


def test_connect_sequence_replies_in_order() -> None:
    c = Client()
    assert c.command("connect", 1, {"app": "app/", "tcUrl": "rtmp://h:1935/app", "flashVer": "FMLE/3.0"}) == [
        Connect("app", "rtmp://h:1935/app", {"app": "app/", "tcUrl": "rtmp://h:1935/app", "flashVer": "FMLE/3.0"})
    ]
    # releaseStream arrives before the application accepted: it waits, so replies stay in order.
    assert c.command("releaseStream", 2, None, "key") == []
    assert c.conn.data_to_send() == b""
    c.conn.accept_connect()
    msgs = c.replies()
    # Set Chunk Size (4096) came third: the parser applied it and does not pass it up.
    assert [m.type_id for m in msgs[:2]] == [chunk.WINDOW_ACK_SIZE, chunk.SET_PEER_BANDWIDTH]
    assert c.parser.chunk_size == 4096
    result = amf0.decode_all(msgs[2].payload)
    assert result[:2] == ["_result", 1.0]
    assert result[3]["code"] == "NetConnection.Connect.Success"
    assert amf0.decode_all(msgs[3].payload) == ["_result", 2.0, None]
    c.command("FCPublish", 3, None, "key")
    assert [v[0] for v in c.commands()] == ["onFCPublish", "_result"]
    c.command("createStream", 4, None)
    assert c.commands() == [["_result", 4.0, None, 1.0]]
    c.command("_checkbw", 5, None)
    assert c.commands() == [["_result", 5.0, None]]


def test_publish_accept_metadata_media_unpublish() -> None:
    c = Client()
    c.command("connect", 1, {"app": "app", "tcUrl": "rtmp://h/app"})
    c.conn.accept_connect()
    c.replies()
    events = c.command("publish", 5, None, "live_abc?bandwidthtest=true&x=1", "live", stream_id=1)
    assert events == [Publish("live_abc", "live_abc?bandwidthtest=true&x=1", "live", {"bandwidthtest": "true", "x": "1"})]
    c.conn.accept_publish()
    msgs = c.replies()
    assert msgs[0].type_id == chunk.USER_CONTROL and msgs[0].payload == b"\x00\x00\x00\x00\x00\x01"
    status = amf0.decode_all(msgs[1].payload)
    assert status[0] == "onStatus" and status[3]["code"] == "NetStream.Publish.Start"
    assert msgs[1].stream_id == 1

    meta = amf0.encode("@setDataFrame", "onMetaData", amf0.ECMAArray({"width": 640.0, "encoder": "Lavf"}))
    events = c.send(chunk.serialize(4, chunk.DATA_AMF0, 1, 0, meta, 128))
    assert len(events) == 1 and isinstance(events[0], Metadata)
    assert events[0].values == {"width": 640.0, "encoder": "Lavf"}
    assert amf0.decode_all(events[0].flv_body) == ["onMetaData", amf0.ECMAArray({"width": 640.0, "encoder": "Lavf"})]

    video = b"\x17\x01\x00\x00\x00" + b"x" * 500
    events = c.send(chunk.serialize(6, chunk.VIDEO, 1, 40, video, 128) + chunk.serialize(4, chunk.AUDIO, 1, 41, b"\xaf\x01a", 128))
    assert events == [VideoData(40, video), AudioData(41, b"\xaf\x01a")]
    assert c.command("FCUnpublish", 6, None, "live_abc") == [Unpublish("FCUnpublish")]
    assert c.command("deleteStream", 7, None, 1.0) == []  # one Unpublish only


def test_reject_publish_sends_error_status_and_closes() -> None:
    c = Client()
    c.command("connect", 1, {"app": "app"})
    c.conn.accept_connect()
    c.command("publish", 2, None, "wrong", "live", stream_id=1)
    c.replies()
    c.conn.reject_publish("NetStream.Publish.BadName", "invalid stream key")
    status = c.commands()[0]
    assert status[3]["level"] == "error" and status[3]["code"] == "NetStream.Publish.BadName"
    assert c.conn.state == CLOSED
    assert c.command("createStream", 3, None) == []  # nothing more is read


def test_enhanced_rtmp_and_legacy_codecs_are_refused() -> None:
    for payload, reason in [(b"\x90av01" + bytes(8), "codec not supported: av01"),
                            (b"\x90vp09", "codec not supported: vp09"),
                            (b"\x1c\x00\x00\x00\x00", "codec not supported: hevc"),
                            (b"\x90", "codec not supported: ?")]:
        c = Client()
        c.publish()
        events = c.send(chunk.serialize(6, chunk.VIDEO, 1, 0, payload, 128))
        assert events == [UnsupportedCodec(reason, reason.removeprefix("codec not supported: "))]
        status = c.commands()[0]
        assert status[3]["code"] == "NetStream.Publish.Rejected" and status[3]["description"] == reason
        assert c.conn.state == CLOSED


def test_protocol_errors() -> None:
    c = Client()
    assert c.command("publish", 1, None, "k") == [ProtocolError("'publish' before connect")]
    c = Client()
    c.command("connect", 1, {})
    c.conn.accept_connect()
    assert c.send(chunk.serialize(6, chunk.VIDEO, 1, 0, b"\x17\x01", 128)) == [ProtocolError("media before publish")]
    c = Client()
    assert c.send(chunk.serialize(3, 0x55, 0, 0, b"??", 128)) == [ProtocolError("unknown message type 85")]
    c = Client()
    (error,) = c.send(chunk.serialize(3, chunk.COMMAND_AMF0, 0, 0, b"\x07\x00\x01", 128))
    assert isinstance(error, ProtocolError)
    c = Client()
    assert c.send(chunk.serialize(3, chunk.COMMAND_AMF0, 0, 0, amf0.encode(1.0, "x"), 128)) == [
        ProtocolError("malformed command")]
    conn = RTMPConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\n")
    assert isinstance(conn.next_event(), ProtocolError) and conn.state == CLOSED


def test_ping_and_acknowledgement_window() -> None:
    c = Client()
    c.publish()
    c.send(chunk.user_control(chunk.PING_REQUEST, 1234))
    (pong,) = c.replies()
    assert pong.type_id == chunk.USER_CONTROL and pong.payload == struct.pack(">HI", chunk.PING_RESPONSE, 1234)
    assert c.send(chunk.window_ack_size(20_000) + chunk.set_chunk_size(4096)) == []
    video = chunk.serialize(6, chunk.VIDEO, 1, 0, b"\x27\x01\x00\x00\x00" + bytes(6000), 4096)
    assert len(c.send(video)) == 1
    assert c.replies() == []
    replies: list[chunk.Message] = []
    sends = 0
    while not replies:
        c.send(video)
        sends += 1
        replies = c.replies()
    assert sends == 2  # 3073 handshake + commands + 3 x 6 kB crosses 20 000
    (ack,) = replies
    assert ack.type_id == chunk.ACKNOWLEDGEMENT
    assert struct.unpack(">I", ack.payload)[0] == c.conn.bytes_received


async def test_real_ffmpeg_publisher_sequence() -> None:
    """ffmpeg's own RTMP client against the sans-IO core with a ten-line shell."""
    events: list[Event] = []
    versions: list[int] = []
    finished = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = RTMPConnection()
        while data := await reader.read(65536):
            conn.receive_data(data)
            while (ev := conn.next_event()) is not NEED_DATA:
                events.append(ev)
                if isinstance(ev, Connect):
                    versions.append(conn.client_version)
                    conn.accept_connect()
                elif isinstance(ev, Publish):
                    conn.accept_publish()
            writer.write(conn.data_to_send())
        writer.close()
        finished.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
        "-f", "lavfi", "-i", "sine", "-t", "1", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
        "-f", "flv", f"rtmp://127.0.0.1:{port}/app/live_key?token=1",
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    await asyncio.wait_for(finished.wait(), 10)
    server.close()
    assert proc.returncode == 0, err.decode()
    assert versions and versions[0] != 0  # ffmpeg sends the digest handshake; the echo answer satisfies it
    kinds = [type(e).__name__ for e in events]
    assert kinds[:3] == ["Connect", "Publish", "Metadata"]
    connect, publish, meta = events[0], events[1], events[2]
    assert isinstance(connect, Connect) and connect.app == "app"
    assert connect.tc_url == f"rtmp://127.0.0.1:{port}/app"
    assert isinstance(publish, Publish) and publish.stream_key == "live_key" and publish.query == {"token": "1"}
    assert isinstance(meta, Metadata) and meta.values["width"] == 320.0
    video = [e for e in events if isinstance(e, VideoData)]
    audio = [e for e in events if isinstance(e, AudioData)]
    assert video[0].payload[:2] == b"\x17\x00" and audio[0].payload[:2] == b"\xaf\x00"  # sequence headers first
    assert 25 <= len(video) <= 35 and video[-1].timestamp >= 900
    assert kinds[-1] == "Unpublish"


def test_key_in_the_url_and_bounded_metadata() -> None:
    c = Client()
    c.command("connect", 1, {"app": "app/live_key123", "tcUrl": "rtmp://h/app/live_key123"})
    c.conn.accept_connect()
    assert c.command("publish", 2, None, "", "live", stream_id=1) == [Publish("live_key123", "live_key123", "live", {})]
    c.conn.accept_publish()
    meta = {f"k{i}": "v" * 1000 for i in range(500)} | {"nested": {"a": 1.0}}
    (ev,) = c.send(chunk.serialize(4, chunk.DATA_AMF0, 1, 0, amf0.encode("onMetaData", meta), 128))
    assert isinstance(ev, Metadata)
    assert len(ev.values) == 64 and all(len(v) == 256 for v in ev.values.values())
    assert ev.flv_body == amf0.encode("onMetaData", meta)  # media gets what the encoder sent
