"""CDN edge: LL-HLS viewers through nginx (origin requests per part, hit ratio) and edge req/s vs static nginx.

Usage: python -m bench edge [--quick] [--viewers 1,100,1000] [--seconds 8] [--connections 32]

Starts a real cluster on loopback (``livecast.cluster``, layout ``video``: one ingest node and
its router on PostgreSQL and Redis, one nginx edge rendered from deploy/nginx/edge.conf) and
publishes a 320x180 test stream with ffmpeg over RTMP.

1. Viewers: N simulated LL-HLS players of the ``source`` rendition, each a bounded loop on its
   own keep-alive connection: a blocking playlist request for the hinted next part
   (``_HLS_msn``/``_HLS_part``), then that part, then the next. Reported: origin requests per
   part (playlists and media, from the origin's own /metrics; target about 1 whatever N) and
   the edge hit ratio (``X-Cache-Status``; target above 95 %).
2. Throughput: requests per second for a live media playlist and a segment, each fetched
   through the edge (cache hits plus the cached router lookup), straight from the Python
   origin, and from a second nginx serving the same bytes as static files (the baseline,
   measured in the same run with the same worker count). Clients pipeline requests on
   keep-alive connections so that the Python load generator is not what is measured, though on
   a small machine it still shares the CPUs with nginx.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import table
from livecast import cluster
from livecast.config import load_settings
from livecast.identity import service as identity
from livecast.store.db import Database

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
HINT = re.compile(rb'PRELOAD-HINT:TYPE=PART,URI="part(\d+)\.(\d+)\.m4s"')
LOGIN = "edgebench"


class Conn:
    """A minimal HTTP/1.1 keep-alive client: just enough parsing to count and pipeline."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        return cls(reader, writer, f"127.0.0.1:{port}")

    def request(self, path: str) -> bytes:
        return f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode()

    async def response(self) -> tuple[int, dict[bytes, bytes], bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if b":" in line:
                k, _, v = line.partition(b":")
                headers[k.strip().lower()] = v.strip()
        if headers.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
            return status, headers, body
        body = await self.reader.readexactly(int(headers.get(b"content-length", b"0")))
        return status, headers, body

    async def get(self, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
        self.writer.write(self.request(path))
        return await self.response()

    def close(self) -> None:
        self.writer.close()


async def hammer(port: int, path: str, seconds: float, connections: int, depth: int) -> float:
    """Requests per second for one path: ``connections`` keep-alive connections, ``depth`` pipelined."""
    done = 0
    errors = 0
    stop_at = time.monotonic() + seconds

    async def one() -> None:
        nonlocal done, errors
        conn = await Conn.open(port)
        batch = conn.request(path) * depth
        try:
            while time.monotonic() < stop_at:
                conn.writer.write(batch)
                for _ in range(depth):
                    status, _, _ = await conn.response()
                    if status == 200:
                        done += 1
                    else:
                        errors += 1
        finally:
            conn.close()

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(connections)))
    elapsed = time.monotonic() - started
    if errors:
        print(f"  ({errors} non-200 answers for {path} on port {port})")
    return done / elapsed


async def viewer(port: int, start: tuple[int, int], stop_at: float, stats: dict[str, Any]) -> None:
    """One LL-HLS player at the live edge: blocking playlist reload, then the part, and again."""
    conn = await Conn.open(port)
    msn, part = start
    base = f"/hls/{LOGIN}/source"
    try:
        while time.monotonic() < stop_at:
            status, headers, body = await conn.get(f"{base}/playlist.m3u8?_HLS_msn={msn}&_HLS_part={part}")
            stats["requests"] += 1
            stats["hits"] += headers.get(b"x-cache-status") == b"HIT"
            if status != 200:
                stats["errors"] += 1
                await asyncio.sleep(0.1)
                continue
            status, headers, _ = await conn.get(f"{base}/part{msn}.{part}.m4s")
            stats["requests"] += 1
            stats["hits"] += headers.get(b"x-cache-status") == b"HIT"
            stats["errors"] += status != 200
            stats["parts"].add((msn, part))
            hint = HINT.search(body)
            if hint is None:
                break
            msn, part = int(hint[1]), int(hint[2])
    finally:
        conn.close()


