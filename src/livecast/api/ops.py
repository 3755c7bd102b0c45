"""Operations endpoints: ``/healthz`` for load balancers, ``/metrics`` for Prometheus."""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from livecast import __version__, metrics
from livecast.platform import Platform

log = logging.getLogger("livecast.ops")


def install(app: FastAPI, platform: Platform) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz(request: Request) -> Response:
        checks: dict[str, str] = {}
        ok = True
        try:
            await platform.db.ping()
            checks["database"] = "ok"
        except Exception as exc:
            ok = False
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            await platform.bus.get("healthz")
            checks["bus"] = "ok"
        except Exception as exc:
            ok = False
            checks["bus"] = f"error: {type(exc).__name__}"
        body = {
            "status": "ok" if ok else "unavailable",
            "version": __version__,
            "roles": list(platform.settings.roles),
            "uptime_s": round(time.time() - platform.started_at, 1),
            "checks": checks,
        }
        return JSONResponse(body, status_code=200 if ok else 503, headers={} if ok else {"Retry-After": "5"})

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
