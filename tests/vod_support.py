"""Helpers for the VOD and clip tests: a source whose frames say their own number, and probes.

Every frame of :func:`numbered_source` draws its frame number as 16 black/white stripes (bit
``k`` is stripe ``k``), which survives lossy re-encoding, so a test can read which frame a
clip starts on without trusting any timestamp.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

FFMPEG = "/usr/bin/ffmpeg"
FFPROBE = "/usr/bin/ffprobe"
WIDTH, HEIGHT, FPS = 160, 96, 30
BITS = 16
NUMBERED = f"color=c=black:s={WIDTH}x{HEIGHT}:r={FPS},format=gray,geq=lum='255*mod(floor(N/pow(2,floor(X/10))),2)'"


def numbered_source_args(seconds: float, gop: int = FPS, bitrate: str | None = None) -> list[str]:
    """ffmpeg input+encode arguments (no output) for the numbered source with a sine tone."""
    args = ["-f", "lavfi", "-i", NUMBERED, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", f"{seconds}", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-c:a", "aac"]
    if bitrate:
        args += ["-b:v", bitrate, "-minrate", bitrate, "-maxrate", bitrate, "-bufsize", bitrate, "-x264-params",
                 "nal-hrd=cbr"]
    return args


def make_flv(path: Path, seconds: float, gop: int = FPS, bitrate: str | None = None) -> bytes:
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *numbered_source_args(seconds, gop, bitrate),
                    "-f", "flv", str(path)], check=True, timeout=60)
    return path.read_bytes()


def _frame_numbers(source: str, count: int = 1, skip_to: float | None = None) -> list[int]:
    """The numbers drawn in the first ``count`` frames of a file or URL (after ``skip_to`` seconds)."""
    cmd = [FFMPEG, "-v", "error"]
    if skip_to is not None:
        cmd += ["-ss", f"{skip_to}"]
    cmd += ["-i", source, "-fps_mode", "passthrough", "-frames:v", str(count), "-vf", f"scale={WIDTH}:{HEIGHT}", "-f", "rawvideo",
            "-pix_fmt", "gray", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
    size = WIDTH * HEIGHT
    numbers = []
    for i in range(len(raw) // size):
        row = raw[i * size + (HEIGHT // 2) * WIDTH: i * size + (HEIGHT // 2 + 1) * WIDTH]
        numbers.append(sum(1 << k for k in range(BITS) if row[10 * k + 5] > 127))
    return numbers


def _probe(source: str, *extra: str) -> dict[str, Any]:
    out = subprocess.run([FFPROBE, "-v", "error", "-show_format", "-show_streams", *extra, "-of", "json", source],
                         capture_output=True, check=True, timeout=120)
    return dict(json.loads(out.stdout))


# The server under test runs in the test's event loop: probes must not block it.
async def frame_numbers(source: str, count: int = 1, skip_to: float | None = None) -> list[int]:
    return await asyncio.to_thread(_frame_numbers, source, count, skip_to)


async def probe(source: str, *extra: str) -> dict[str, Any]:
    return await asyncio.to_thread(_probe, source, *extra)
