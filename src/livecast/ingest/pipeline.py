"""The seam between ingest and media: what the RTMP side hands the transcoder/packager.

Ingest owns the connection and the stream's lifecycle; media owns ffmpeg, packaging and the
origin. Ingest calls :meth:`MediaService.open_stream` when a stream goes live, feeds FLV
bytes, and tells the session when the publisher drops, comes back (a discontinuity), or the
stream ends (reconnect window over). The media service is ``platform.state["media"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class StreamInfo:
    stream_id: str
    user_id: str
    login: str
    broadcaster_type: str  # "" | affiliate | partner: decides the transcoding ladder
    metadata: dict[str, Any] = field(default_factory=dict)  # onMetaData from the publisher
    # Ingest health, updated by ingest (bitrate, fps, keyframe interval, codecs, resolution)
    # and by media (renditions, transcoding decision and reason). Read by the dashboard/Helix.
    health: dict[str, Any] = field(default_factory=dict)

    @property
    def is_partner(self) -> bool:
        return self.broadcaster_type == "partner"


class MediaSession(Protocol):
    def feed(self, flv: bytes) -> None:
        """FLV bytes in order: the 13-byte FLV header first, then tags. Must not block."""
        ...

    async def publisher_lost(self) -> None:
        """The publisher dropped; it may come back inside the reconnect window."""
        ...

    async def publisher_resumed(self) -> None:
        """The same stream continues (a discontinuity); the next ``feed`` starts with an FLV header."""
        ...

    async def close(self) -> None:
        """The stream is over (offline): finish playlists with EXT-X-ENDLIST, stop ffmpeg."""
        ...


class MediaService(Protocol):
    async def open_stream(self, info: StreamInfo) -> MediaSession: ...
