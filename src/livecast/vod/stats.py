"""Prometheus metrics of the archive and the VOD worker, in the platform's registry.

The archive's health is what an operator needs during a storage outage: how many bytes are
waiting (``archive_pending_bytes`` approaching ``LIVECAST_ARCHIVE_QUEUE_BYTES`` means gaps are
about to be recorded) and how many segments became gaps.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from livecast.metrics import REGISTRY

archive_pending_bytes = Gauge(
    "livecast_vod_archive_pending_bytes", "Segment bytes waiting for object storage on this node", registry=REGISTRY
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
