"""``RTMPConnection``: the server side of one publishing RTMP connection, sans-IO.

Used like h11: feed received bytes with :meth:`RTMPConnection.receive_data`, take events with
:meth:`RTMPConnection.next_event`, answer decisions (:meth:`accept_connect`,
:meth:`accept_publish`, :meth:`reject_publish`) and write :meth:`data_to_send` to the socket.
The boring parts of the command sequence (releaseStream, FCPublish, createStream, _checkbw,
pings, acknowledgements) are answered here, so the shell only decides what needs the
database: who may publish.

The sequence ffmpeg and OBS (librtmp) send is the same: connect, releaseStream, FCPublish,
createStream, publish, then @setDataFrame(onMetaData), audio and video; at the end FCUnpublish
and deleteStream. OBS puts a 4096-byte chunk size first and may append ``?query`` to the key.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from livecast.protocols.rtmp import amf0, chunk
from livecast.protocols.rtmp.handshake import HandshakeError, ServerHandshake

OUT_CHUNK_SIZE = 4096
WINDOW = 2_500_000
COMMAND_CSID = 3
STREAM_CSID = 5
PUBLISH_STREAM_ID = 1
MAX_EVENTS_QUEUED = 100_000
MAX_HELD = 1000
MAX_METADATA_KEYS = 64
_SET_DATA_FRAME = amf0.encode("@setDataFrame")
SUPPORTED_VIDEO_CODECS = {7: "avc1"}  # FLV codec id 7 = H.264; what the transcoder takes
_LEGACY_VIDEO_NAMES = {2: "h263", 3: "screen", 4: "vp6", 5: "vp6a", 6: "screen2", 12: "hevc"}


# Events --------------------------------------------------------------------------------------


class Event:
    """Base class of everything :meth:`RTMPConnection.next_event` returns."""


@dataclass
class Connect(Event):
    app: str
    tc_url: str
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class Publish(Event):
    stream_key: str  # the publish name without its query string
    name: str  # as sent
    publish_type: str
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class Metadata(Event):
    values: dict[str, Any]
    flv_body: bytes  # AMF0 ("onMetaData", values): the body of an FLV script tag


@dataclass
class AudioData(Event):
    timestamp: int
    payload: bytes


@dataclass
class VideoData(Event):
    timestamp: int
    payload: bytes


@dataclass
class Unpublish(Event):
    reason: str


@dataclass
class ProtocolError(Event):
    reason: str


@dataclass
class UnsupportedCodec(ProtocolError):
    """The publisher sends a codec we cannot take; it was told (NetStream.Publish.Rejected)."""

    codec: str = ""


class _NeedData(Event):
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


# The state machine ---------------------------------------------------------------------------

HANDSHAKE, CONNECTING, CONNECTED, PUBLISH_PENDING, PUBLISHING, CLOSED = (
    "handshake", "connecting", "connected", "publish_pending", "publishing", "closed",
)


class RTMPConnection:
    def __init__(self, epoch_ms: int = 0) -> None:
        self.state = HANDSHAKE
        self._handshake = ServerHandshake(epoch_ms)
        self._hs_buf = bytearray()
        self._chunks = chunk.ChunkParser()
        self._events: deque[Event] = deque()
        self._out = bytearray()
        self.connected = False
        self.app = ""
        self.stream_key = ""
        self.publish_name = ""
        self.bytes_received = 0
        self._last_ack = 0
        self.ack_window = WINDOW
        self._connect_txn = 1.0
        self._unpublished = False
        # Messages after a connect or publish wait here until the application decided, so
        # that replies go out in order and nothing is published before it was allowed.
        self._held: deque[chunk.Message] = deque()
        self._deciding = False

    @property
    def client_version(self) -> int:
        """C1's version field: non-zero when the client used the Flash Player digest handshake."""
        return self._handshake.client_version

    # Input ----------------------------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if self.state == CLOSED or not data:
            return
        self.bytes_received += len(data)
        try:
            if self.state == HANDSHAKE:
                self._hs_buf += data
                while self.state == HANDSHAKE:
                    result = self._handshake.feed(self._hs_buf)
                    if result.consumed == 0:
                        return
                    del self._hs_buf[: result.consumed]
                    self._out += result.reply
                    if result.done:
                        self.state = CONNECTING
                rest = bytes(self._hs_buf)
                self._hs_buf.clear()
                if not rest:
                    return
                data = rest
            self._held.extend(self._chunks.feed(data))
            if len(self._held) > MAX_HELD:
                raise chunk.ChunkError("client did not wait for the reply to connect or publish")
            self._drain_held()
            if self._chunks.buffered > (1 << 24) + 64:
                raise chunk.ChunkError("chunk larger than any message")
        except (HandshakeError, chunk.ChunkError, amf0.AMF0Error) as exc:
            self._fail(str(exc))
            return
        if self.bytes_received - self._last_ack >= self.ack_window:
            self._last_ack = self.bytes_received
            self._out += chunk.acknowledgement(self.bytes_received)

    def _drain_held(self) -> None:
        held = self._held
        while held and not self._deciding and self.state != CLOSED:
            self._message(held.popleft())
        if self.state == CLOSED:
            held.clear()

    def next_event(self) -> Event:
        return self._events.popleft() if self._events else NEED_DATA

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    # Decisions ------------------------------------------------------------------------------
    def accept_connect(self) -> None:
        if self.state == CLOSED:
            return
        self.connected = True
        self._deciding = False
        self._out += chunk.window_ack_size(WINDOW)
        self._out += chunk.set_peer_bandwidth(WINDOW, 2)
        self._out += chunk.set_chunk_size(OUT_CHUNK_SIZE)
        self._command("_result", self._connect_txn, {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},
                      {"level": "status", "code": "NetConnection.Connect.Success",
                       "description": "Connection succeeded.", "objectEncoding": 0.0})
        self._resume()

    def _resume(self) -> None:
        try:
            self._drain_held()
        except (chunk.ChunkError, amf0.AMF0Error) as exc:
            self._fail(str(exc))

    def reject_connect(self, description: str) -> None:
        if self.state == CLOSED:
            return
        self._command("_error", self._connect_txn, None, {"level": "error", "code": "NetConnection.Connect.Rejected",
                                           "description": description})
        self.state = CLOSED

    def accept_publish(self) -> None:
        if self.state == CLOSED:
            return
        if self.state != PUBLISH_PENDING:
            raise RuntimeError(f"accept_publish in state {self.state}")
        self.state = PUBLISHING
        self._deciding = False
        self._out += chunk.user_control(chunk.STREAM_BEGIN, PUBLISH_STREAM_ID)
        self._status("status", "NetStream.Publish.Start", f"{self.publish_name} is now published.")
        self._resume()

    def reject_publish(self, code: str, description: str) -> None:
        """``code`` is NetStream.Publish.BadName or NetStream.Publish.Rejected; then close."""
        if self.state == CLOSED:
            return
        self._status("error", code, description)
        self.state = CLOSED

    def close(self) -> None:
        self.state = CLOSED

    # Messages -------------------------------------------------------------------------------
    def _message(self, msg: chunk.Message) -> None:
        t = msg.type_id
        if t == chunk.VIDEO or t == chunk.AUDIO:
            if self.state != PUBLISHING:
                self._fail("media before publish")
                return
            if not msg.payload:
                return  # librtmp sends empty tags as keep-alives
            if t == chunk.VIDEO:
                codec = _unsupported_video(msg.payload)
                if codec:
                    reason = f"codec not supported: {codec}"
                    self.reject_publish("NetStream.Publish.Rejected", reason)
                    self._events.append(UnsupportedCodec(reason, codec))
                    return
                self._emit(VideoData(msg.timestamp, msg.payload))
            else:
                self._emit(AudioData(msg.timestamp, msg.payload))
        elif t == chunk.COMMAND_AMF0 or t == chunk.COMMAND_AMF3:
            body = msg.payload[1:] if t == chunk.COMMAND_AMF3 else msg.payload
            self._command_in(amf0.decode_all(body), msg.stream_id)
        elif t == chunk.DATA_AMF0 or t == chunk.DATA_AMF3:
            body = msg.payload[1:] if t == chunk.DATA_AMF3 else msg.payload
            self._data_in(body)
        elif t == chunk.USER_CONTROL:
            if len(msg.payload) >= 6:
                event, value = struct.unpack_from(">HI", msg.payload)
                if event == chunk.PING_REQUEST:
                    self._out += chunk.user_control(chunk.PING_RESPONSE, value)
        elif t == chunk.WINDOW_ACK_SIZE:
            if len(msg.payload) >= 4:
                size = struct.unpack_from(">I", msg.payload)[0]
                self.ack_window = max(size, 4096)
        elif t in chunk.KNOWN_TYPES:
            return  # acks, peer bandwidth, shared objects, aggregates: nothing to do for a publisher
        else:
            self._fail(f"unknown message type {t}")

    def _command_in(self, values: list[Any], stream_id: int) -> None:
        if len(values) < 2 or not isinstance(values[0], str) or not isinstance(values[1], float):
            self._fail("malformed command")
            return
        name, txn = values[0], values[1]
        args = values[2:]
        if self.state == CONNECTING:
            if name != "connect":
                self._fail(f"{name!r} before connect")
                return
            props = args[0] if args and isinstance(args[0], dict) else {}
            self.app = str(props.get("app", "")).strip("/")
            self._connect_txn = txn
            self.state = CONNECTED
            self._deciding = True
            self._emit(Connect(self.app, str(props.get("tcUrl", "")), props))
            return
        if name == "connect":
            self._fail("connect sent twice")
        elif name in ("releaseStream", "_checkbw", "getStreamLength"):
            self._command("_result", txn, None)
        elif name == "FCPublish":
            self._command("onFCPublish", 0, None, {"code": "NetStream.Publish.Start",
                                                   "description": _arg_str(args, 1)})
            self._command("_result", txn, None)
        elif name == "createStream":
            self._command("_result", txn, None, float(PUBLISH_STREAM_ID))
        elif name == "publish":
            if self.state != CONNECTED:
                self._fail("publish in the wrong state")
                return
            raw = _arg_str(args, 1)
            if not raw and "/" in self.app:
                # Some mobile encoders take one URL, rtmp://host/app/KEY, and publish "".
                raw = self.app.split("/", 1)[1]
            key, _, query = raw.partition("?")
            self.publish_name = raw
            self.stream_key = key
            self.state = PUBLISH_PENDING
            self._deciding = True
            kind = _arg_str(args, 2) or "live"
            self._emit(Publish(key, raw, kind, {k: v[0] for k, v in parse_qs(query).items()}))
        elif name in ("FCUnpublish", "deleteStream", "closeStream"):
            if self.state == PUBLISHING and not self._unpublished:
                self._unpublished = True
                self._emit(Unpublish(name))
            if name == "FCUnpublish":
                self._command("_result", txn, None)
        # Anything else (play, seek, custom calls): not for a publish-only server; ignored.

    def _data_in(self, body: bytes) -> None:
        values = amf0.decode_all(body)
        if not values or not isinstance(values[0], str):
            return
        if values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) < 2 or values[0] != "onMetaData":
            return  # onTextData, onCuePoint...: not carried into the FLV
        meta = values[1].items if isinstance(values[1], amf0.ECMAArray) else values[1]
        if not isinstance(meta, dict) or self.state != PUBLISHING:
            return
        # Kept for the dashboard and media: small scalar values only, however much was sent.
        clean = {k[:64]: v[:256] if isinstance(v, str) else v for k, v in list(meta.items())[:MAX_METADATA_KEYS]
                 if isinstance(v, str | float | bool | int)}
        # The FLV script tag is the same AMF0 without the @setDataFrame wrapper.
        flv_body = body[len(_SET_DATA_FRAME):] if body.startswith(_SET_DATA_FRAME) else body
        self._emit(Metadata(clean, bytes(flv_body)))

    # Output helpers -------------------------------------------------------------------------
    def _command(self, name: str, txn: float, *args: Any) -> None:
        body = amf0.encode(name, float(txn), *args)
        self._out += chunk.serialize(COMMAND_CSID, chunk.COMMAND_AMF0, 0, 0, body, OUT_CHUNK_SIZE
                                     if self.connected else chunk.DEFAULT_CHUNK_SIZE)

    def _status(self, level: str, code: str, description: str) -> None:
        body = amf0.encode("onStatus", 0.0, None, {"level": level, "code": code, "description": description,
                                                  "details": self.publish_name})
        size = OUT_CHUNK_SIZE if self.connected else chunk.DEFAULT_CHUNK_SIZE
        self._out += chunk.serialize(STREAM_CSID, chunk.COMMAND_AMF0, PUBLISH_STREAM_ID, 0, body, size)

    def _emit(self, event: Event) -> None:
        if len(self._events) >= MAX_EVENTS_QUEUED:
            self._fail("too many events queued")
            return
        self._events.append(event)

    def _fail(self, reason: str) -> None:
        self.state = CLOSED
        self._events.append(ProtocolError(reason))


def _arg_str(args: list[Any], index: int) -> str:
    return args[index] if len(args) > index and isinstance(args[index], str) else ""


def _unsupported_video(payload: bytes) -> str:
    """The name of this video tag's codec if we cannot take it, or "" if we can."""
    head = payload[0]
    if head & 0x80:  # Enhanced RTMP: IsExHeader, then a FourCC
        return payload[1:5].decode("latin-1") if len(payload) >= 5 else "?"
    codec = head & 0x0F
    if codec not in SUPPORTED_VIDEO_CODECS:
        return _LEGACY_VIDEO_NAMES.get(codec, f"flv codec {codec}")
    return ""
