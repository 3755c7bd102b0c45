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
eventsub_deliveries = Counter(
    "livecast_eventsub_webhook_deliveries_total", "EventSub webhook delivery attempts", ["outcome"], registry=REGISTRY
)
eventsub_ws_sessions = Gauge("livecast_eventsub_ws_sessions", "Open EventSub WebSocket sessions", registry=REGISTRY)
media_dropped_bytes = Counter(
    "livecast_media_dropped_bytes_total", "FLV bytes dropped because ffmpeg fell behind", registry=REGISTRY
)
media_parts = Counter("livecast_media_parts_total", "LL-HLS parts produced", ["rendition"], registry=REGISTRY)
transcode_used = Gauge("livecast_transcode_cost_used", "Transcoding capacity units in use on this node", registry=REGISTRY)
playlist_renders = Counter("livecast_playlist_renders_total", "Media playlists rendered (not served)", registry=REGISTRY)
live_viewers = Gauge("livecast_live_viewers", "Distinct viewers across live streams (last count)", registry=REGISTRY)
viewer_heartbeats = Counter("livecast_viewer_heartbeats_total", "Player heartbeats accepted", registry=REGISTRY)
notifications_sent = Counter("livecast_notifications_sent_total", "Go-live notifications written", registry=REGISTRY)
notification_fanout_seconds = Histogram(
    "livecast_notification_fanout_seconds", "Time to notify all followers of a channel going live", registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
errors = Counter("livecast_errors_total", "Errors by component", ["component"], registry=REGISTRY)


def render() -> bytes:
    return generate_latest(REGISTRY)
subscription_charges = Counter(
    "livecast_subscription_charges_total", "Subscription payments recorded, by kind", ["kind"], registry=REGISTRY
)
provider_events = Counter(
    "livecast_payment_provider_events_total", "Payment webhook events by outcome", ["provider", "status"],
    registry=REGISTRY,
)
oauth_tokens_issued = Counter(
    "livecast_oauth_tokens_issued_total", "OAuth2 tokens issued, by grant type", ["grant"], registry=REGISTRY
)
oauth_refusals = Counter(
    "livecast_oauth_refusals_total", "OAuth2 token requests refused, by reason", ["reason"], registry=REGISTRY
)
web_logins = Counter("livecast_web_logins_total", "Web sign-in attempts, by outcome", ["outcome"], registry=REGISTRY)
web_chat_tokens = Counter(
    "livecast_web_chat_tokens_total", "Short-lived chat tokens issued to signed-in browsers", registry=REGISTRY
)
web_page_renders = Counter("livecast_web_page_renders_total", "Web pages rendered", ["template"], registry=REGISTRY)
