"""The RTMP listener (role ``ingest``): a thin asyncio shell around ``RTMPConnection``.

Each connection is one task: read (with an idle timeout, so a stalled publisher does not hold
its channel forever), feed the sans-IO connection, act on its events, write its replies. The
only decisions made here are the ones that need the database, delegated to
:class:`~livecast.ingest.lifecycle.Lifecycle`. A misbehaving client ends its own connection
and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter

from livecast import metrics
from livecast.ingest.lifecycle import AlreadyPublishing, Lifecycle, LiveStream, MediaUnavailable
from livecast.logs import event
from livecast.outage import is_backend_outage
from livecast.platform import Platform
from livecast.protocols import flv
from livecast.protocols.rtmp.connection import (
    CLOSED,
    NEED_DATA,
    PUBLISHING,
    AudioData,
    Connect,
    Metadata,
    ProtocolError,
    Publish,
    RTMPConnection,
    Unpublish,
    UnsupportedCodec,
    VideoData,
)

log = logging.getLogger("livecast.ingest")

READ_SIZE = 64 * 1024  # also bounds what one connection buffers between two event passes
WRITE_TIMEOUT_S = 10.0
PUBLISH_DEADLINE_S = 20.0  # from TCP accept to NetStream.Publish.Start
STOP_CONNECTIONS_S = 3.0  # at shutdown; ending the streams after it needs the rest of the 10 s stop
# Wrong stream keys per address before its publishes are refused unchecked for the window. Keys
# are 192 random bits, so this is not about guessing; it bounds the database work one stranger
# can cause, and stops a misconfigured encoder from hammering. Addresses in
# LIVECAST_LIMIT_EXEMPT_IPS (loopback by default) are not counted.
BAD_KEY_LIMIT = 20
BAD_KEY_WINDOW_S = 60


class _Publisher:
    """Identity of one connection for the lifecycle (which compares by ``is``)."""

    def __init__(self, peer: str) -> None:
        self.peer = peer


class IngestService:
    name = "ingest"

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.settings = platform.settings
        self.lifecycle = Lifecycle(platform)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._per_ip: Counter[str] = Counter()
        self._epoch = time.monotonic()
        platform.state["ingest"] = self

    async def start(self) -> dict[str, int]:
        s = self.settings
        self._server = await asyncio.start_server(self._client, s.host, s.rtmp_port, reuse_address=True,
                                                  backlog=512, limit=READ_SIZE)
        port = int(self._server.sockets[0].getsockname()[1])
        # The node id names this listener, so it needs the real port when port 0 was asked.
        if not s.node_name:
            self.lifecycle.node_id = f"{s.host}:{port}"
        await self.lifecycle.recover()
        return {"rtmp": port}

    async def drain(self) -> None:
        """Keep the streams being published here and take no new ones: stop listening, then
        wait until every publisher has left (``stop`` then ends what is left). Publishers that
        reconnect reach another ingest node through DNS or the balancer in front."""
        if self._server is not None:
            self._server.close()
        event(log, "ingest draining", streams=len(self.lifecycle.streams), connections=len(self._tasks))
        while self._tasks:
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        self.lifecycle.closing = True
        if self._server is not None:
            self._server.close()
        await self._end_connections()
        await self.lifecycle.shutdown()

    async def _end_connections(self) -> None:
        """Cancel every connection, again until it has gone: one cancel is not enough, as an
        ``await`` finishing at the same moment can swallow it (``asyncio.wait_for`` on 3.11
        does), and then a busy publisher's loop reads on. Streams end after this either way."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + STOP_CONNECTIONS_S
        while self._tasks and loop.time() < give_up:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.wait(list(self._tasks), timeout=0.5)
        if self._tasks:
            log.warning("%d rtmp connections did not end at shutdown", len(self._tasks))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if peer else "?"
        if self._per_ip[ip] >= self.settings.rtmp_max_connections_per_ip:
            event(log, "rtmp connection refused", ip=ip, reason="too many connections from this address")
            writer.close()
            return
        self._per_ip[ip] += 1
        self._tasks.add(task)
        metrics.rtmp_connections.inc()
        try:
            await _Connection(self, reader, writer, ip).run()
        except asyncio.CancelledError:
            pass
        except Exception:
            metrics.errors.labels("ingest").inc()
            log.exception("rtmp connection failed")
        finally:
            metrics.rtmp_connections.dec()
            self._per_ip[ip] -= 1
            if self._per_ip[ip] <= 0:
                del self._per_ip[ip]
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)


