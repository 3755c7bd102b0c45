"""Read-only queries without a transaction around them.

A Helix GET is one SELECT; through an ORM session it costs BEGIN, the SELECT and COMMIT, three
round trips to the database. In autocommit mode it is one, which is most of a cheap request's
latency on PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.sql import Executable

from livecast.platform import Platform


async def rows(platform: Platform, statement: Executable) -> list[Any]:
    async with platform.db.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        result = await conn.execute(statement)
        return list(result.all())
