"""RTMP ingest throughput: chunked audio/video parsed into FLV by the sans-IO core, in MB/s.

The input is what OBS sends at 6 Mbit/s, 60 fps (4096-byte chunks, a keyframe every 2 s,
AAC audio interleaved), built in memory and fed in 64 KiB reads as the server does. Measured:
the chunk parser alone, and the whole path the server runs per connection
(``RTMPConnection`` events, FLV tag framing, health tracking). Baseline in the same run: a
plain copy of the same bytes in the same 64 KiB reads (``bytes(memoryview[...])`` plus a
``find`` scan), i.e. the least work any ingest could do; the ratio says how far from it we are.
Usage: ``python -m bench rtmp [--seconds N]`` (N seconds of stream, default 120).
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.common import table
from livecast.ingest.health import HealthTracker
from livecast.protocols import flv
from livecast.protocols.rtmp import amf0, chunk
from livecast.protocols.rtmp.connection import (
    NEED_DATA,
    AudioData,
    Connect,
    Publish,
    RTMPConnection,
    VideoData,
)
from livecast.protocols.rtmp.handshake import PACKET_SIZE

READ = 64 * 1024


def build_stream(seconds: int, kbps: int = 6000, fps: int = 60) -> tuple[bytes, bytes]:
    """(prologue: handshake + connect + publish, media: chunked audio and video)."""
    prologue = b"\x03" + bytes(PACKET_SIZE) + bytes(PACKET_SIZE)
    prologue += chunk.set_chunk_size(4096)
    prologue += chunk.serialize(3, chunk.COMMAND_AMF0, 0, 0, amf0.encode("connect", 1.0, {"app": "app"}), 4096)
    prologue += chunk.serialize(3, chunk.COMMAND_AMF0, 0, 0, amf0.encode("createStream", 2.0, None), 4096)
    prologue += chunk.serialize(3, chunk.COMMAND_AMF0, 1, 0, amf0.encode("publish", 3.0, None, "k", "live"), 4096)
    frame_bytes = kbps * 1000 // 8 // fps
    key_bytes = frame_bytes * 12
    noise = os.urandom(key_bytes)
    out = bytearray()
    audio = b"\xaf\x01" + noise[:370]
    for i in range(seconds * fps):
        ts = i * 1000 // fps
        key = i % (2 * fps) == 0
        size = key_bytes if key else frame_bytes
        out += chunk.serialize(6, chunk.VIDEO, 1, ts, (b"\x17\x01" if key else b"\x27\x01") + noise[: size - 2], 4096)
        if i % 4 != 3:  # ~45 AAC frames a second
            out += chunk.serialize(4, chunk.AUDIO, 1, ts, audio, 4096)
    return prologue, bytes(out)


def run_parser(media: bytes) -> int:
    parser = chunk.ChunkParser()
    parser.chunk_size = 4096
    mv = memoryview(media)
    count = 0
    for i in range(0, len(media), READ):
        count += len(parser.feed(mv[i : i + READ]))
    return count


def run_connection(prologue: bytes, media: bytes) -> int:
    conn = RTMPConnection()
    health = HealthTracker()
    out = 0
    mv = memoryview(media)
    now = 0.0
    for i in [-1, *range(0, len(media), READ)]:
        if i < 0:
            conn.receive_data(prologue)
        else:
            conn.receive_data(mv[i : i + READ])
            health.bytes_in(READ, now)
            now += 0.01
        while (ev := conn.next_event()) is not NEED_DATA:
            if isinstance(ev, VideoData):
                health.video_tag(ev.timestamp, ev.payload)
                out += len(flv.tag(flv.VIDEO, ev.timestamp, ev.payload))
            elif isinstance(ev, AudioData):
                health.audio_tag(ev.payload)
                out += len(flv.tag(flv.AUDIO, ev.timestamp, ev.payload))
            elif isinstance(ev, Connect):
                conn.accept_connect()
            elif isinstance(ev, Publish):
                conn.accept_publish()
            else:
                raise RuntimeError(f"unexpected {ev}")
        conn.data_to_send()
    return out


def run_baseline(media: bytes) -> int:
    mv = memoryview(media)
    found = 0
    for i in range(0, len(media), READ):
        piece = bytes(mv[i : i + READ])
        found += piece.find(b"\xc6") >= 0
    return found


def best_of(fn: Any, *args: Any, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - started)
    return best


def main(args: list[str]) -> dict[str, Any]:
    seconds = int(args[args.index("--seconds") + 1]) if "--seconds" in args else 120
    prologue, media = build_stream(seconds)
    mb = len(media) / 1e6
    base = best_of(run_baseline, media)
    parse = best_of(run_parser, media)
    full = best_of(run_connection, prologue, media)
    rows = [
        {"path": "baseline: bytes copy + scan", "MB/s": round(mb / base, 1), "x realtime (6 Mbit/s)":
         round(seconds / base), "ratio to baseline": 1.0},
        {"path": "chunk parser", "MB/s": round(mb / parse, 1), "x realtime (6 Mbit/s)": round(seconds / parse),
         "ratio to baseline": round(base / parse, 4)},
        {"path": "connection -> FLV + health", "MB/s": round(mb / full, 1),
         "x realtime (6 Mbit/s)": round(seconds / full), "ratio to baseline": round(base / full, 4)},
    ]
    print(f"input: {mb:.1f} MB of RTMP chunks ({seconds} s of 6 Mbit/s 60 fps video + AAC), 64 KiB reads\n")
    print(table(rows))
    return {"input_mb": round(mb, 1), "seconds_of_stream": seconds, "baseline_mb_s": round(mb / base, 1),
            "parser_mb_s": round(mb / parse, 1), "connection_mb_s": round(mb / full, 1),
            "parser_ratio": round(base / parse, 4), "connection_ratio": round(base / full, 4),
            "streams_per_core_at_6mbps": round(seconds / full)}