def origin_counts(text: str) -> tuple[float, float]:
    """(media playlist, media object) requests the origin has answered, from its /metrics."""
    playlists = media = 0.0
    for line in text.splitlines():
        if not line.startswith("livecast_http_requests_total{"):
            continue
        value = float(line.rsplit(" ", 1)[1])
        if 'route="/hls/{login}/{rendition}/playlist.m3u8"' in line:
            playlists += value
        elif 'route="/hls/{login}/{rendition}/{name}"' in line:
            media += value
    return playlists, media


async def metrics(port: int) -> tuple[float, float]:
    conn = await Conn.open(port)
    try:
        _, _, body = await conn.get("/metrics")
    finally:
        conn.close()
    return origin_counts(body.decode())


async def run_viewers(edge_port: int, origin_port: int, n: int, seconds: float) -> dict[str, Any]:
    conn = await Conn.open(edge_port)
    _, _, body = await conn.get(f"/hls/{LOGIN}/source/playlist.m3u8")
    conn.close()
    hint = HINT.search(body)
    assert hint is not None, body[:200]
    start = (int(hint[1]), int(hint[2]))
    stats: dict[str, Any] = {"requests": 0, "hits": 0, "errors": 0, "parts": set()}
    before = await metrics(origin_port)
    stop_at = time.monotonic() + seconds
    await asyncio.gather(*(viewer(edge_port, start, stop_at, stats) for _ in range(n)))
    after = await metrics(origin_port)
    parts = max(1, len(stats["parts"]))
    return {
        "viewers": n,
        "parts": len(stats["parts"]),
        "edge_requests": stats["requests"],
        "edge_rps": round(stats["requests"] / seconds),
        "origin_playlists_per_part": round((after[0] - before[0]) / parts, 2),
        "origin_media_per_part": round((after[1] - before[1]) / parts, 2),
        "hit_ratio_pct": round(100 * stats["hits"] / max(1, stats["requests"]), 1),
        "errors": stats["errors"],
    }


STATIC_CONF = """
{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log {dir}/access.log combined buffer=64k flush=1s;
    sendfile on; tcp_nopush on; tcp_nodelay on; keepalive_requests 100000;
    types {{ application/vnd.apple.mpegurl m3u8; video/mp4 m4s; }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        root {dir}/root;
    }}
}}
"""


