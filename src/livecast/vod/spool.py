"""The archive's durable spool: live segments on the ingest node's disk until storage has them.

The archive uploads segments off the live path; while object storage is down they wait. In
memory they would die with the process (a SIGTERM during an outage would turn them into gaps),
so each one is also written here, under ``<data dir>/archive-spool/<video_id>/``, and removed
once storage and the database have it. A process that starts with files here finishes their
uploads (:class:`livecast.vod.archive.Resumed`).

Layout of one video's folder, every file written atomically (temporary name, then
``os.replace``), so a reader never sees half a file:

- ``video.json``: what is needed to create or complete the video (owner, stream, reference
  rendition, the renditions' descriptions);
- ``init.<rendition>.<init_id>.mp4``: an init segment (kept until the video is done);
- ``<rendition>.<seq>.m4s``, then ``<rendition>.<seq>.json``: a segment and its sidecar. The
  sidecar is written last and removed first, so it marks a complete segment; a media file
  without one is debris from an interrupted write and is removed at scan.

Plain blocking functions: the archive calls them through :func:`asyncio.to_thread`, never on
the event loop. No ``asyncio`` here, so they are tested directly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from livecast.vod import keys

SPOOL_DIR = "archive-spool"
VIDEO_DOC = "video.json"


@dataclass(frozen=True)
class SpooledSegment:
    """A segment's sidecar: everything its ``VodSegment`` row needs besides the bytes."""

    rendition: str
    seq: int
    init_id: int
    offset: float
    duration: float
    start_at: dt.datetime
    discontinuity: bool
    size: int

    def to_json(self) -> bytes:
        doc = asdict(self)
        doc["start_at"] = self.start_at.isoformat()
        return json.dumps(doc).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> SpooledSegment:
        doc = json.loads(raw)
        return cls(
            rendition=str(doc["rendition"]), seq=int(doc["seq"]), init_id=int(doc["init_id"]),
            offset=float(doc["offset"]), duration=float(doc["duration"]),
            start_at=dt.datetime.fromisoformat(doc["start_at"]), discontinuity=bool(doc["discontinuity"]),
            size=int(doc["size"]),
        )


@dataclass
class SpooledVideo:
    video_id: str
    doc: dict[str, Any]
    segments: list[SpooledSegment]

    @property
    def nbytes(self) -> int:
        return sum(s.size for s in self.segments)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (fsynced: the spool is for surviving crashes too)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class Spool:
    """One node's spool folder. Ids and rendition names are checked before they become paths."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, video_id: str) -> Path:
        if not keys.valid_video_id(video_id):
            raise ValueError(f"not a video id: {video_id!r}")
        return self.root / video_id

    @staticmethod
    def _name(rendition: str) -> str:
        if not keys.valid_rendition(rendition):
            raise ValueError(f"not a rendition name: {rendition!r}")
        return rendition

    def write_video(self, video_id: str, doc: dict[str, Any]) -> None:
        folder = self.folder(video_id)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / VIDEO_DOC, json.dumps(doc).encode())

    def write_init(self, video_id: str, rendition: str, init_id: int, data: bytes) -> None:
        path = self.folder(video_id) / f"init.{self._name(rendition)}.{init_id}.mp4"
        if not path.exists():
            write_atomic(path, data)

    def read_init(self, video_id: str, rendition: str, init_id: int) -> bytes | None:
        try:
            return (self.folder(video_id) / f"init.{self._name(rendition)}.{init_id}.mp4").read_bytes()
        except FileNotFoundError:
            return None

    def _paths(self, video_id: str, rendition: str, seq: int) -> tuple[Path, Path]:
        """The segment's media file and its sidecar."""
        folder, stem = self.folder(video_id), f"{self._name(rendition)}.{int(seq)}"
        return folder / f"{stem}.m4s", folder / f"{stem}.json"

    def write_segment(self, video_id: str, meta: SpooledSegment, data: bytes) -> None:
        media, sidecar = self._paths(video_id, meta.rendition, meta.seq)
        write_atomic(media, data)
        write_atomic(sidecar, meta.to_json())  # last: the segment is complete

    def read_segment(self, video_id: str, rendition: str, seq: int) -> bytes:
        """The segment's bytes; FileNotFoundError if they are gone (removed by hand, say)."""
        return self._paths(video_id, rendition, seq)[0].read_bytes()

    def remove_segment(self, video_id: str, rendition: str, seq: int) -> None:
        media, sidecar = self._paths(video_id, rendition, seq)
        for path in (sidecar, media):  # the sidecar first: no sidecar, no segment
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def remove_video(self, video_id: str) -> None:
        shutil.rmtree(self.folder(video_id), ignore_errors=True)

    def scan(self) -> list[SpooledVideo]:
        """Every video with a ``video.json``, with its complete segments; debris is removed.

        A folder without ``video.json`` (its first write was interrupted) holds nothing that
        could be completed and is removed; so are unreadable sidecars (with their media) and
        media or temporary files that no sidecar vouches for.
        """
        found: list[SpooledVideo] = []
        if not self.root.is_dir():
            return found
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir() or not keys.valid_video_id(folder.name):
                continue
            try:
                doc = json.loads((folder / VIDEO_DOC).read_bytes())
                if not isinstance(doc, dict):
                    raise ValueError("not an object")
            except (OSError, ValueError):
                shutil.rmtree(folder, ignore_errors=True)
                continue
            segments: list[SpooledSegment] = []
            vouched: set[str] = set()
            for sidecar in folder.glob("*.json"):
                if sidecar.name == VIDEO_DOC:
                    continue
                try:
                    meta = SpooledSegment.from_json(sidecar.read_bytes())
                    media, expected = self._paths(folder.name, meta.rendition, meta.seq)
                    if sidecar != expected:
                        raise ValueError("sidecar does not match its name")
                    if not media.is_file():
                        raise ValueError("media missing")
                except (OSError, ValueError, KeyError, TypeError):
                    with contextlib.suppress(OSError):
                        sidecar.unlink()
                    continue
                segments.append(meta)
                vouched.add(media.name)
            for path in folder.iterdir():
                if (path.name.startswith(".") and path.name.endswith(".tmp")) or (
                        path.suffix == ".m4s" and path.name not in vouched):
                    with contextlib.suppress(OSError):
                        path.unlink()
            segments.sort(key=lambda s: (s.offset, s.rendition, s.seq))
            found.append(SpooledVideo(folder.name, doc, segments))
        return found
