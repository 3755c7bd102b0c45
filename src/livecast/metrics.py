"""Prometheus metrics shared by every role; each module registers its own here by name."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

http_requests = Counter(
    "livecast_http_requests_total", "HTTP requests served", ["route", "status"], registry=REGISTRY
)
http_latency = Histogram(
    "livecast_http_request_seconds", "HTTP request latency", ["route"], registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
live_streams = Gauge("livecast_live_streams", "Streams currently live on this node", registry=REGISTRY)
chat_connections = Gauge("livecast_chat_connections", "Open chat connections", ["transport"], registry=REGISTRY)
chat_messages = Counter("livecast_chat_messages_total", "Chat messages accepted", registry=REGISTRY)
chat_deliveries = Counter("livecast_chat_deliveries_total", "Chat lines written to connections", registry=REGISTRY)
chat_slow_disconnects = Counter(
    "livecast_chat_slow_consumer_disconnects_total", "Chat connections dropped for not reading", registry=REGISTRY
)
rtmp_connections = Gauge("livecast_rtmp_connections", "Open RTMP connections", registry=REGISTRY)
rtmp_bytes = Counter("livecast_rtmp_bytes_total", "Bytes received over RTMP", registry=REGISTRY)
ffmpeg_restarts = Counter("livecast_ffmpeg_restarts_total", "Transcoder restarts after a crash", registry=REGISTRY)
errors = Counter("livecast_errors_total", "Errors by component", ["component"], registry=REGISTRY)


def render() -> bytes:
    return generate_latest(REGISTRY)
