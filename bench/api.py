"""Helix throughput and p99: GET /helix/streams?first=100 and GET /helix/users?login=..., on PostgreSQL.

Seeds a fresh PostgreSQL database (100,000 users and channels, 10,000 live streams; ``--quick``:
10,000 and 1,000) with COPY, runs ``livecast serve --role api`` in a subprocess, and drives it
from a separate load process over keep-alive HTTP/1.1 connections. The baseline, measured in
the same run by the same load process, is a bare Starlette app under uvicorn answering each
path with a static body of the same size: the ratio is what Helix (auth, rate limit, query,
JSON) costs over the HTTP stack alone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import multiprocessing
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import percentile, table

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("LIVECAST_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


async def seed(url: str, channels: int, live: int) -> tuple[str, str, list[str]]:
    """Create the schema, bulk-load rows; return (client_id, token, sample logins)."""
    import asyncpg

    from livecast.identity import credentials
    from livecast.store.db import Database

    db = Database("postgresql+asyncpg://" + url.split("://", 1)[1])
    await db.upgrade()
    await db.close()
    conn = await asyncpg.connect(url)
    try:
        now = dt.datetime.now(dt.UTC)
        users = [(str(10**11 + i), f"user{i:06d}", f"User{i:06d}", "", "", "", "", "", "", "", "", now)
                 for i in range(channels)]
        await conn.copy_records_to_table(
            "users", records=users,
            columns=["id", "login", "display_name", "email", "password_hash", "type", "broadcaster_type",
                     "description", "profile_image_url", "offline_image_url", "color", "created_at"])
        chans = [(u[0], f"title {u[1]}", "", "", "en", "[]", 0, False, "", "", now) for u in users]
        await conn.copy_records_to_table(
            "channels", records=chans,
            columns=["id", "title", "category_id", "category_name", "language", "tags", "delay",
                     "is_branded_content", "stream_key_hash", "stream_key_prefix", "updated_at"])
        rng = random.Random(1)
        streams = [(str(2 * 10**11 + i), users[i][0], "live!", "", "", "en", "[]", "live", now, None,
                    rng.randint(0, 50_000), "", "[]", "{}", False) for i in range(live)]
        await conn.copy_records_to_table(
            "streams", records=streams,
            columns=["id", "user_id", "title", "category_id", "category_name", "language", "tags", "status",
                     "started_at", "ended_at", "viewer_count", "node_id", "renditions", "health", "is_mature"])
        client_id = "bench-" + secrets.token_hex(8)
        await conn.execute(
            "INSERT INTO oauth_apps (client_id, name, secret_hash, redirect_uris, category, created_at) "
            "VALUES ($1, 'bench', 'x', '[]', 'x', now())", client_id)
        token = credentials.random_token()
        await conn.execute(
            "INSERT INTO oauth_tokens (access_hash, client_id, user_id, scopes, expires_at, created_at, revoked) "
            "VALUES ($1, $2, NULL, '[]', NULL, now(), false)", credentials.sha256(token), client_id)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    logins = [users[i][1] for i in rng.sample(range(channels), min(1000, channels))]
    return client_id, token, logins


# Load generation (runs in its own process) ------------------------------------------------------

async def _worker(port: int, paths: list[str], headers: str, until: float, out: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = random.randrange(len(paths))
    try:
        while time.perf_counter() < until:
            path = paths[i % len(paths)]
            i += 1
            start = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n{headers}\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"{path} answered {status}")
            out.append(time.perf_counter() - start)
    finally:
        writer.close()


def _load(port: int, paths: list[str], headers: str, seconds: float, conns: int, queue: Any) -> None:
    async def run() -> list[float]:
        out: list[float] = []
        until = time.perf_counter() + seconds
        await asyncio.gather(*(_worker(port, paths, headers, until, out) for _ in range(conns)))
        return out

    started = time.perf_counter()
    latencies = asyncio.run(run())
    queue.put((latencies, time.perf_counter() - started))


def measure(port: int, paths: list[str], headers: dict[str, str], seconds: float, conns: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    hdrs = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    # warm-up, then the measured run
    for duration in (min(1.0, seconds / 4), seconds):
        proc = ctx.Process(target=_load, args=(port, paths, hdrs, duration, conns, queue))
        proc.start()
        latencies, elapsed = queue.get(timeout=duration + 60)
        proc.join()
    return {"rps": round(len(latencies) / elapsed, 1), "p50_ms": round(percentile(latencies, 50) * 1000, 2),
            "p99_ms": round(percentile(latencies, 99) * 1000, 2), "requests": len(latencies)}


# Servers --------------------------------------------------------------------------------------------

BASELINE_APP = '''
import json, sys
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
bodies = json.load(open(sys.argv[1]))
async def handler(request):
    return Response(bodies[request.url.path], media_type="application/json")
app = Starlette(routes=[Route(p, handler) for p in bodies])
'''


def wait_port(path: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited during start-up")
        if path.exists():
            try:
                return int(json.loads(path.read_text())["http"])
            except (ValueError, KeyError):
                pass
        time.sleep(0.1)
    raise TimeoutError("server did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _create_db() -> str:
    import asyncpg

    name = "livecast_bench_" + uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


async def _drop_db(url: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()


async def _bodies(port: int, headers: dict[str, str], paths: list[str]) -> list[bytes]:
    import httpx

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as c:
        return [(await c.get(path)).content for path in paths]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.time() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)


def main(args: list[str]) -> dict[str, Any]:
    quick = "--quick" in args
    channels, live = (10_000, 1_000) if quick else (100_000, 10_000)
    seconds = 3.0 if quick else 10.0
    conns = 16
    url = asyncio.run(_create_db())
    tmp = Path(tempfile.mkdtemp(prefix="livecast-bench-api-"))
    server = baseline = None
    try:
        t0 = time.perf_counter()
        client_id, token, logins = asyncio.run(seed(url, channels, live))
        print(f"seeded {channels} channels and {live} live streams in {time.perf_counter() - t0:.1f}s")
        env = {**os.environ, "LIVECAST_DATABASE_URL": url, "LIVECAST_DATA_DIR": str(tmp / "var"),
               "LIVECAST_HTTP_PORT": "0", "LIVECAST_ROLES": "api", "LIVECAST_HELIX_RATE_LIMIT": "100000000",
               "LIVECAST_LOG_LEVEL": "WARNING"}
        server = subprocess.Popen([sys.executable, "-m", "livecast", "serve"], env=env, cwd=str(tmp))
        port = wait_port(tmp / "var" / "ports.json", server)
        headers = {"Client-Id": client_id, "Authorization": f"Bearer {token}"}
        streams_paths = ["/helix/streams?first=100"]
        user_paths = [f"/helix/users?login={login}" for login in logins]
        streams_body, user_body = asyncio.run(_bodies(port, headers, [streams_paths[0], user_paths[0]]))
        assert len(json.loads(streams_body)["data"]) == 100
        results: dict[str, Any] = {"channels": channels, "live_streams": live, "connections": conns,
                                   "seconds": seconds}
        results["streams"] = measure(port, streams_paths, headers, seconds, conns)
        results["users"] = measure(port, user_paths, headers, seconds, conns)
        stop(server)
        server = None

        bodies = tmp / "bodies.json"
        bodies.write_text(json.dumps({"/helix/streams": streams_body.decode(), "/helix/users": user_body.decode()}))
        (tmp / "baseline_app.py").write_text(BASELINE_APP)
        bport = _free_port()
        baseline = subprocess.Popen(
            [sys.executable, "-c", f"import sys; sys.argv=['x', {str(bodies)!r}]; sys.path.insert(0, {str(tmp)!r});"
             f"import uvicorn; uvicorn.run('baseline_app:app', port={bport}, log_level='warning', access_log=False)"],
            cwd=str(tmp))
        _wait_listening(bport)
        results["baseline_streams"] = measure(bport, ["/helix/streams?first=100"], headers, seconds, conns)
        results["baseline_users"] = measure(bport, ["/helix/users?login=x"], headers, seconds, conns)
        rows = []
        for key in ("streams", "users"):
            res, base = results[key], results[f"baseline_{key}"]
            res["rps_ratio_to_baseline"] = round(res["rps"] / base["rps"], 3) if base["rps"] else None
            rows.append({"endpoint": key, **res})
            rows.append({"endpoint": f"baseline ({key} body)", **base})
        print(table(rows))
        print(f"\nHelix/baseline throughput: streams {results['streams']['rps_ratio_to_baseline']}, "
              f"users {results['users']['rps_ratio_to_baseline']}")
        return results
    finally:
        for proc in (server, baseline):
            if proc is not None:
                stop(proc)
        asyncio.run(_drop_db(url))
