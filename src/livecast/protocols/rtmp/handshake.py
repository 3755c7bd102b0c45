"""The RTMP handshake, server side: C0+C1 in, S0+S1+S2 out, then C2 in.

Clients (ffmpeg, librtmp in OBS) may send the Flash Player "digest" variant, with a client
version in C1 bytes 4..7. Both only verify the server's digest when S1 carries a non-zero
server version, so answering with a zero version and S2 = C1 (the plain scheme of the RTMP
spec, section 5.2) is accepted by all of them; no Adobe keys are needed.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

RTMP_VERSION = 3
PACKET_SIZE = 1536


class HandshakeError(ValueError):
    pass


@dataclass
class HandshakeResult:
    """What the handshake consumed and what to write back; ``done`` once C2 arrived."""

    consumed: int
    reply: bytes
    done: bool


class ServerHandshake:
    """Sans-IO: call :meth:`feed` with whatever arrived; it says how much it took."""

    def __init__(self, epoch_ms: int = 0, random_bytes: bytes | None = None) -> None:
        self.state = "c0c1"
        self.epoch_ms = epoch_ms & 0xFFFFFFFF
        self._random = random_bytes if random_bytes is not None else os.urandom(PACKET_SIZE - 8)
        if len(self._random) != PACKET_SIZE - 8:
            raise ValueError("random part of S1 must be 1528 bytes")
        self.client_version = 0

    def feed(self, data: bytes | bytearray | memoryview) -> HandshakeResult:
        if self.state == "c0c1":
            if len(data) < 1:
                return HandshakeResult(0, b"", False)
            if data[0] != RTMP_VERSION:
                # RTMPE (6) and friends are not supported; a version >3 we could downgrade, but
                # no publisher sends one, and anything else is not RTMP at all.
                raise HandshakeError(f"unsupported RTMP version {data[0]}")
            if len(data) < 1 + PACKET_SIZE:
                return HandshakeResult(0, b"", False)
            c1 = bytes(data[1 : 1 + PACKET_SIZE])
            self.client_version = struct.unpack(">I", c1[4:8])[0]
            s1 = struct.pack(">II", self.epoch_ms, 0) + self._random
            self.state = "c2"
            return HandshakeResult(1 + PACKET_SIZE, bytes((RTMP_VERSION,)) + s1 + c1, False)
        if self.state == "c2":
            if len(data) < PACKET_SIZE:
                return HandshakeResult(0, b"", False)
            # C2 should echo S1; librtmp in digest mode sends a digest-based C2 instead, so it is
            # not checked: the handshake proves nothing about identity anyway (the key does).
            self.state = "done"
            return HandshakeResult(PACKET_SIZE, b"", True)
        return HandshakeResult(0, b"", True)
