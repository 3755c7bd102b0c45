"""One ffmpeg process per stream: FLV on stdin, one CMAF output pipe per rendition.

One process decodes the source once and encodes every rung from the same decoded frames
(``split`` in one filter graph), which is what keeps the ladder's CPU close to a hand-written
ffmpeg command. Keyframes are forced on the same timestamps in every rendition so segments
line up across the ladder and players can switch at any segment boundary.

The RTMP side must never wait on us: :meth:`Transcoder.feed` only appends whole FLV tags to
a bounded queue. When ffmpeg falls behind and the queue is full, tags are dropped (video
until the next keyframe, so the decoder never sees a broken GOP), logged and counted. When
ffmpeg dies it is restarted with the saved sequence headers, and the packager gets a new init
segment, which it turns into an EXT-X-DISCONTINUITY.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable

from livecast import metrics
from livecast.logs import event
from livecast.media.flvsource import AUDIO, SCRIPT, VIDEO, FlvError, FlvTagReader, SourceFormat, Tag
from livecast.media.ladder import LadderPlan, PlannedRendition
from livecast.protocols.mp4 import Fragment, FragmentSplitter, InitSegment, Mp4Error
from livecast.waits import until_set

log = logging.getLogger("livecast.media")

QUEUE_LIMIT = 8 * 1024 * 1024  # bytes of FLV waiting for ffmpeg: a few seconds of a fast source
READ_CHUNK = 256 * 1024
MOVFLAGS = "+frag_keyframe+empty_moov+default_base_moof+cmaf"
AAC_FRAME_US = 24_000  # 1024 samples at 44.1 kHz is 23.2 ms (21.3 ms at 48 kHz)

OnInit = Callable[[str, bytes], None]
OnFragment = Callable[[str, bytes], None]


def build_command(
    ffmpeg: str,
    plan: LadderPlan,
    fmt: SourceFormat,
    fds: list[int],
    *,
    segment_duration: float,
    part_duration: float,
) -> list[str]:
    """The ffmpeg argument list: rendition ``i`` of the plan is written to ``pipe:fds[i]``."""
    fps = round(fmt.fps) or 30
    cmd = [ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error",
           "-f", "flv", "-i", "pipe:0"]
    coded = [r for r in plan.renditions if r.transcoded]
    if coded and fmt.has_video:
        labels = [f"[s{i}]" for i in range(len(coded))]
        graph = ["[0:v]" + (f"split={len(coded)}" + "".join(labels) if len(coded) > 1 else "null" + labels[0])]
        for i, r in enumerate(coded):
            rate = f",fps={r.fps}" if r.fps and r.fps < fps else ""
            graph.append(f"[s{i}]scale=-2:{r.height}{rate}[v{i}]")
        cmd += ["-filter_complex", ";".join(graph)]
    audio = ["-c:a", "copy"] if fmt.audio_is_aac else ["-c:a", "aac", "-ac", "2"]
    for r, fd in zip(plan.renditions, fds, strict=True):
        # ffmpeg cuts a fragment at the first packet (of any track) reaching this duration, and
        # at every keyframe; at 30/60 fps and 0.5 s parts, that is exactly 15/30 frames a part
        frag_us = int(part_duration * 1_000_000)
        if r.audio_only:
            frag_us -= AAC_FRAME_US  # AAC frames do not divide 0.5 s: stop one frame short of the target
            cmd += ["-map", "0:a", "-vn", *audio]
            if not fmt.audio_is_aac:
                cmd += ["-b:a", f"{r.audio_kbps}k"]
        elif r.passthrough:
            cmd += ["-map", "0:v", "-c:v", "copy"]
        else:
            i = coded.index(r)
            gop = max(1, round((r.fps or fps) * segment_duration))
            kbps = r.video_kbps
            cmd += [
                "-map", f"[v{i}]", "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
                "-pix_fmt", "yuv420p", "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{2 * kbps}k",
                "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
                "-force_key_frames", f"expr:gte(t,n_forced*{segment_duration:g})",
            ]
        if not r.audio_only and fmt.has_audio:
            cmd += ["-map", "0:a", *audio]
            if not fmt.audio_is_aac:
                cmd += ["-b:a", f"{r.audio_kbps}k"]
        cmd += ["-f", "mp4", "-movflags", MOVFLAGS, "-frag_duration", str(frag_us), "-flush_packets", "1",
                f"pipe:{fd}"]
    return cmd


class Transcoder:
    """Owns the ffmpeg process of one stream, its input queue and its output readers."""

    def __init__(
        self,
        ffmpeg: str,
        plan: LadderPlan,
        fmt: SourceFormat,
        *,
        segment_duration: float,
        part_duration: float,
        on_init: OnInit,
        on_fragment: OnFragment,
        label: str = "",
        on_restart: Callable[[int], None] | None = None,
    ) -> None:
        self.ffmpeg = ffmpeg
        self.plan = plan
        self.fmt = fmt
        self.segment_duration = segment_duration
        self.part_duration = part_duration
        self.on_init = on_init
        self.on_fragment = on_fragment
        self.label = label
        self.on_restart = on_restart
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.dropped_bytes = 0
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._dropping_video = False
        self._need_keyframe = False
        self._headers: dict[str, bytes] = {}
        self._flv_header = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._expect_exit = False
        self._started_at = 0.0
        self._stderr: deque[str] = deque(maxlen=20)
        self._supervisor: asyncio.Task[None] | None = None
        self._restart_now = asyncio.Event()

    # Input side (never blocks) ---------------------------------------------------------------
    def set_flv_header(self, header: bytes) -> None:
        self._flv_header = header

    def push(self, tag: Tag) -> None:
        """Queue one whole FLV tag for ffmpeg, dropping instead of growing past the limit."""
        if tag.kind == SCRIPT:
            self._headers["script"] = tag.raw
        elif tag.is_sequence_header:
            self._headers["video" if tag.kind == VIDEO else "audio"] = tag.raw
        elif tag.kind == VIDEO and self._dropping_video:
            if not tag.is_video_keyframe:
                self._drop(tag)
                return
            self._dropping_video = False
        if self._queued + len(tag.raw) > QUEUE_LIMIT and not tag.is_sequence_header:
            if tag.kind == VIDEO:
                self._dropping_video = True
            self._drop(tag)
            return
        self._queue.append(tag.raw)
        self._queued += len(tag.raw)
        self._wakeup.set()

    def _drop(self, tag: Tag) -> None:
        self.dropped_bytes += len(tag.raw)
        metrics.media_dropped_bytes.inc(len(tag.raw))
        if self.dropped_bytes == len(tag.raw) or self.dropped_bytes % (1 << 20) < len(tag.raw):
            event(log, "ffmpeg is behind; dropping input", logging.WARNING, stream=self.label,
                  dropped_bytes=self.dropped_bytes)

    # Lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self._running = True
        self._supervisor = asyncio.create_task(self._supervise())

    async def restart(self, *, new_input: bool = False) -> None:
        """Start a fresh ffmpeg (publisher came back, or a manual kick): a discontinuity."""
        if new_input:
            self._queue.clear()
            self._queued = 0
        await self._stop_process()
        self._restart_now.set()

    async def pause(self) -> None:
        """Publisher gone: let ffmpeg flush what it has and exit; no restart until resumed."""
        await self._drain()
        await self._stop_process()

    async def close(self) -> None:
        await self._drain()
        self._running = False
        self._restart_now.set()
        await self._stop_process()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor

    async def _drain(self, timeout: float = 5.0) -> None:
        """Give ffmpeg the input already accepted, so the stream's last seconds are not lost."""
        deadline = time.monotonic() + timeout
        while self._queue and self.proc is not None and self.proc.returncode is None:
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.02)

    async def _supervise(self) -> None:
        backoff = 0.25
        first = True
        while self._running:
            if not first:
                self._restart_now.clear()
            await self._run_once()
            first = False
            if not self._running:
                return
            if self._expect_exit:
                await self._restart_now.wait()  # paused until resumed/closed
                self._restart_now.clear()
                backoff = 0.25
                continue
            metrics.ffmpeg_restarts.inc()
            self.restarts += 1
            if self.on_restart is not None:
                self.on_restart(self.restarts)
            event(log, "ffmpeg exited; restarting", logging.WARNING, stream=self.label,
                  rc=self.proc.returncode if self.proc else None, stderr=" | ".join(self._stderr)[-500:])
            crashed_fast = time.monotonic() - self._started_at < 10
            backoff = min(5.0, backoff * 2) if crashed_fast else 0.25
            await until_set(self._restart_now, backoff)

    async def _run_once(self) -> None:
        self._expect_exit = False
        pipes = [os.pipe() for _ in self.plan.renditions]
        cmd = build_command(self.ffmpeg, self.plan, self.fmt, [w for _, w in pipes],
                            segment_duration=self.segment_duration, part_duration=self.part_duration)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, pass_fds=[w for _, w in pipes],
            )
        except OSError as exc:
            for r, w in pipes:
                os.close(r)
                os.close(w)
            event(log, "cannot start ffmpeg", logging.ERROR, stream=self.label, error=str(exc))
            self._started_at = time.monotonic()
            await asyncio.sleep(1)
            return
        finally:
            for _, w in pipes:
                with contextlib.suppress(OSError):
                    os.close(w)
        self._started_at = time.monotonic()
        proc = self.proc
        # a fresh decoder needs the FLV header and the codec configuration before any frame
        self._need_keyframe = self.fmt.has_video
        prologue = [self._flv_header] + [self._headers[k] for k in ("script", "video", "audio") if k in self._headers]
        readers = [asyncio.create_task(self._read_output(r.name, fd)) for r, (fd, _) in
                   zip(self.plan.renditions, pipes, strict=True)]
        tasks = [asyncio.create_task(self._write_input(proc, prologue)),
                 asyncio.create_task(self._read_stderr(proc))]
        self._tasks = tasks + readers
        try:
            await proc.wait()
            await asyncio.gather(*readers, return_exceptions=True)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _stop_process(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        self._expect_exit = True
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 3)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        # let the readers deliver the last fragments before anything else happens
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # Pumps -------------------------------------------------------------------------------------
    async def _write_input(self, proc: asyncio.subprocess.Process, prologue: list[bytes]) -> None:
        stdin = proc.stdin
        assert stdin is not None
        try:
            for chunk in prologue:
                stdin.write(chunk)
            while True:
                while not self._queue:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                raw = self._queue.popleft()
                self._queued -= len(raw)
                if self._need_keyframe:
                    # a restarted decoder must begin on a keyframe; codec configuration may pass
                    kind = raw[0] & 0x1F
                    config = len(raw) > 12 and raw[12] == 0 and kind in (AUDIO, VIDEO)
                    key = kind == VIDEO and len(raw) > 12 and raw[11] >> 4 == 1 and raw[12] == 1
                    if not (config or key):
                        continue
                    if key:
                        self._need_keyframe = False
                stdin.write(raw)
                await stdin.drain()
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            return

    async def _read_output(self, name: str, fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=READ_CHUNK * 4)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
        )
        splitter = FragmentSplitter()
        try:
            while True:
                chunk = await reader.read(READ_CHUNK)
                if not chunk:
                    return
                for item in splitter.feed(chunk):
                    if isinstance(item, InitSegment):
                        self.on_init(name, item.data)
                    elif isinstance(item, Fragment):
                        self.on_fragment(name, item.data)
        except Mp4Error as exc:
            event(log, "bad ffmpeg output", logging.ERROR, stream=self.label, rendition=name, error=str(exc))
            if self.proc is not None and self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
        finally:
            transport.close()

    async def _read_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            self._stderr.append(line.decode("utf-8", "replace").rstrip())


class FlvInput:
    """Splits the publisher's byte stream into tags; a garbled stream is logged, not raised."""

    def __init__(self, label: str) -> None:
        self.reader = FlvTagReader()
        self.label = label
        self.broken = False

    def feed(self, data: bytes) -> list[Tag]:
        if self.broken:
            return []
        try:
            return self.reader.feed(data)
        except FlvError as exc:
            self.broken = True
            event(log, "publisher sent invalid FLV", logging.WARNING, stream=self.label, error=str(exc))
            return []

    def reset(self) -> None:
        self.reader.reset()
        self.broken = False




def part_target(rendition: PlannedRendition, part_duration: float, source_fps: float) -> float:
    """The PART-TARGET this rendition can honour: whole frames per part, never above it.

    ffmpeg cuts a fragment at the first frame reaching ``part_duration``, so at 25 fps a part is
    13 frames (0.52 s); the playlist must announce that, since no part may exceed the target.
    """
    if rendition.audio_only:
        return part_duration
    fps = rendition.fps or round(source_fps) or 30
    return math.ceil(part_duration * fps - 1e-6) / fps
