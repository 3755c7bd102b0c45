"""The origin router (role ``api``): tells a CDN edge which ingest node's origin holds a stream.

Design (see also deploy/nginx/edge.conf and the README's "Scale-out" section). A viewer's
request for ``/hls/{login}/...`` reaches an nginx edge. Before serving it, the edge makes an
``auth_request`` subrequest to ``GET /_origin/{login}`` here; the answer carries the owning
origin's ``host:port`` in ``X-Livecast-Origin`` (looked up in the stream registry,
:mod:`livecast.delivery.registry`), and the edge proxies the request itself to that origin.

Why this shape rather than every node proxying to the owner, or redirecting:

* The media bytes go edge -> owning origin directly: no Python hop copies them, and the owner
  is the only node that can answer a blocking LL-HLS request at the moment its part appears.
* The edge's cache stays in charge and keyed by URL, not by origin: ``proxy_cache_lock``
  collapses 1,000 identical blocking playlist requests into one origin request whichever node
  holds the stream, and a stream moving to another node keeps its cache keys.
* The edge caches this router's answers for a second per stream (with the cache lock and
  ``proxy_cache_use_stale``), so the router and Redis see about one lookup per stream per edge
  per second, and a router hiccup does not stop playback that already found its origin.
* A redirect would hand the origin's address to players (and cost them a round trip per
  playlist reload), and would bypass the edge cache.

When no node holds the stream the answer is 200 with no origin; the edge then asks any origin,
which answers the 404 (cached by the edge for a second). ``auth_request`` treats any answer
other than 2xx, 401 and 403 as an error, hence no 404 here.
"""

from __future__ import annotations

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse

from livecast.delivery.registry import lookup
from livecast.platform import Platform

ORIGIN_HEADER = "X-Livecast-Origin"
NODE_HEADER = "X-Livecast-Node"


def install(app: FastAPI, platform: Platform) -> None:
    @app.get("/_origin/{login}", include_in_schema=False)
    async def route(login: str) -> Response:
        entry = await lookup(platform, login)
        headers = {"Cache-Control": "no-store"}
        if entry is None:
            return JSONResponse({"login": login.lower(), "node": None, "origin": None}, headers=headers)
        headers[ORIGIN_HEADER] = entry.address
        headers[NODE_HEADER] = entry.node
        return JSONResponse({"login": entry.login, "node": entry.node, "origin": entry.origin}, headers=headers)
