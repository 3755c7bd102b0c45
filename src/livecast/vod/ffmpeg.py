"""Small ffmpeg helpers for the archive and clips: run a command, grab a thumbnail."""

from __future__ import annotations

import asyncio


class FfmpegError(Exception):
    """ffmpeg exited non-zero; the message carries the end of its stderr."""


async def run(cmd: list[str], stdin: bytes | None = None, timeout: float = 300.0) -> bytes:
    """Run ffmpeg/ffprobe, return stdout; raise :class:`FfmpegError` with stderr's tail on failure."""
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0:
        raise FfmpegError(f"{cmd[0]} exited {proc.returncode}: {err.decode(errors='replace')[-400:]}")
    return out


async def thumbnail(ffmpeg: str, media: bytes, *, at: float = 0.0, width: int = 640) -> bytes:
    """One JPEG from fragmented MP4 bytes (an init segment followed by media segments)."""
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-i", "pipe:0"]
    if at > 0:
        cmd += ["-ss", f"{at:.3f}"]
    cmd += ["-frames:v", "1", "-vf", f"scale='min({width},iw)':-2", "-f", "image2", "-c:v", "mjpeg",
            "-q:v", "4", "pipe:1"]
    return await run(cmd, stdin=media, timeout=30)
