"""AMF0, the value encoding of RTMP commands and metadata.

The decoder is fed bytes from the network, so it is bounded: nesting depth and the number of
values are capped, and every malformed or truncated input raises :class:`AMF0Error` (never
``IndexError`` or ``struct.error``), which the connection turns into a protocol error.
References (type 7), typed objects and AVM+ switches are refused: neither ffmpeg nor OBS
sends them, and references are the classic way to build cyclic or exponential payloads.
"""

from __future__ import annotations

import datetime as dt
import math
import struct
from dataclasses import dataclass, field
from typing import Any

NUMBER, BOOLEAN, STRING, OBJECT, NULL, UNDEFINED = 0x00, 0x01, 0x02, 0x03, 0x05, 0x06
ECMA_ARRAY, OBJECT_END, STRICT_ARRAY, DATE, LONG_STRING = 0x08, 0x09, 0x0A, 0x0B, 0x0C

MAX_DEPTH = 32
MAX_VALUES = 65536
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MIN_DATE_MS = -62135596800000.0  # 0001-01-01, Python's smallest date
_MAX_DATE_MS = 253402300799000.0  # 9999-12-31T23:59:59

_DOUBLE = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class AMF0Error(ValueError):
    """The bytes are not a well-formed AMF0 value (within our limits)."""


class Undefined:
    """AMF0 ``undefined``, distinct from ``null`` (``None``) so that round trips are exact."""

    _instance: Undefined | None = None

    def __new__(cls) -> Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED_VALUE = Undefined()


@dataclass
class ECMAArray:
    """An associative array; kept apart from objects so that re-encoding keeps the type byte."""

    items: dict[str, Any] = field(default_factory=dict)


# Decoding ------------------------------------------------------------------------------------


class _Reader:
    __slots__ = ("count", "data", "pos")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0) -> None:
        self.data = bytes(data)
        self.pos = pos
        self.count = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise AMF0Error("truncated AMF0 value")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def utf8(self, n: int) -> str:
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AMF0Error("string is not UTF-8") from exc

    def short_string(self) -> str:
        return self.utf8(_U16.unpack(self.take(2))[0])

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise AMF0Error("AMF0 nesting too deep")
        self.count += 1
        if self.count > MAX_VALUES:
            raise AMF0Error("too many AMF0 values")
        marker = self.take(1)[0]
        if marker == NUMBER:
            return _DOUBLE.unpack(self.take(8))[0]
        if marker == BOOLEAN:
            return self.take(1)[0] != 0
        if marker == STRING:
            return self.short_string()
        if marker == LONG_STRING:
            return self.utf8(_U32.unpack(self.take(4))[0])
        if marker == NULL:
            return None
        if marker == UNDEFINED:
            return UNDEFINED_VALUE
        if marker == OBJECT:
            return self.properties(depth)
        if marker == ECMA_ARRAY:
            self.take(4)  # the count is advisory; the object-end marker is what ends it
            return ECMAArray(self.properties(depth))
        if marker == STRICT_ARRAY:
            count = _U32.unpack(self.take(4))[0]
            if count > len(self.data) - self.pos:  # every value needs at least one byte
                raise AMF0Error("strict array longer than its data")
            return [self.value(depth + 1) for _ in range(count)]
        if marker == DATE:
            millis = _DOUBLE.unpack(self.take(8))[0]
            self.take(2)  # time zone, unused by the spec
            if not math.isfinite(millis) or not _MIN_DATE_MS <= millis <= _MAX_DATE_MS:
                raise AMF0Error("date out of range")
            return _EPOCH + dt.timedelta(milliseconds=millis)
        raise AMF0Error(f"unsupported AMF0 type 0x{marker:02x}")

    def properties(self, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while True:
            key = self.short_string()
            if key == "" and self.pos < len(self.data) and self.data[self.pos] == OBJECT_END:
                self.pos += 1
                return out
            out[key] = self.value(depth + 1)


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode exactly one value."""
    return _Reader(data).value(0)


def decode_all(data: bytes | bytearray | memoryview) -> list[Any]:
    """Decode a sequence of values (an RTMP command message body)."""
    reader = _Reader(data)
    out = []
    while reader.pos < len(reader.data):
        out.append(reader.value(0))
    return out


# Encoding ------------------------------------------------------------------------------------


def _string_body(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise AMF0Error("property name too long")
    return _U16.pack(len(raw)) + raw


def _properties(items: dict[str, Any], out: bytearray, depth: int) -> None:
    for key, val in items.items():
        out += _string_body(str(key))
        _encode(val, out, depth + 1)
    out += b"\x00\x00\x09"


def _encode(value: Any, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise AMF0Error("value nested too deep")
    if value is None:
        out.append(NULL)
    elif value is UNDEFINED_VALUE:
        out.append(UNDEFINED)
    elif isinstance(value, bool):
        out += bytes((BOOLEAN, 1 if value else 0))
    elif isinstance(value, int | float):
        out.append(NUMBER)
        out += _DOUBLE.pack(float(value))
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) > 0xFFFF:
            out.append(LONG_STRING)
            out += _U32.pack(len(raw)) + raw
        else:
            out.append(STRING)
            out += _U16.pack(len(raw)) + raw
    elif isinstance(value, ECMAArray):
        out.append(ECMA_ARRAY)
        out += _U32.pack(len(value.items))
        _properties(value.items, out, depth)
    elif isinstance(value, dict):
        out.append(OBJECT)
        _properties(value, out, depth)
    elif isinstance(value, list | tuple):
        out.append(STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode(item, out, depth + 1)
    elif isinstance(value, dt.datetime):
        out.append(DATE)
        out += _DOUBLE.pack(value.timestamp() * 1000) + b"\x00\x00"
    else:
        raise AMF0Error(f"cannot encode {type(value).__name__} in AMF0")


def encode(*values: Any) -> bytes:
    out = bytearray()
    for value in values:
        _encode(value, out, 0)
    return bytes(out)
