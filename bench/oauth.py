"""OAuth2 hot paths: GET /oauth2/validate and the authorization-code exchange, against /healthz.

Every Helix and chat client validates its token, often once per request or connection, so the
validate endpoint is the one that must stay cheap. The platform runs in this process on SQLite
with 10,000 tokens (``--quick``: 1,000); a pool of keep-alive httpx clients drives it. The
baseline, measured in the same run over the same connections, is ``GET /healthz`` (a database
ping and a bus ping): the ratio is what hashing the token, two indexed lookups and the JSON
answer cost over the HTTP stack and one round trip to the database.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import percentile, table


async def _drive(client: httpx.AsyncClient, make: Any, seconds: float, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    errors = 0

    async def worker(n: int) -> None:
        nonlocal errors
        i = n
        while time.perf_counter() < deadline:
            method, url, kwargs = make(i)
            i += concurrency
            start = time.perf_counter()
            r = await client.request(method, url, **kwargs)
            latencies.append(time.perf_counter() - start)
            if r.status_code != 200:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"req_per_s": round(len(latencies) / elapsed, 1), "p50_ms": round(percentile(latencies, 50) * 1000, 2),
            "p99_ms": round(percentile(latencies, 99) * 1000, 2), "errors": errors}


async def main(args: list[str]) -> dict[str, Any]:
    from tests.conftest import start_server

    from livecast.identity import grants, service

    quick = "--quick" in args
    tokens_n = 1_000 if quick else 10_000
    seconds = 3.0 if quick else 8.0
    concurrency = 16
    with tempfile.TemporaryDirectory() as tmp:
        server = await start_server(Path(tmp), log_level="WARNING")
        try:
            client_id, secret = await server.create_app("bench", ["http://127.0.0.1:9/cb"])
            async with server.platform.db.session() as db:
                user, _ = await service.create_user(db, "benchuser")
                app_row = await service.get_app(db, client_id)
                assert app_row is not None
                tokens = [(await service.issue_token(db, client_id, user.id, ["chat:read"])).access_token
                          for _ in range(tokens_n)]
            limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
            async with httpx.AsyncClient(base_url=server.http_url, limits=limits) as http:
                await http.get("/healthz")
                baseline = await _drive(http, lambda i: ("GET", "/healthz", {}), seconds, concurrency)
                validate = await _drive(http, lambda i: ("GET", "/oauth2/validate", {
                    "headers": {"Authorization": f"OAuth {tokens[i % len(tokens)]}"}}), seconds, concurrency)
                codes: list[str] = []
                async with server.platform.db.session() as db:
                    for _ in range(2_000 if quick else 5_000):
                        codes.append(await grants.create_code(db, app_row, user.id, ["chat:read"],
                                                              "http://127.0.0.1:9/cb"))
                exchange = await _drive(http, lambda i: ("POST", "/oauth2/token", {"data": {
                    "client_id": client_id, "client_secret": secret, "code": codes[i % len(codes)],
                    "grant_type": "authorization_code", "redirect_uri": "http://127.0.0.1:9/cb"}}),
                    min(seconds, 3.0), concurrency)
        finally:
            await server.runner.stop()
    rows = [{"path": "GET /healthz (baseline)", **baseline}, {"path": "GET /oauth2/validate", **validate},
            {"path": "POST /oauth2/token (code)", **exchange}]
    print(table(rows))
    ratio = round(validate["req_per_s"] / baseline["req_per_s"], 2) if baseline["req_per_s"] else 0.0
    print(f"\nvalidate / healthz throughput ratio: {ratio} ({tokens_n} tokens stored, concurrency {concurrency})")
    if exchange["errors"]:
        print(f"note: {exchange['errors']} exchanges failed (codes reused after the pool ran out)")
    return {"tokens": tokens_n, "concurrency": concurrency, "baseline": baseline, "validate": validate,
            "code_exchange": exchange, "validate_over_baseline": ratio}
