"""Prometheus metrics of the archive and the VOD worker, in the platform's registry.

The archive's health is what an operator needs during a storage outage: how much is waiting
on disk (``archive_spool_bytes`` approaching ``LIVECAST_ARCHIVE_SPOOL_BYTES`` means gaps are
about to be recorded; after a restart it falls as the spool is uploaded), how much is only in
memory (``archive_pending_bytes``: grows only while the spool cannot be written, and is bounded
by ``LIVECAST_ARCHIVE_QUEUE_BYTES``), and how many segments became gaps.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from livecast.metrics import REGISTRY

archive_pending_bytes = Gauge(
    "livecast_vod_archive_pending_bytes", "Segment bytes waiting for object storage in this node's memory", registry=REGISTRY
)
archive_spool_bytes = Gauge(
    "livecast_vod_archive_spool_bytes", "Segment bytes in this node's archive spool, waiting for object storage",
    registry=REGISTRY,
)
archive_spool_segments = Gauge(
    "livecast_vod_archive_spool_segments", "Segments in this node's archive spool, waiting for object storage",
    registry=REGISTRY,
)
archive_segments = Counter(
    "livecast_vod_archive_segments_total", "Archived segments, by outcome (stored, gap)", ["outcome"],
    registry=REGISTRY,
)
jobs_done = Counter(
    "livecast_vod_jobs_total", "VOD worker jobs, by kind and outcome", ["kind", "outcome"], registry=REGISTRY
)
job_seconds = Histogram(
    "livecast_vod_job_seconds", "Time a VOD worker job ran (a clip: fetch, cut, upload)", ["kind"], registry=REGISTRY,
    buckets=(0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300),
)
