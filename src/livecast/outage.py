"""Telling a backend outage from a bug.

Why one function for every role: the answer to "PostgreSQL or Redis is unreachable" is the same
everywhere (tell the client to retry: HTTP 503 + ``Retry-After``, a chat ``NOTICE``, an RTMP
``NetStream.Publish.Rejected``; keep bookkeeping best-effort), while any other exception is a
bug that must be logged with its traceback. Drivers wrap socket errors in their own exception
types, so the cause chain is walked.
"""

from __future__ import annotations

import logging
import time

_OUTAGE_ERRNOS = {104, 110, 111}  # ECONNRESET, ETIMEDOUT, ECONNREFUSED


def is_backend_outage(exc: BaseException) -> bool:
    """Database or Redis unreachable: the client should retry, not see a 500."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import DBAPIError, OperationalError

    seen: BaseException | None = exc
    for _ in range(5):  # walk a short cause chain
        if seen is None:
            return False
        if isinstance(seen, (OperationalError, RedisConnectionError, RedisTimeoutError, ConnectionRefusedError,
                             ConnectionResetError)):
            return True
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, OSError) and seen.errno in _OUTAGE_ERRNOS:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


_last_logged: dict[str, float] = {}


def outage_logged(log: logging.Logger, what: str, exc: BaseException, every_s: float = 10.0) -> None:
    """Warn that ``what`` met a backend outage, at most once per ``every_s`` per ``what``: the
    operator must see it in the log, but a storm of clients retrying must not flood it."""
    now = time.monotonic()
    if now - _last_logged.get(what, -every_s) >= every_s:
        _last_logged[what] = now
        log.warning("%s: backend unavailable: %s: %s", what, type(exc).__name__, exc)
