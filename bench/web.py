"""Web page throughput: home, channel, browse, search and the channel status poll, in-process.

Starts the whole platform on free ports (SQLite, in-memory bus, as ``livecast serve`` by
default), seeds 300 channels of which 100 are live across 12 categories, then drives each page
with concurrent HTTP clients for a few seconds. Baseline, in the same run on the same server:
``GET /healthz`` (routing, middleware and one database ping, no template). Ratios are page
requests per second over the baseline's.

Usage: python -m bench web [--seconds N] [--concurrency C]
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import percentile, table


async def _seed(platform: Any, channels: int, live: int) -> list[str]:
    from livecast.identity import service
    from livecast.ingest.models import Stream

    rng = random.Random(7)
    categories = [f"Category {i}" for i in range(12)]
    logins: list[str] = []
    async with platform.db.session() as db:
        for i in range(channels):
            user, _ = await service.create_user(db, f"chan{i:04d}")
            logins.append(user.login)
            if i < live:
                db.add(Stream(user_id=user.id, title=f"stream number {i} playing things", status="live",
                              category_name=rng.choice(categories), viewer_count=rng.randrange(0, 5000),
                              renditions=["source", "480p30"]))
    return logins


async def _drive(client: httpx.AsyncClient, paths: list[str], seconds: float, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        nonlocal errors
        i = n
        while time.perf_counter() < deadline:
            path = paths[i % len(paths)]
            i += concurrency
            start = time.perf_counter()
            response = await client.get(path)
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200:
                errors += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - began
    return {"rps": round(len(latencies) / elapsed, 1), "p50_ms": round(percentile(latencies, 50) * 1000, 2),
            "p99_ms": round(percentile(latencies, 99) * 1000, 2), "requests": len(latencies), "errors": errors}


async def main(args: list[str]) -> dict[str, Any]:
    from livecast.config import load_settings
    from livecast.server import Runner

    seconds = float(args[args.index("--seconds") + 1]) if "--seconds" in args else 4.0
    concurrency = int(args[args.index("--concurrency") + 1]) if "--concurrency" in args else 8
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings({}, data_dir=str(Path(tmp) / "var"), http_port=0, rtmp_port=0, irc_port=0,
                                 log_level="WARNING")
        runner = Runner(settings)
        platform = await runner.start()
        try:
            logins = await _seed(platform, channels=300, live=100)
            base = f"http://127.0.0.1:{platform.ports['http']}"
            limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
            async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
                cases = {
                    "baseline GET /healthz": ["/healthz"],
                    "GET / (home)": ["/"],
                    "GET /{login} (channel)": [f"/{login}" for login in logins[:100]],
                    "GET /directory": ["/directory"],
                    "GET /directory/category/{name}": [f"/directory/category/Category {i}" for i in range(12)],
                    "GET /search?term=": [f"/search?term=chan{i:02d}" for i in range(30)],
                    "GET /web/api/channel/{login}/status": [f"/web/api/channel/{login}/status" for login in logins],
                }
                for paths in cases.values():  # warm up templates and connections
                    await client.get(paths[0])
                results = {name: await _drive(client, paths, seconds, concurrency) for name, paths in cases.items()}
        finally:
            await runner.stop()
    baseline = results["baseline GET /healthz"]["rps"] or 1.0
    rows = [{"case": name, **r, "ratio_to_baseline": round(r["rps"] / baseline, 3)} for name, r in results.items()]
    print(table(rows))
    return {"seconds_per_case": seconds, "concurrency": concurrency, "cases": rows}
