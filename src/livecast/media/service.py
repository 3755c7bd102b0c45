"""The media service: ingest opens a session per stream; the origin finds live streams by login.

A session probes the first FLV tags for the real source format before choosing the ladder
(onMetaData is optional and OBS's can disagree with the SPS), then runs one
:class:`~livecast.media.transcoder.Transcoder` feeding one
:class:`~livecast.packager.live.LiveStream`. Transcoding capacity is accounted per node in
rendition cost units and released when a stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from livecast import metrics
from livecast.ingest.pipeline import StreamInfo
from livecast.logs import event
from livecast.media.flvsource import VIDEO, Tag, source_format
from livecast.media.ladder import LadderPlan, plan_ladder
from livecast.media.transcoder import FlvInput, Transcoder, part_target
from livecast.packager.live import LiveStream
from livecast.platform import Platform

log = logging.getLogger("livecast.media")

PROBE_MS = 1500  # decide without audio after this much stream time
PROBE_TAGS = 600
ENDED_KEPT_S = 120.0  # an ended stream's playlists (with ENDLIST) stay this long


class StreamSession:
    """What ingest holds while a stream is live (implements ``MediaSession``)."""

    def __init__(self, service: MediaService, info: StreamInfo) -> None:
        self.service = service
        self.info = info
        self.input = FlvInput(info.login)
        self.probe: list[Tag] = []
        self.transcoder: Transcoder | None = None
        self.live: LiveStream | None = None
        self.plan: LadderPlan | None = None
        self._starting: asyncio.Task[None] | None = None
        self.closed = False

    def feed(self, flv: bytes) -> None:
        if self.closed:
            return
        tags = self.input.feed(flv)
        if self.transcoder is not None:
            if self.input.reader.header is not None:
                self.transcoder.set_flv_header(self.input.reader.header)
            for tag in tags:
                self.transcoder.push(tag)
            return
        self.probe.extend(tags)
        if self._starting is None and self._probe_done():
            self._starting = asyncio.get_running_loop().create_task(self._start())

    def _probe_done(self) -> bool:
        if not self.probe:
            return False
        seen_video = any(t.kind == VIDEO and t.is_sequence_header for t in self.probe)
        seen_audio = any(t.kind == 8 for t in self.probe)
        span = self.probe[-1].timestamp - self.probe[0].timestamp
        if seen_video and seen_audio and any(t.is_video_keyframe and not t.is_sequence_header for t in self.probe):
            return True
        return span >= PROBE_MS or len(self.probe) >= PROBE_TAGS

    async def _start(self) -> None:
        try:
            await self._start_transcoder()
        except Exception:
            metrics.errors.labels("media").inc()
            log.exception("cannot start media for %s", self.info.login)

    async def _start_transcoder(self) -> None:
        s = self.service.settings
        fmt = source_format(self.probe, self.info.metadata)
        plan = self.service.reserve(self.info, fmt.height, fmt.fps, fmt.has_audio, fmt.has_video)
        self.plan = plan
        self.info.health["transcode"] = plan.health()
        live = LiveStream(
            self.info.login, {r.name: r for r in plan.renditions}, s.segment_duration, s.part_duration,
            s.playlist_window, source_size=(fmt.width, fmt.height), source_fps=fmt.fps,
            part_targets={r.name: part_target(r, s.part_duration, fmt.fps) for r in plan.renditions},
        )
        self.live = live
        self.service.streams[self.info.login.lower()] = live
        for listener in self.service.live_listeners:  # the VOD archive attaches its hooks here
            listener(self.info, live)
        transcoder = Transcoder(
            s.ffmpeg, plan, fmt, segment_duration=s.segment_duration, part_duration=s.part_duration,
            on_init=live.on_init, on_fragment=live.on_fragment, label=self.info.login,
            on_restart=self._restarted,
        )
        if self.input.reader.header is not None:
            transcoder.set_flv_header(self.input.reader.header)
        for tag in self.probe:
            transcoder.push(tag)
        self.probe = []
        self.transcoder = transcoder
        event(log, "transcoding", stream=self.info.login, decision=plan.decision,
              renditions=",".join(r.name for r in plan.renditions), reason=plan.reason)
        await transcoder.start()

    def _restarted(self, count: int) -> None:
        self.info.health.setdefault("transcode", {})["ffmpeg_restarts"] = count

    async def publisher_lost(self) -> None:
        if self.transcoder is not None:
            await self.transcoder.pause()

    async def publisher_resumed(self) -> None:
        self.input.reset()
        if self.transcoder is not None:
            await self.transcoder.restart(new_input=True)
        else:
            self.probe = []

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._starting is not None and not self._starting.done():
            with contextlib.suppress(Exception):
                await self._starting
        if self.transcoder is not None:
            await self.transcoder.close()
        if self.live is not None:
            self.live.end()
        if self.plan is not None:
            self.service.release(self.plan)
        self.service.sessions.discard(self)


class MediaService:
    """Node-wide media state (``platform.state["media"]``) and the ``ingest`` role's service."""

    name = "media"

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.settings = platform.settings
        self.streams: dict[str, LiveStream] = {}
        self.sessions: set[StreamSession] = set()
        self.used = 0
        # called with each stream's LiveStream as soon as it exists (before any media flows);
        # kept in platform.state so a service started before this one (the archive) can register
        self.live_listeners: list[Callable[[StreamInfo, LiveStream], None]] = platform.state.setdefault(
            "media.live_listeners", [])
        platform.state["media"] = self

    # MediaService protocol ------------------------------------------------------------------
    async def open_stream(self, info: StreamInfo) -> StreamSession:
        self._expire()
        session = StreamSession(self, info)
        self.sessions.add(session)
        metrics.live_streams.set(len(self.sessions))
        return session

    # Capacity -------------------------------------------------------------------------------
    def reserve(self, info: StreamInfo, height: int, fps: float, has_audio: bool, has_video: bool) -> LadderPlan:
        s = self.settings
        plan = plan_ladder(
            s.ladder, is_partner=info.is_partner, non_partner_names=s.non_partner_ladder,
            source_height=height, source_fps=fps, has_audio=has_audio, has_video=has_video,
            used=self.used, capacity=s.transcode_capacity,
        )
        self.used += plan.cost
        metrics.transcode_used.set(self.used)
        return plan

    def release(self, plan: LadderPlan) -> None:
        self.used = max(0, self.used - plan.cost)
        metrics.transcode_used.set(self.used)
        metrics.live_streams.set(len(self.sessions) - 1 if self.sessions else 0)

    def stream(self, login: str) -> LiveStream | None:
        self._expire()
        return self.streams.get(login.lower())

    def _expire(self) -> None:
        now = time.monotonic()
        for login, live in list(self.streams.items()):
            if live.ended and now - live.ended_at > ENDED_KEPT_S:
                del self.streams[login]

    # Service protocol -----------------------------------------------------------------------
    async def start(self) -> dict[str, int]:
        return {}

    async def stop(self) -> None:
        for session in list(self.sessions):
            with contextlib.suppress(Exception):
                await session.close()


def create_service(platform: Platform) -> MediaService:
    return MediaService(platform)


def media_of(platform: Platform) -> MediaService | None:
    media: Any = platform.state.get("media")
    return media if isinstance(media, MediaService) else None
