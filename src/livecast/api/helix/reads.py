"""Read-only queries without a transaction around them.

A Helix GET is one SELECT; through an ORM session it costs BEGIN, the SELECT and COMMIT, three
round trips to the database. In autocommit mode it is one, which is most of a cheap request's
latency on PostgreSQL.

The pool pings a connection only when it sat idle (``store.db.PING_IF_IDLE_S``), so a busy
connection that the database dropped a moment ago fails its first statement instead. A read
is safe to repeat, so that one failure is retried once, on a fresh connection: a database
restart costs a read nothing, as the per-checkout ping used to guarantee. A database that
stays down fails the retry too, and the caller gets the usual 503.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable

from livecast.platform import Platform


async def rows(platform: Platform, statement: Executable) -> list[Any]:
    try:
        return await _rows(platform, statement)
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
    return await _rows(platform, statement)


async def _rows(platform: Platform, statement: Executable) -> list[Any]:
    async with platform.db.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        result = await conn.execute(statement)
        return list(result.all())
