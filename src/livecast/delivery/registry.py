"""The stream registry: which ingest node's origin holds each live stream.

An ingest node keeps its streams' playlists, parts and segments in memory (the packager), so a
playback request has to reach the node that ingests the stream; a node that does not hold it
can only answer 404. Each ingest process therefore writes, for every stream it holds, a bus
key ``origin:stream:<login>`` holding ``{"node", "origin"}`` with a time to live
(``LIVECAST_REGISTRY_TTL``), rewritten every third of it while the stream is held. A node that
stops cleanly deletes its entries at once; a node that dies (``kill -9``, a lost machine) stops
refreshing and its entries vanish after the TTL, so edges stop sending viewers to it.

Why a TTL'd key per stream rather than a table: the truth is "who holds the media *now*", which
only the holder can vouch for, continuously; a row in PostgreSQL would outlive a crashed node.
The ingest claim (``ingest:claim:<user id>``, see :mod:`livecast.ingest.lifecycle`) guarantees
one live holder per channel, so the newest live writer is always right. A stream that has ended
(its ENDLIST playlists are still served for a while) only keeps an entry that is still its own,
so it never steals a channel that went live again elsewhere.

Lookups (:func:`lookup`) are one bus GET. The router endpoint (:mod:`livecast.delivery.routing`)
answers them for nginx edges, which cache each answer for a second, so the registry sees about
one lookup per stream per edge per second, whatever the audience.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from livecast.logs import event
from livecast.media.service import media_of
from livecast.platform import Platform

log = logging.getLogger("livecast.delivery.registry")

PREFIX = "origin:stream:"
POLL_S = 0.25  # how often the local media state is compared with what was registered


@dataclass(frozen=True)
class OriginEntry:
    """One registered stream: the node holding it and the origin URL edges reach it at."""

    login: str
    node: str
    origin: str

    @property
    def address(self) -> str:
        """``host:port`` of the origin, the form nginx's ``proxy_pass http://$var`` needs."""
        parts = urlsplit(self.origin)
        return parts.netloc or self.origin

    def encode(self) -> bytes:
        return json.dumps({"node": self.node, "origin": self.origin}, separators=(",", ":")).encode()


def key_of(login: str) -> str:
    return PREFIX + login.lower()


async def lookup(platform: Platform, login: str) -> OriginEntry | None:
    """The origin holding ``login``'s stream now, or None when no node registers it."""
    raw = await platform.bus.get(key_of(login))
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
        return OriginEntry(login.lower(), str(doc["node"]), str(doc["origin"]))
    except (ValueError, KeyError, TypeError):
        return None


def origin_url(platform: Platform) -> str:
    """This node's origin URL: ``LIVECAST_ORIGIN_URL``, else its own HTTP address."""
    s = platform.settings
    if s.origin_url:
        return s.origin_url.rstrip("/")
    host = "127.0.0.1" if s.host in {"0.0.0.0", "::", ""} else s.host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{platform.ports.get('http', s.http_port)}"


class RegistryService:
    """Keeps this ingest node's entries in the registry (a service of the ``ingest`` role)."""

    name = "origin-registry"

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.ttl = platform.settings.registry_ttl
        self.written: dict[str, float] = {}  # login -> monotonic time of the last write
        self._task: asyncio.Task[None] | None = None

    @property
    def node(self) -> str:
        s = self.platform.settings
        return s.node_name or origin_url(self.platform).split("://", 1)[-1]

    def entry(self, login: str) -> OriginEntry:
        return OriginEntry(login, self.node, origin_url(self.platform))

    async def start(self) -> dict[str, int]:
        self._task = asyncio.create_task(self._run())
        return {}

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for login in list(self.written):
            with contextlib.suppress(Exception):
                await self._forget(login)

    async def _run(self) -> None:
        while True:
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: keep trying, entries expire meanwhile
                event(log, "registry update failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(1.0)
            await asyncio.sleep(min(POLL_S, self.ttl / 3))

    async def sync(self) -> None:
        """Register new streams, refresh due ones, forget those this node no longer holds."""
        media = media_of(self.platform)
        held = dict(media.streams) if media is not None else {}
        now = time.monotonic()
        for login, live in held.items():
            last = self.written.get(login)
            if last is not None and now - last < self.ttl / 3:
                continue
            entry = self.entry(login)
            if live.ended:
                if last is None or await self.platform.bus.get(key_of(login)) != entry.encode():
                    self.written.pop(login, None)
                    continue  # went live again elsewhere (or never registered): not ours to claim
            await self.platform.bus.set(key_of(login), entry.encode(), ttl=self.ttl)
            if last is None:
                event(log, "origin registered", stream=login, node=entry.node, origin=entry.origin)
            self.written[login] = now
        for login in [name for name in self.written if name not in held]:
            await self._forget(login)

    async def _forget(self, login: str) -> None:
        self.written.pop(login, None)
        if await self.platform.bus.get(key_of(login)) == self.entry(login).encode():
            await self.platform.bus.delete(key_of(login))
            event(log, "origin unregistered", stream=login, node=self.node)


def create_service(platform: Platform) -> RegistryService:
    return RegistryService(platform)