def start_static(work: Path, files: dict[str, bytes]) -> tuple[subprocess.Popen[bytes], int]:
    """nginx serving ``files`` (path -> bytes) from disk: the baseline."""
    static = work / "static"
    for path, data in files.items():
        target = static / "root" / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    port = cluster.free_port()
    import os

    conf = static / "nginx.conf"
    conf.write_text(STATIC_CONF.format(dir=static, port=port, user="user root;" if os.geteuid() == 0 else ""))
    proc = subprocess.Popen([cluster.nginx_binary(), "-e", str(static / "error.log"), "-c", str(conf),
                             "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cluster.wait_healthy(f"http://127.0.0.1:{port}{next(iter(files))}", 20, proc.pid)
    return proc, port


async def create_streamer(database_url: str, data_dir: str) -> str:
    settings = load_settings({}, database_url=database_url, data_dir=data_dir)
    db = Database(settings.resolved_database_url)
    try:
        async with db.session() as session:
            _, key = await identity.create_user(session, LOGIN)
    finally:
        await db.close()
    return str(key)


async def drop_database(url: str) -> None:
    import asyncpg

    base, name = url.rsplit("/", 1)
    conn = await asyncpg.connect(base + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def latest_segment(edge_port: int) -> tuple[bytes, str]:
    """The edge's current media playlist and its newest complete segment's path."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conn = await Conn.open(edge_port)
        status, _, body = await conn.get(f"/hls/{LOGIN}/source/playlist.m3u8")
        conn.close()
        found = re.findall(rb"^(seg\d+\.m4s)$", body, re.M)
        if status == 200 and len(found) >= 2:
            return body, f"/hls/{LOGIN}/source/{found[-1].decode()}"
        await asyncio.sleep(0.5)
    raise RuntimeError("the test stream never produced two segments through the edge")


async def measure(state: cluster.ClusterState, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    edge = state.edges[0]
    origin = state.node("ingest-1")
    await latest_segment(edge.port)  # the stream is up and routed
    viewers = []
    for n in args.viewers:
        print(f"viewers: {n} LL-HLS players for {args.seconds:.0f} s ...", flush=True)
        viewers.append(await run_viewers(edge.port, origin.http_port, n, args.seconds))
    print()
    print(table(viewers))

    # The newest segment stays in the origin's window for a playlist window (12 s by default).
    body, seg_path = await latest_segment(edge.port)
    playlist_path = f"/hls/{LOGIN}/source/playlist.m3u8"
    conn = await Conn.open(origin.http_port)
    _, _, segment = await conn.get(seg_path)
    conn.close()
    static, static_port = start_static(work, {playlist_path: body, seg_path: segment})
    rows = []
    try:
        for label, path in (("segment", seg_path), ("playlist", playlist_path)):
            row: dict[str, Any] = {"object": label, "bytes": len(body) if label == "playlist" else len(segment)}
            for target, port in (("static_nginx", static_port), ("edge", edge.port), ("origin", origin.http_port)):
                print(f"throughput: {label} from {target} ...", flush=True)
                conns = args.connections if target != "origin" else max(4, args.connections // 4)
                row[f"{target}_rps"] = round(await hammer(port, path, args.throughput_seconds, conns, args.depth))
            row["edge_vs_static"] = round(row["edge_rps"] / max(1, row["static_nginx_rps"]), 2)
            row["edge_vs_origin"] = round(row["edge_rps"] / max(1, row["origin_rps"]), 1)
            rows.append(row)
    finally:
        static.terminate()
        static.wait()
    print()
    print(table(rows))
    return {"viewers": viewers, "throughput": rows}


def main(argv: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="bench edge")
    p.add_argument("--quick", action="store_true", help="1,100 viewers, shorter runs")
    p.add_argument("--viewers", default="1,100,1000")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each viewer run")
    p.add_argument("--throughput-seconds", type=float, default=3.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--depth", type=int, default=8, help="pipelined requests per connection")
    p.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432",
                   help="PostgreSQL server; the run uses a fresh database there and drops it")
    p.add_argument("--bus-url", default="redis://127.0.0.1:6379/3")
    args = p.parse_args(argv)
    args.viewers = [int(v) for v in ("1,100" if args.quick else args.viewers).split(",")]
    if args.quick:
        args.seconds, args.throughput_seconds = min(args.seconds, 5.0), min(args.throughput_seconds, 2.0)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    work = Path(tempfile.mkdtemp(prefix="livecast-bench-edge-"))
    database_url = f"{args.postgres.rstrip('/')}/livecast_bench_edge_{work.name.rsplit('-', 1)[-1].lower()}"
    run_dir = work / "cluster"
    state = cluster.up(run_dir, 0, database_url, args.bus_url, f"file://{run_dir / 'objects'}",
                       layout="video", edges=1)
    publisher: subprocess.Popen[bytes] | None = None
    try:
        key = asyncio.run(create_streamer(database_url, str(work)))
        seconds = 60 + len(args.viewers) * (args.seconds + 2) + 6 * args.throughput_seconds
        publisher = subprocess.Popen(
            [FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
             "-f", "lavfi", "-i", "sine=frequency=440", "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast",
             "-tune", "zerolatency", "-g", "30", "-c:a", "aac", "-b:a", "64k", "-f", "flv",
             f"rtmp://127.0.0.1:{state.node('ingest-1').rtmp_port}/app/{key}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        results = asyncio.run(measure(state, args, work))
    finally:
        if publisher is not None:
            publisher.kill()
            publisher.wait()
        cluster.down(run_dir)
        asyncio.run(drop_database(database_url))
        shutil.rmtree(work, ignore_errors=True)
    results["settings"] = {"viewers": args.viewers, "seconds": args.seconds, "connections": args.connections,
                           "depth": args.depth, "edge_workers": 1, "static_workers": 1}
    print(json.dumps({"edge_vs_static": [r["edge_vs_static"] for r in results["throughput"]]}))
    return results
