"""Memory per chat connection and per live stream, measured on a real ``livecast serve``.

Why: the limits in ``livecast.limits`` cap *how many* connections and long polls a stranger can
hold; what each one costs decides whether the caps are safe. Each figure is the growth of the
server process's resident memory (``VmRSS``) divided by the number of things added:

- chat: N IRC connections over TCP, each logged in anonymously and joined to one room, against
  a baseline measured in the same run: a bare asyncio server holding the same N connections
  (a ``StreamReader`` and a task each), the least any asyncio chat server can spend;
- streams: S publishers (ffmpeg, 320x180, source + audio-only renditions, no transcoding),
  after the playlist window has filled, against the media bytes the window itself holds (the
  segment files a player can still fetch), the least an origin that keeps its window in memory
  can spend.

    python -m bench limits [--connections 2000] [--streams 3] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import table

ROOM = "limitsroom"
FFMPEG = "ffmpeg"

_BASELINE = r"""
import asyncio, sys
async def main():
    async def client(reader, writer):
        while await reader.readline():
            pass
    server = await asyncio.start_server(client, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _admin(env: dict[str, str], *args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "livecast", "admin", *args, "--json", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(err.decode())
    return dict(json.loads(out))


class Livecast:
    """``livecast serve`` in its own process, on free ports, in a scratch data dir."""

    def __init__(self, role: str) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="livecast-bench-")
        self.data = Path(self.tmp.name)
        self.env = {**os.environ, "LIVECAST_DATA_DIR": str(self.data), "LIVECAST_HTTP_PORT": "0",
                    "LIVECAST_RTMP_PORT": "0", "LIVECAST_IRC_PORT": "0", "LIVECAST_LOG_LEVEL": "WARNING",
                    "LIVECAST_ROLES": role}
        self.proc: asyncio.subprocess.Process | None = None
        self.ports: dict[str, int] = {}

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "livecast", "serve", env=self.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        ports = self.data / "ports.json"
        deadline = time.monotonic() + 60
        while not (ports.exists() and ports.read_text().strip().endswith("}")):
            if time.monotonic() > deadline or self.proc.returncode is not None:
                raise RuntimeError("livecast serve did not start")
            await asyncio.sleep(0.1)
        self.ports = json.loads(ports.read_text())

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 30)
        self.tmp.cleanup()


async def _settle(pid: int) -> int:
    """RSS once it stops moving (allocations after a burst land a little late)."""
    last = rss_kib(pid)
    for _ in range(20):
        await asyncio.sleep(0.25)
        now = rss_kib(pid)
        if abs(now - last) < 64:
            return now
        last = now
    return last


async def _hold_connections(port: int, count: int, login_lines: bool) -> list[asyncio.StreamWriter]:
    writers: list[asyncio.StreamWriter] = []

    async def one(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        if login_lines:
            writer.write(f"CAP REQ :twitch.tv/tags twitch.tv/commands\r\nNICK justinfan{i}\r\nJOIN #{ROOM}\r\n".encode())
            while b"ROOMSTATE" not in await reader.readline():
                pass
        else:
            writer.write(b"NICK x\r\n")

    for start in range(0, count, 200):  # in batches: the server's accept queue is finite
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + 200))))
    return writers


async def chat(connections: int) -> dict[str, Any]:
    server = Livecast("chat")
    await _admin(server.env, "create-user", ROOM)
    await server.start()
    try:
        idle = await _settle(server.pid)
        writers = await _hold_connections(server.ports["irc"], connections, login_lines=True)
        held = await _settle(server.pid)
        for w in writers:
            w.close()
    finally:
        await server.stop()
    base = await asyncio.create_subprocess_exec(sys.executable, "-c", _BASELINE, stdout=asyncio.subprocess.PIPE)
    try:
        assert base.stdout is not None
        port = int((await base.stdout.readline()).decode())
        base_idle = await _settle(base.pid)
        writers = await _hold_connections(port, connections, login_lines=False)
        base_held = await _settle(base.pid)
        for w in writers:
            w.close()
    finally:
        base.kill()
        await base.wait()
    per = (held - idle) / connections
    base_per = (base_held - base_idle) / connections
    return {"connections": connections, "livecast_kib_per_conn": round(per, 2),
            "baseline_kib_per_conn": round(base_per, 2), "ratio": round(per / base_per, 2) if base_per else None,
            "livecast_rss_idle_mib": round(idle / 1024, 1), "livecast_rss_held_mib": round(held / 1024, 1)}


async def _window_bytes(http_port: int, login: str) -> int:
    """Bytes of the media a player can still fetch from the source playlist's window."""
    import httpx

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as http:
        total = 0
        for rendition in ("source", "audio_only"):
            r = await http.get(f"/hls/{login}/{rendition}/playlist.m3u8")
            if r.status_code != 200:
                continue
            for line in r.text.splitlines():
                uri = line if line.startswith("seg") else ""
                if 'URI="part' in line:
                    continue  # parts are slices of the segments already counted
                if uri:
                    total += len((await http.get(f"/hls/{login}/{rendition}/{uri}")).content)
        return total


async def streams(count: int, seconds: float) -> dict[str, Any]:
    server = Livecast("ingest,api")
    users = [await _admin(server.env, "create-user", f"caster{i}") for i in range(count)]
    await server.start()
    publishers: list[asyncio.subprocess.Process] = []
    try:
        idle = await _settle(server.pid)
        for user in users:
            publishers.append(await asyncio.create_subprocess_exec(
                FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
                "-f", "lavfi", "-i", "sine", "-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-b:v", "400k",
                "-c:a", "aac", "-f", "flv", f"rtmp://127.0.0.1:{server.ports['rtmp']}/app/{user['stream_key']}",
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL))
        await asyncio.sleep(seconds)
        held = await _settle(server.pid)
        window = [await _window_bytes(server.ports["http"], u["login"]) for u in users]
    finally:
        for p in publishers:
            if p.returncode is None:
                p.kill()
                await p.wait()
        await server.stop()
    per = (held - idle) / count
    window_kib = sum(window) / count / 1024
    return {"streams": count, "seconds": seconds, "livecast_kib_per_stream": round(per, 1),
            "window_media_kib_per_stream": round(window_kib, 1),
            "ratio": round(per / window_kib, 2) if window_kib else None,
            "livecast_rss_idle_mib": round(idle / 1024, 1), "livecast_rss_held_mib": round(held / 1024, 1)}


async def main(args: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench limits")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    opts = parser.parse_args(args)
    _raise_nofile()
    result_chat = await chat(opts.connections)
    print("chat connections (RSS growth of the server process)")
    print(table([result_chat]))
    result_streams = await streams(opts.streams, opts.seconds)
    print("\nlive streams (RSS growth of the server process; ffmpeg publishers not counted)")
    print(table([result_streams]))
    return {"chat": result_chat, "streams": result_streams}
