"""The RTMP chunk stream: messages cut into chunks with compressed headers (RTMP spec 5.3).

:class:`ChunkParser` turns received bytes into whole :class:`Message` objects. It applies the
two control messages that change how the following bytes are framed (Set Chunk Size, Abort)
itself, because their effect must happen between one chunk and the next; every other message
goes up to the connection. Anything that cannot be valid raises :class:`ChunkError`.

Memory is bounded: one message is at most 16 MiB (the 24-bit length field), at most
:data:`MAX_CHUNK_STREAMS` chunk streams may hold state, and the parser never keeps more than
one partial chunk of unparsed input beyond what the caller fed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Message type ids
SET_CHUNK_SIZE, ABORT, ACKNOWLEDGEMENT, USER_CONTROL = 1, 2, 3, 4
WINDOW_ACK_SIZE, SET_PEER_BANDWIDTH = 5, 6
AUDIO, VIDEO = 8, 9
DATA_AMF3, SHARED_OBJECT_AMF3, COMMAND_AMF3 = 15, 16, 17
DATA_AMF0, SHARED_OBJECT_AMF0, COMMAND_AMF0, AGGREGATE = 18, 19, 20, 22
KNOWN_TYPES = frozenset({1, 2, 3, 4, 5, 6, 8, 9, 15, 16, 17, 18, 19, 20, 22})

# User control event types
STREAM_BEGIN, STREAM_EOF, STREAM_DRY, SET_BUFFER_LENGTH = 0, 1, 2, 3
STREAM_IS_RECORDED, PING_REQUEST, PING_RESPONSE = 4, 6, 7

DEFAULT_CHUNK_SIZE = 128
MAX_CHUNK_SIZE = 0xFFFFFF  # a chunk larger than the largest message means nothing more
MAX_CHUNK_STREAMS = 64
MAX_PENDING = 32 << 20  # bytes of unfinished messages over all chunk streams of a connection
_HEADER_SIZES = (11, 7, 3, 0)

_U32 = struct.Struct(">I")
_U32LE = struct.Struct("<I")


class ChunkError(ValueError):
    """The chunk stream is malformed; the connection cannot continue."""


@dataclass(slots=True)
class Message:
    csid: int
    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes


class _ChunkStream:
    __slots__ = ("delta", "extended", "length", "pending", "remaining", "stream_id", "timestamp", "type_id")

    def __init__(self) -> None:
        self.timestamp = 0
        self.delta = 0
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.extended = False
        self.pending: bytearray | None = None
        self.remaining = 0  # bytes of the current message still to come (0: between messages)


class ChunkParser:
    def __init__(self) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self._buf = bytearray()
        self._streams: dict[int, _ChunkStream] = {}
        self._pending = 0  # bytes held in unfinished messages

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        buf = self._buf
        buf += data
        out: list[Message] = []
        pos = 0
        end = len(buf)
        try:
            while pos < end:
                used = self._chunk(buf, pos, end, out)
                if used == 0:
                    break
                pos += used
        finally:
            if pos:
                del buf[:pos]
        return out

    def _chunk(self, buf: bytearray, pos: int, end: int, out: list[Message]) -> int:
        """Parse one chunk at ``pos``; return bytes used, 0 if it is not all here yet."""
        start = pos
        b0 = buf[pos]
        fmt = b0 >> 6
        csid = b0 & 0x3F
        pos += 1
        if csid == 0:
            if pos + 1 > end:
                return 0
            csid = 64 + buf[pos]
            pos += 1
        elif csid == 1:
            if pos + 2 > end:
                return 0
            csid = 64 + buf[pos] + (buf[pos + 1] << 8)
            pos += 2
        hsize = _HEADER_SIZES[fmt]
        if pos + hsize > end:
            return 0
        cs = self._streams.get(csid)
        if cs is None:
            if fmt != 0:
                raise ChunkError(f"chunk stream {csid} starts without a full (type 0) header")
            if len(self._streams) >= MAX_CHUNK_STREAMS:
                raise ChunkError("too many chunk streams")
            cs = _ChunkStream()
            self._streams[csid] = cs
        if fmt == 3:
            ts_field = -1
            if cs.extended:
                if pos + 4 > end:
                    return 0
                ext = _U32.unpack_from(buf, pos)[0]
                pos += 4
            else:
                ext = 0
            new_message = cs.remaining == 0
            length, type_id, stream_id, extended = cs.length, cs.type_id, cs.stream_id, cs.extended
            if new_message:
                delta = ext if extended else cs.delta
                timestamp = (cs.timestamp + delta) & 0xFFFFFFFF
            else:
                delta, timestamp = cs.delta, cs.timestamp
        else:
            ts_field = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
            if fmt <= 1:
                length = (buf[pos + 3] << 16) | (buf[pos + 4] << 8) | buf[pos + 5]
                type_id = buf[pos + 6]
            else:
                length, type_id = cs.length, cs.type_id
            stream_id = _U32LE.unpack_from(buf, pos + 7)[0] if fmt == 0 else cs.stream_id
            pos += hsize
            extended = ts_field == 0xFFFFFF
            if extended:
                if pos + 4 > end:
                    return 0
                ts_field = _U32.unpack_from(buf, pos)[0]
                pos += 4
            if cs.remaining:
                # A new header in the middle of a message: the spec has no meaning for it.
                raise ChunkError(f"chunk stream {csid}: new message header before the previous message ended")
            new_message = True
            delta = ts_field
            timestamp = ts_field if fmt == 0 else (cs.timestamp + ts_field) & 0xFFFFFFFF
        remaining = length if new_message else cs.remaining
        body = remaining if remaining < self.chunk_size else self.chunk_size
        if pos + body > end:
            return 0
        # Commit: the whole chunk is here.
        cs.timestamp, cs.delta, cs.length, cs.type_id = timestamp, delta, length, type_id
        cs.stream_id, cs.extended = stream_id, extended
        if new_message and body == remaining:  # fast path: message in one chunk
            cs.remaining = 0
            self._deliver(Message(csid, type_id, stream_id, timestamp, bytes(buf[pos : pos + body])), out)
            return pos + body - start
        if new_message:
            cs.pending = bytearray(buf[pos : pos + body])
        else:
            assert cs.pending is not None
            cs.pending += buf[pos : pos + body]
        self._pending += body
        if self._pending > MAX_PENDING:
            raise ChunkError("too much data in unfinished messages")
        cs.remaining = remaining - body
        if cs.remaining == 0:
            payload = bytes(cs.pending) if cs.pending is not None else b""
            self._pending -= len(payload)
            cs.pending = None
            self._deliver(Message(csid, type_id, stream_id, timestamp, payload), out)
        return pos + body - start

    def _deliver(self, msg: Message, out: list[Message]) -> None:
        if msg.type_id == SET_CHUNK_SIZE:
            if len(msg.payload) < 4:
                raise ChunkError("Set Chunk Size message too short")
            size = _U32.unpack_from(msg.payload)[0]
            if size & 0x80000000 or size < 1:
                raise ChunkError(f"invalid chunk size {size}")
            self.chunk_size = min(size, MAX_CHUNK_SIZE)
            return
        if msg.type_id == ABORT:
            if len(msg.payload) < 4:
                raise ChunkError("Abort message too short")
            cs = self._streams.get(_U32.unpack_from(msg.payload)[0])
            if cs is not None:
                self._pending -= len(cs.pending or b"")
                cs.pending, cs.remaining = None, 0
            return
        out.append(msg)


def serialize(csid: int, type_id: int, stream_id: int, timestamp: int, payload: bytes, chunk_size: int) -> bytes:
    """One message as chunks: a type 0 header, then type 3 continuations."""
    if not 2 <= csid <= 63:
        raise ValueError("this serializer writes one-byte chunk stream ids (2..63)")
    if len(payload) > 0xFFFFFF:
        raise ValueError("message too long for RTMP")
    timestamp &= 0xFFFFFFFF
    extended = timestamp >= 0xFFFFFF
    ts_field = 0xFFFFFF if extended else timestamp
    length = len(payload)
    header = bytearray((csid, ts_field >> 16, (ts_field >> 8) & 0xFF, ts_field & 0xFF,
                        length >> 16, (length >> 8) & 0xFF, length & 0xFF, type_id))
    header += _U32LE.pack(stream_id)
    ext = _U32.pack(timestamp) if extended else b""
    out = bytearray(header)
    out += ext
    out += payload[:chunk_size]
    cont = bytes((0xC0 | csid,)) + ext
    for offset in range(chunk_size, length, chunk_size):
        out += cont
        out += payload[offset : offset + chunk_size]
    return bytes(out)


def set_chunk_size(size: int) -> bytes:
    return serialize(2, SET_CHUNK_SIZE, 0, 0, _U32.pack(size), DEFAULT_CHUNK_SIZE)


def window_ack_size(size: int) -> bytes:
    return serialize(2, WINDOW_ACK_SIZE, 0, 0, _U32.pack(size), DEFAULT_CHUNK_SIZE)


def set_peer_bandwidth(size: int, limit_type: int = 2) -> bytes:
    return serialize(2, SET_PEER_BANDWIDTH, 0, 0, _U32.pack(size) + bytes((limit_type,)), DEFAULT_CHUNK_SIZE)


def acknowledgement(sequence: int) -> bytes:
    return serialize(2, ACKNOWLEDGEMENT, 0, 0, _U32.pack(sequence & 0xFFFFFFFF), DEFAULT_CHUNK_SIZE)


def user_control(event: int, value: int, extra: bytes = b"") -> bytes:
    return serialize(2, USER_CONTROL, 0, 0, struct.pack(">HI", event, value & 0xFFFFFFFF) + extra, DEFAULT_CHUNK_SIZE)