class _Connection:
    def __init__(self, service: IngestService, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, ip: str) -> None:
        self.service = service
        self.lifecycle = service.lifecycle
        self.reader = reader
        self.writer = writer
        self.ip = ip
        self.conn = RTMPConnection(int((time.monotonic() - service._epoch) * 1000))
        self.publisher = _Publisher(ip)
        self.live: LiveStream | None = None
        self.has_audio = True

    async def run(self) -> None:
        idle = self.service.settings.rtmp_idle_timeout
        loop = asyncio.get_running_loop()
        # A client trickling bytes would never be idle: it gets a fixed time to start publishing.
        deadline = loop.time() + PUBLISH_DEADLINE_S
        try:
            while self.conn.state != CLOSED:
                timeout = idle
                if self.conn.state != PUBLISHING:
                    timeout = min(idle, deadline - loop.time())
                try:
                    if timeout <= 0:
                        raise TimeoutError
                    async with asyncio.timeout(timeout):
                        data = await self.reader.read(READ_SIZE)
                except TimeoutError:
                    reason = "idle" if self.conn.state == PUBLISHING or timeout == idle else "no publish in time"
                    event(log, "rtmp timeout", ip=self.ip, reason=reason)
                    return
                except ConnectionError:
                    return
                if not data:
                    return
                metrics.rtmp_bytes.inc(len(data))
                self.conn.receive_data(data)
                await self._events()
                if self.live is not None:
                    self.live.health.bytes_in(len(data), time.monotonic())
                    await self.lifecycle.persist_health(self.live)
                await self._flush()
        finally:
            if self.live is not None:
                live, self.live = self.live, None
                await asyncio.shield(self.lifecycle.publisher_gone(live, self.publisher))

    async def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self.writer.write(out)
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await self.writer.drain()

    async def _events(self) -> None:
        conn = self.conn
        while True:
            ev = conn.next_event()
            if ev is NEED_DATA:
                return
            live = self.live
            if isinstance(ev, VideoData):
                if live is not None:
                    live.health.video_tag(ev.timestamp, ev.payload)
                    live.feed_tag(flv.VIDEO, ev.timestamp, ev.payload, self.has_audio)
            elif isinstance(ev, AudioData):
                if live is not None:
                    live.health.audio_tag(ev.payload)
                    live.feed_tag(flv.AUDIO, ev.timestamp, ev.payload, self.has_audio)
            elif isinstance(ev, Metadata):
                if live is not None:
                    live.info.metadata.update(ev.values)
                    if not live.header_sent:
                        self.has_audio = "audiocodecid" in ev.values or "audiodatarate" in ev.values
                    live.feed_tag(flv.SCRIPT, 0, ev.flv_body, self.has_audio)
            elif isinstance(ev, Connect):
                event(log, "rtmp connect", ip=self.ip, app=ev.app, tc_url=ev.tc_url)
                conn.accept_connect()
            elif isinstance(ev, Publish):
                await self._publish(ev)
            elif isinstance(ev, Unpublish):
                if live is not None:
                    self.live = None
                    await self.lifecycle.publisher_gone(live, self.publisher)
            elif isinstance(ev, UnsupportedCodec):
                event(log, "rtmp publish refused", ip=self.ip, reason=ev.reason)
                if live is not None:
                    # Not a drop: the same encoder settings would be refused again, so no window.
                    self.live = None
                    await self.lifecycle.end_now(live, self.publisher)
                await self._flush()  # the onStatus explaining the refusal
                return
            elif isinstance(ev, ProtocolError):
                metrics.errors.labels("ingest").inc()
                event(log, "rtmp protocol error", ip=self.ip, reason=ev.reason)
                return

    async def _publish(self, ev: Publish) -> None:
        try:
            await self._try_publish(ev)
        except Exception as exc:
            if not is_backend_outage(exc):
                raise
            # The database or Redis is down: the encoder is told to retry (OBS does), rather
            # than seeing the connection drop with no status at all.
            metrics.errors.labels("backend_unavailable").inc()
            event(log, "rtmp publish refused", ip=self.ip, reason="backend unavailable")
            self.conn.reject_publish("NetStream.Publish.Rejected", "service unavailable, try again later")

    async def _try_publish(self, ev: Publish) -> None:
        bus = self.service.platform.bus
        counted = self.ip not in self.service.settings.limit_exempt_ips
        fails_key = f"rtmp:badkey:{self.ip}"
        if counted:
            fails = await bus.get(fails_key)
            if fails is not None and int(fails) >= BAD_KEY_LIMIT:
                event(log, "rtmp publish refused", ip=self.ip, reason="too many bad stream keys")
                self.conn.reject_publish("NetStream.Publish.Rejected", "too many failed attempts, try again later")
                return
        user = await self.lifecycle.authorize(ev.stream_key)
        if user is None:
            if counted:
                await bus.incr(fails_key, 1, ttl=BAD_KEY_WINDOW_S)
            event(log, "rtmp publish refused", ip=self.ip, reason="bad stream key")
            self.conn.reject_publish("NetStream.Publish.BadName", "invalid stream key")
            return
        try:
            self.live = await self.lifecycle.begin(user, self.publisher)
        except AlreadyPublishing:
            event(log, "rtmp publish refused", ip=self.ip, login=user.login, reason="already publishing")
            self.conn.reject_publish("NetStream.Publish.BadName", "stream already publishing")
            return
        except MediaUnavailable:
            self.conn.reject_publish("NetStream.Publish.Rejected", "media service unavailable, try again later")
            return
        event(log, "rtmp publish", ip=self.ip, login=user.login, stream_id=self.live.stream_id)
        self.conn.accept_publish()


def create_service(platform: Platform) -> IngestService:
    return IngestService(platform)
