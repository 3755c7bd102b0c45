"""EventSub: subscriptions, domain events turned into notifications, webhook and WebSocket transports.

``catalog`` knows Twitch's types and conditions; ``service`` holds the rules (costs,
limits, statuses); ``dispatch`` turns bus events into notifications; ``worker`` delivers
webhooks durably; ``websocket`` serves ``/ws``; ``routes`` is the thin Helix surface.
"""
