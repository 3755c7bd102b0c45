"""Soak: a publisher, N chat connections and a steady message rate for M minutes, bounded.

Why: a leak or a queue that grows shows up only over time. One ``livecast serve`` process (all
roles) runs with a real ffmpeg publisher and one HLS viewer following the live edge, while N
anonymous IRC connections sit in the publisher's room and K logged-in senders (each under
Twitch's 20 messages per 30 s) send R messages a second between them. Every minute it records
the server's resident memory, the end-to-end chat latency (sender's clock in the message text
to a sampled receiver's clock; p50 and p99), deliveries against expectations, and HLS fetch
failures. At the end it counts ERROR lines and tracebacks in the server's log. The baseline is
the first minute of the same run, after a warm-up of ``--warmup`` seconds of the same traffic
that is not recorded: the ratios say whether memory and latency stayed flat.

    python -m bench soak [--connections 5000] [--minutes 10] [--rate 5] [--warmup 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import percentile, table

ROOM = "soakroom"
SAMPLE_EVERY = 25
SENT_RE = re.compile(rb"PRIVMSG #" + ROOM.encode() + rb" :soak (\d+) (\d+)")
PER_SENDER_RATE = 0.5  # messages a second; Twitch allows a chatter 20 per 30 s


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class _Receiver(asyncio.Protocol):
    def __init__(self, stats: dict[str, Any], sample: bool, nick: str) -> None:
        self.stats, self.sample, self.nick = stats, sample, nick
        self.joined = False
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        assert self.transport is not None
        self.transport.write(f"CAP REQ :twitch.tv/tags twitch.tv/commands\r\nNICK {self.nick}\r\n"
                             f"JOIN #{ROOM}\r\n".encode())

    def data_received(self, data: bytes) -> None:
        stats = self.stats
        if not self.joined:
            if b"ROOMSTATE" in self.tail + data:
                self.joined = True
                stats["joined"] += 1
            self.tail = data[-16:]
            return
        if b"PING" in data and self.transport is not None:
            self.transport.write(b"PONG :tmi.twitch.tv\r\n")
        found = SENT_RE.findall(data)
        stats["lines"] += len(found)
        if self.sample and found:
            now = time.time() * 1000
            stats["latencies"].extend(now - int(sent) for _, sent in found)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats["lost"] += 1


class _Sender(asyncio.Protocol):
    def __init__(self, stats: dict[str, Any]) -> None:
        self.stats = stats
        self.ready = asyncio.Event()
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf = (self.buf + data)[-4096:]
        if b" 376 " in self.buf:
            self.ready.set()
        self.stats["sender_notices"] += data.count(b" NOTICE #")

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats["lost"] += 1


async def _admin(env: dict[str, str], *args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "livecast", "admin", *args, "--json", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(err.decode())
    return dict(json.loads(out))


async def _hls_viewer(port: int, stop: asyncio.Event, stats: dict[str, Any]) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        while not stop.is_set():
            try:
                r = await http.get(f"/hls/{ROOM}/source/playlist.m3u8")
                segs = [line for line in r.text.splitlines() if line.startswith("seg")] if r.status_code == 200 else []
                if segs:
                    seg = await http.get(f"/hls/{ROOM}/source/{segs[-1]}")
                    stats["hls_ok" if seg.status_code == 200 else "hls_failed"] += 1
                else:
                    stats["hls_failed"] += 1
            except httpx.HTTPError:
                stats["hls_failed"] += 1
            await asyncio.sleep(1)


async def run(connections: int, minutes: float, rate: float, warmup: float = 20.0) -> dict[str, Any]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.TemporaryDirectory(prefix="livecast-soak-")
    data = Path(tmp.name)
    env = {**os.environ, "LIVECAST_DATA_DIR": str(data), "LIVECAST_HTTP_PORT": "0", "LIVECAST_RTMP_PORT": "0",
           "LIVECAST_IRC_PORT": "0", "LIVECAST_LOG_LEVEL": "INFO"}
    room = await _admin(env, "create-user", ROOM)
    senders_needed = max(1, math.ceil(rate / PER_SENDER_RATE))
    senders = [await _admin(env, "create-user", f"soaker{i}") for i in range(senders_needed)]
    log_path = data / "serve.log"
    log = log_path.open("wb")
    server = await asyncio.create_subprocess_exec(sys.executable, "-m", "livecast", "serve", env=env,
                                                  stdout=log, stderr=asyncio.subprocess.STDOUT)
    loop = asyncio.get_running_loop()
    stats: dict[str, Any] = {"joined": 0, "lines": 0, "latencies": [], "lost": 0, "sender_notices": 0,
                             "hls_ok": 0, "hls_failed": 0}
    stop = asyncio.Event()
    transports: list[asyncio.Transport] = []
    publisher: asyncio.subprocess.Process | None = None
    rows: list[dict[str, Any]] = []
    try:
        ports_file = data / "ports.json"
        while not (ports_file.exists() and ports_file.read_text().strip().endswith("}")):
            if server.returncode is not None:
                raise RuntimeError("livecast serve exited during start-up")
            await asyncio.sleep(0.1)
        ports = json.loads(ports_file.read_text())
        publisher = await asyncio.create_subprocess_exec(
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
            "-f", "lavfi", "-i", "sine", "-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-b:v", "400k",
            "-c:a", "aac", "-f", "flv", f"rtmp://127.0.0.1:{ports['rtmp']}/app/{room['stream_key']}",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        for i in range(connections):
            # Spread over loopback addresses so the per-address chat limit is not what is measured.
            source = f"127.0.0.{2 + i % 200}"
            t, _ = await loop.create_connection(
                lambda i=i: _Receiver(stats, i % SAMPLE_EVERY == 0, f"justinfan{i}"),  # type: ignore[misc]
                "127.0.0.1", ports["irc"], local_addr=(source, 0))
            transports.append(t)
            if i % 200 == 199:
                await asyncio.sleep(0.05)
        deadline = time.monotonic() + 120
        while stats["joined"] < connections and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        send_transports = []
        for s in senders:
            proto = _Sender(stats)
            t, _ = await loop.create_connection(lambda p=proto: p, "127.0.0.1", ports["irc"])  # type: ignore[misc]
            t.write(f"PASS oauth:{s['token']}\r\nNICK {s['login']}\r\nJOIN #{ROOM}\r\n".encode())
            await asyncio.wait_for(proto.ready.wait(), 30)
            send_transports.append(t)
            transports.append(t)
        viewer = asyncio.create_task(_hls_viewer(ports["http"], stop, stats))
        interval = 1 / rate
        seq = 0

        async def send_for(seconds: float) -> None:
            nonlocal seq
            end = time.monotonic() + seconds
            next_at = time.monotonic()
            while time.monotonic() < end:
                out = send_transports[seq % len(send_transports)]
                out.write(f"PRIVMSG #{ROOM} :soak {seq} {int(time.time() * 1000)}\r\n".encode())
                seq += 1
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        # Warm-up, not recorded: the transcoder and packager start, the first segments are
        # written and the viewer catches up; the first minute is the baseline of flatness, so
        # it must be steady state as much as the last.
        if warmup > 0:
            print(f"warming up for {warmup:.0f} s", flush=True)
            await send_for(warmup)
            await asyncio.sleep(1)
        for minute in range(1, math.ceil(minutes) + 1):
            stats["latencies"], lines_before, sent_before = [], stats["lines"], seq
            hls_before = (stats["hls_ok"], stats["hls_failed"])
            await send_for(min(60.0, (minutes - minute + 1) * 60))
            await asyncio.sleep(1)  # let the last ones arrive
            lat = stats["latencies"]
            rows.append({
                "minute": minute, "rss_mib": round(rss_kib(server.pid) / 1024, 1), "sent": seq - sent_before,
                "delivered": stats["lines"] - lines_before, "expected": (seq - sent_before) * connections,
                "p50_ms": round(percentile(lat, 50), 1), "p99_ms": round(percentile(lat, 99), 1),
                "hls_ok": stats["hls_ok"] - hls_before[0], "hls_failed": stats["hls_failed"] - hls_before[1],
                "joined": stats["joined"], "lost": stats["lost"],
            })
            print(table(rows[-1:]) if minute == 1 else table(rows[-1:]).splitlines()[-1], flush=True)
        stop.set()
        await viewer
    finally:
        stop.set()
        for each in transports:
            each.abort()
        for proc in (publisher, server):
            if proc is not None and proc.returncode is None:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 30)
        log.close()
    text = log_path.read_text(errors="replace")
    errors = sum(1 for line in text.splitlines() if " ERROR " in line or "level=ERROR" in line)
    tracebacks = text.count("Traceback")
    tmp.cleanup()
    first, last = rows[0], rows[-1]
    summary = {
        "connections": connections, "minutes": minutes, "rate_per_s": rate, "senders": senders_needed,
        "rss_start_mib": first["rss_mib"], "rss_end_mib": last["rss_mib"],
        "rss_ratio_end_to_start": round(last["rss_mib"] / first["rss_mib"], 3),
        "p99_first_ms": first["p99_ms"], "p99_last_ms": last["p99_ms"],
        "p99_ratio_last_to_first": round(last["p99_ms"] / first["p99_ms"], 2) if first["p99_ms"] else None,
        "delivered_ratio": round(sum(r["delivered"] for r in rows) / max(1, sum(r["expected"] for r in rows)), 4),
        "sender_notices": stats["sender_notices"], "log_errors": errors, "log_tracebacks": tracebacks,
        "server_exit_code": server.returncode,
    }
    print("\n" + table([summary]))
    return {"summary": summary, "per_minute": rows}


async def main(args: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench soak")
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=5.0, help="chat messages per second into the room")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds of traffic before the first minute")
    opts = parser.parse_args(args)
    return await run(opts.connections, opts.minutes, opts.rate, opts.warmup)
