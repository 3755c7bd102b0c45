"""A stream's life: live -> reconnecting -> live ... -> offline, and who may publish.

A publisher that drops (OBS on a flaky uplink, a router restart) usually comes back within
seconds, and viewers should not see a new broadcast each time. So a drop only moves the
stream to *reconnecting*; the same key publishing again inside ``reconnect_window`` continues
the same ``Stream`` row and media session (a discontinuity, not a new stream), and only when
the window passes does the stream go *offline* and ``stream.offline`` go out on the bus.

One :class:`Lifecycle` per platform holds the streams this node ingests. Which node owns a
channel's stream is a claim on the bus (``ingest:claim:<user id>``, refreshed while the stream
is not offline, with a TTL): a channel live on another node refuses a second publisher here
too, and a node that crashed frees its channels after :data:`CLAIM_TTL_S` instead of blocking
them forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from livecast.bus import publish_event
from livecast.identity.models import Channel, User
from livecast.identity.service import user_for_stream_key
from livecast.ingest.health import HealthTracker
from livecast.ingest.models import Stream
from livecast.ingest.pipeline import MediaService, MediaSession, StreamInfo
from livecast.logs import event
from livecast.outage import is_backend_outage
from livecast.platform import Platform
from livecast.protocols import flv
from livecast.store.base import new_id, utcnow

log = logging.getLogger("livecast.ingest")

HEALTH_MEASURE_S = 1.0  # StreamInfo.health (read by media and the dashboard) refresh
HEALTH_PERSIST_S = 3.0  # Stream.health row update
CLAIM_TTL_S = 15.0  # a node that dies stops refreshing its claim; the channel is free after this
LIVE, RECONNECTING, OFFLINE = "live", "reconnecting", "offline"
OUTAGE_RETRY_S = 2.0  # going offline is retried this often while the database or Redis is down
OFFLINE_EVENT_TRIES = 150  # about five minutes of retries for stream.offline before giving up


def _best_effort(what: str, exc: BaseException, **fields: Any) -> None:
    """Bookkeeping that a backend outage interrupted: say so and go on; a bug still raises.

    Why: a publisher's connection, and a stream's way to offline, must not depend on Redis or
    the database answering every few seconds; a health row or a claim refresh can wait.
    """
    if not is_backend_outage(exc):
        raise exc
    event(log, what, logging.WARNING, error=type(exc).__name__, **fields)


class PublishRefused(Exception):
    """This publish cannot go ahead; the message says why, for the RTMP status."""


class AlreadyPublishing(PublishRefused):
    """The channel has a publisher connected right now (here or on another node)."""


class MediaUnavailable(PublishRefused):
    """The media service could not take the stream."""


class NullSession:
    """Stands in for media when this process runs ingest without the media service."""

    def feed(self, data: bytes) -> None:
        return None

    async def publisher_lost(self) -> None:
        return None

    async def publisher_resumed(self) -> None:
        return None

    async def close(self) -> None:
        return None


@dataclass
class LiveStream:
    """What this node knows about one of its streams that is not offline yet."""

    stream_id: str
    user: User
    info: StreamInfo
    session: MediaSession
    started_at: dt.datetime
    publisher: object | None = None
    health: HealthTracker = field(default_factory=HealthTracker)
    header_sent: bool = False
    offline_task: asyncio.Task[None] | None = None
    persisted_at: float = 0.0
    measured_at: float = 0.0
    status: str = LIVE

    def feed_tag(self, tag_type: int, timestamp: int, body: bytes, has_audio: bool = True) -> None:
        """Hand one FLV tag to media, the FLV header first after each (re)connect."""
        if not self.header_sent:
            self.session.feed(flv.header(has_audio=has_audio, has_video=True))
            self.header_sent = True
        self.session.feed(flv.tag(tag_type, timestamp, body))


class Lifecycle:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.streams: dict[str, LiveStream] = {}  # by user id
        self._lock = asyncio.Lock()
        self.closing = False
        s = platform.settings
        self.node_id = s.node_name or f"{s.host}:{s.rtmp_port}"

    async def recover(self) -> int:
        """At start-up: streams this node had not ended (it crashed) end now."""
        async with self.platform.db.session() as db:
            rows = (await db.execute(
                select(Stream, User).join(User, User.id == Stream.user_id)
                .where(Stream.node_id == self.node_id, Stream.status != OFFLINE)
            )).all()
            for row, _ in rows:
                row.status, row.ended_at = OFFLINE, utcnow()
        for row, user in rows:
            event(log, "stream offline", login=user.login, stream_id=row.id, reason="node restarted")
            await publish_event(self.platform.bus, "stream.offline", {
                "id": row.id, "broadcaster_user_id": user.id, "broadcaster_user_login": user.login,
                "broadcaster_user_name": user.display_name,
            })
        return len(rows)

    async def authorize(self, key: str) -> User | None:
        async with self.platform.db.session() as db:
            return await user_for_stream_key(db, key)

    async def begin(self, user: User, publisher: object, metadata: dict[str, Any] | None = None) -> LiveStream:
        """Go live, or resume a stream inside its reconnect window. Raises AlreadyPublishing."""
        async with self._lock:
            live = self.streams.get(user.id)
            if live is not None:
                if live.publisher is not None:
                    raise AlreadyPublishing(user.login)
                return await self._resume(live, publisher)
            return await self._start(user, publisher, metadata or {})

    async def _start(self, user: User, publisher: object, metadata: dict[str, Any]) -> LiveStream:
        bus, key = self.platform.bus, _claim_key(user.id)
        if not await bus.set(key, self.node_id.encode(), ttl=CLAIM_TTL_S, only_if_absent=True):
            if await bus.get(key) != self.node_id.encode():
                raise AlreadyPublishing(user.login)
        # Media first, so that a stream row never says "live" for a stream nobody can watch.
        stream_id, started_at = new_id(), utcnow()
        info = StreamInfo(stream_id=stream_id, user_id=user.id, login=user.login,
                          broadcaster_type=user.broadcaster_type or "", metadata=dict(metadata))
        media: MediaService | None = self.platform.state.get("media")
        try:
            session: MediaSession = NullSession() if media is None else await media.open_stream(info)
        except Exception as exc:
            log.exception("media refused stream for %s", user.login)
            await bus.delete(key)
            raise MediaUnavailable(user.login) from exc
        try:
            await self._insert_row(user, stream_id, started_at)
        except BaseException:
            await bus.delete(key)
            with contextlib.suppress(Exception):
                await session.close()
            raise
        live = LiveStream(stream_id, user, info, session, started_at, publisher=publisher)
        self.streams[user.id] = live
        event(log, "stream online", login=user.login, stream_id=stream_id)
        try:  # the stream is live now; a lost event must not leave it live with nobody publishing
            await publish_event(self.platform.bus, "stream.online", {
                "id": stream_id, "broadcaster_user_id": user.id, "broadcaster_user_login": user.login,
                "broadcaster_user_name": user.display_name, "type": "live",
                "started_at": _rfc3339(started_at),
            })
        except Exception as exc:
            _best_effort("stream.online event not published", exc, login=user.login)
        return live

    async def _insert_row(self, user: User, stream_id: str, started_at: dt.datetime) -> None:
        """The new Stream row, with the channel's title, category, language and tags of now."""
        async with self.platform.db.session() as db:
            rows = (await db.execute(
                select(Stream).where(Stream.user_id == user.id, Stream.status != OFFLINE)
            )).scalars().all()
            for row in rows:  # nobody holds the claim: left over by a node that died
                row.status, row.ended_at = OFFLINE, utcnow()
            channel = await db.get(Channel, user.id)
            db.add(Stream(
                id=stream_id, user_id=user.id, status=LIVE, node_id=self.node_id, started_at=started_at,
                title=channel.title if channel else "", category_id=channel.category_id if channel else "",
                category_name=channel.category_name if channel else "",
                language=channel.language if channel else "en", tags=list(channel.tags or []) if channel else [],
            ))

    async def _resume(self, live: LiveStream, publisher: object) -> LiveStream:
        if live.offline_task is not None:
            live.offline_task.cancel()
            live.offline_task = None
        live.publisher = publisher
        live.header_sent = False
        live.status = LIVE
        live.health.reset_timeline()
        await self._set_status(live, LIVE)
        await live.session.publisher_resumed()
        event(log, "stream resumed", login=live.user.login, stream_id=live.stream_id)
        return live

    async def publisher_gone(self, live: LiveStream, publisher: object) -> None:
        """The publisher disconnected: wait ``reconnect_window`` before going offline."""
        if self.closing:
            return  # shutdown ends every stream itself, with no window
        async with self._lock:
            if live.publisher is not publisher or self.streams.get(live.user.id) is not live:
                return
            live.publisher = None
            live.status = RECONNECTING
            await self.persist_health(live, force=True)
            try:  # whatever happens here, the offline timer below must start
                await self._set_status(live, RECONNECTING)
            except Exception as exc:
                _best_effort("stream status not recorded", exc, login=live.user.login, status=RECONNECTING)
            with contextlib.suppress(Exception):
                await live.session.publisher_lost()
            window = self.platform.settings.reconnect_window
            event(log, "stream reconnecting", login=live.user.login, window_s=window)
            live.offline_task = asyncio.get_running_loop().create_task(self._offline_after(live, window))

    async def end_now(self, live: LiveStream, publisher: object) -> None:
        """The publisher was refused mid-stream: offline at once, no reconnect window."""
        async with self._lock:
            if live.publisher is not publisher or self.streams.get(live.user.id) is not live:
                return
            live.publisher = None
            await self._mark_offline(live)
        await self._finish(live)

    async def _offline_after(self, live: LiveStream, delay: float) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + delay
        while (left := until - loop.time()) > 0:
            await asyncio.sleep(min(left, CLAIM_TTL_S / 3))
            await self._refresh_claim(live)
        while True:
            async with self._lock:
                if live.publisher is not None or self.streams.get(live.user.id) is not live:
                    return
                try:
                    await self._mark_offline(live)
                except Exception as exc:
                    _best_effort("stream offline not recorded yet; retrying", exc, login=live.user.login)
                else:
                    live.offline_task = None
                    break
            await asyncio.sleep(OUTAGE_RETRY_S)
        await self._finish(live, tries=OFFLINE_EVENT_TRIES)

    async def _mark_offline(self, live: LiveStream) -> None:
        """The database side of going offline; under the lock, so a publisher can't slip in.

        The row first: if the database is down this raises with nothing changed, and the caller
        can try again. The claim has a TTL, so failing to delete it only delays its expiry.
        """
        live.info.health.update(live.health.snapshot(time.monotonic()))
        async with self.platform.db.session() as db:
            row = await db.get(Stream, live.stream_id)
            if row is not None:
                row.status, row.ended_at = OFFLINE, utcnow()
                row.health = _jsonable(live.info.health)
        self.streams.pop(live.user.id, None)
        live.status = OFFLINE
        try:
            await self.platform.bus.delete(_claim_key(live.user.id))
        except Exception as exc:
            _best_effort("stream claim not released", exc, login=live.user.login)

    async def _finish(self, live: LiveStream, tries: int = 1) -> None:
        """Outside the lock: stopping the transcoder may take a while, go-lives must not wait.

        ``stream.offline`` is retried ``tries`` times through a bus outage (EventSub subscribers
        must hear that the stream ended); shutdown tries once, as it cannot wait.
        """
        try:
            await live.session.close()
        except Exception:
            log.exception("media session close failed")
        event(log, "stream offline", login=live.user.login, stream_id=live.stream_id)
        for attempt in range(tries):
            try:
                await publish_event(self.platform.bus, "stream.offline", {
                    "id": live.stream_id, "broadcaster_user_id": live.user.id,
                    "broadcaster_user_login": live.user.login, "broadcaster_user_name": live.user.display_name,
                })
                return
            except Exception as exc:
                _best_effort("stream.offline event not published yet", exc, login=live.user.login)
            if attempt + 1 < tries:
                await asyncio.sleep(OUTAGE_RETRY_S)

    async def shutdown(self) -> None:
        """Service stop: every stream ends now (no reconnect window for a server going away)."""
        self.closing = True
        ended: list[LiveStream] = []
        async with self._lock:
            for live in list(self.streams.values()):
                if live.offline_task is not None:
                    live.offline_task.cancel()
                    live.offline_task = None
                try:
                    await self._mark_offline(live)
                    ended.append(live)
                except Exception:
                    log.exception("ending stream %s at shutdown failed", live.stream_id)
        for live in ended:
            await self._finish(live)

    async def persist_health(self, live: LiveStream, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - live.measured_at < HEALTH_MEASURE_S:
            return
        live.measured_at = now
        live.info.health.update(live.health.snapshot(now))
        if not force and now - live.persisted_at < HEALTH_PERSIST_S:
            return
        live.persisted_at = now
        await self._refresh_claim(live)
        try:
            async with self.platform.db.session() as db:
                row = await db.get(Stream, live.stream_id)
                if row is not None:
                    row.health = _jsonable(live.info.health)
        except Exception as exc:
            _best_effort("stream health not persisted", exc, login=live.user.login)

    async def _refresh_claim(self, live: LiveStream) -> None:
        if self.streams.get(live.user.id) is live:
            try:
                await self.platform.bus.set(_claim_key(live.user.id), self.node_id.encode(), ttl=CLAIM_TTL_S)
            except Exception as exc:
                _best_effort("stream claim not refreshed", exc, login=live.user.login)

    async def _set_status(self, live: LiveStream, status: str) -> None:
        async with self.platform.db.session() as db:
            row = await db.get(Stream, live.stream_id)
            if row is not None:
                row.status = status


def _claim_key(user_id: str) -> str:
    return f"ingest:claim:{user_id}"


def _rfc3339(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _jsonable(health: dict[str, Any]) -> dict[str, Any]:
    """A copy for the JSON column: SQLAlchemy only notices a *new* dict, and values must be JSON."""
    return dict(json.loads(json.dumps(health, default=str)))
