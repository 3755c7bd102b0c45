"""Ingest health of one stream: what a creator's dashboard shows about their encoder's output.

Measured from what arrives, not from what onMetaData claims (OBS reports its *settings*):
bitrate over a sliding window of wall-clock time, frame rate and keyframe interval from the
video timestamps, codecs and resolution from the sequence headers. Pure: the caller passes
the clock, so it is testable without sleeping.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from livecast.protocols import flv

BITRATE_WINDOW_S = 5.0
FPS_WINDOW_MS = 2000


class HealthTracker:
    def __init__(self) -> None:
        self._bytes: deque[tuple[float, int]] = deque()
        self._bytes_sum = 0
        self._first_seen: float | None = None
        self._frames: deque[int] = deque()
        self._last_key: int | None = None
        self.keyframe_interval: float | None = None
        self.video: flv.VideoConfig | None = None
        self.audio: flv.AudioConfig | None = None
        self.audio_format = ""
        self.frames = 0

    def reset_timeline(self) -> None:
        """After a reconnect, timestamps restart: forget the ones seen."""
        self._frames.clear()
        self._last_key = None

    def bytes_in(self, count: int, now: float) -> None:
        if self._first_seen is None:
            self._first_seen = now
        self._bytes.append((now, count))
        self._bytes_sum += count
        limit = now - BITRATE_WINDOW_S
        while self._bytes and self._bytes[0][0] < limit:
            self._bytes_sum -= self._bytes.popleft()[1]

    def video_tag(self, timestamp: int, body: bytes) -> None:
        if flv.is_avc_sequence_header(body):
            try:
                self.video = flv.parse_avc_config(body)
            except (flv.FLVError, IndexError):
                self.video = None
            return
        if len(body) < 2 or ((body[0] & 0x0F) == 7 and body[1] != 1):
            return  # not a frame: AVC end-of-sequence (ffmpeg writes one, flagged key) or junk
        self.frames += 1
        frames = self._frames
        if frames and timestamp < frames[-1] - 1000:  # timeline restarted
            frames.clear()
            self._last_key = None
        frames.append(timestamp)
        while len(frames) > 2 and frames[-1] - frames[0] > FPS_WINDOW_MS:
            frames.popleft()
        if flv.is_video_keyframe(body):
            if self._last_key is not None and timestamp > self._last_key:
                self.keyframe_interval = (timestamp - self._last_key) / 1000
            self._last_key = timestamp

    def audio_tag(self, body: bytes) -> None:
        if not body:
            return
        self.audio_format = flv.AUDIO_FORMATS.get(body[0] >> 4, f"flv-audio-{body[0] >> 4}")
        if flv.is_aac_sequence_header(body):
            try:
                self.audio = flv.parse_aac_config(body)
            except (flv.FLVError, IndexError):
                self.audio = None

    def bitrate_kbps(self, now: float) -> float:
        if self._first_seen is None:
            return 0.0
        span = min(BITRATE_WINDOW_S, max(now - self._first_seen, 0.5))
        recent = sum(n for t, n in self._bytes if t >= now - span)
        return recent * 8 / 1000 / span

    def fps(self) -> float | None:
        frames = self._frames
        if len(frames) < 2 or frames[-1] <= frames[0]:
            return None
        return (len(frames) - 1) * 1000 / (frames[-1] - frames[0])

    def snapshot(self, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {"bitrate_kbps": round(self.bitrate_kbps(now), 1)}
        fps = self.fps()
        if fps is not None:
            out["fps"] = round(fps, 2)
        if self.keyframe_interval is not None:
            out["keyframe_interval"] = round(self.keyframe_interval, 3)
        if self.video is not None:
            out["video_codec"] = self.video.codec
            out["width"], out["height"] = self.video.width, self.video.height
            out["resolution"] = f"{self.video.width}x{self.video.height}"
        if self.audio is not None:
            out["audio_codec"] = self.audio.codec
            out["audio_sample_rate"] = self.audio.sample_rate
            out["audio_channels"] = self.audio.channels
        elif self.audio_format:
            out["audio_codec"] = self.audio_format
        return out
