"""Discovery: categories, follows, viewer counts, browse, search, recommendations, notifications.

Where to look:

- ``viewers``: signed playback tokens and heartbeats counted once per session and minute
  in the bus's distinct sets (Redis HyperLogLog in scale-out).
- ``worker``: the ``worker`` role's service: writes ``Stream.viewer_count`` and analytics
  samples every 10 s, keeps the search index in sync, fans go-live notifications out.
- ``browse``: ``top_categories``, ``live_streams`` (category, languages, tags, user ids),
  ``followed_live``; keyset cursors.
- ``search``: ``search_channels`` / ``search_categories`` (typo tolerant, prefix, live first),
  ``reindex``, ``create_category``.
- ``recommend``: ``recommend`` (signed in, with reasons), ``popular_live`` (anonymous),
  incremental co-follow similarity, user blocks.
- ``notifications``: batched fan-out, the feed, per-channel preferences.
- ``analytics``: per-stream and per-day creator figures, ``admin_stats``.
- ``routes``: the small ``/api/...`` JSON endpoints for the player and the web app.

Service functions take an ``AsyncSession`` and return plain rows plus an opaque cursor; a
cursor they did not issue raises :class:`livecast.discovery.cursor.InvalidCursor` (a
``ValueError``), which HTTP layers answer with their own 400.
"""
