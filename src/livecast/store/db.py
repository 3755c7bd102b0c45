"""The async engine, sessions, and Alembic upgrades on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger("livecast.store")

MIGRATIONS = Path(__file__).parent / "migrations"


def upsert_insert(db: AsyncSession | str) -> Any:
    """The ``insert`` of the session's dialect (or the dialect named), the one with
    ``on_conflict_do_nothing``/``on_conflict_do_update``: both backends speak ``ON CONFLICT``,
    but SQLAlchemy builds it only from the dialect's own construct."""
    name = db if isinstance(db, str) else db.get_bind().dialect.name
    return postgresql.insert if name == "postgresql" else sqlite.insert


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


# A pooled connection is pinged before use only when it sat unused for longer than this.
# SQLAlchemy's ``pool_pre_ping`` pings on *every* checkout, and on asyncpg its ping is
# BEGIN, ``;``, ROLLBACK: three round trips in front of a one-query Helix read, most of
# that request's database time. A connection that answered a query a moment ago is alive;
# one that sat idle is where a database restart or an idle timeout hides. A connection that
# dies between two busy uses fails its next statement instead, which invalidates the pool
# (SQLAlchemy's disconnect handling), and read-only callers retry once (``reads.rows``).
PING_IF_IDLE_S = 1.0
_IDLE_SINCE = "livecast.idle_since"


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """Install the idle-only pre-ping (see :data:`PING_IF_IDLE_S`) on ``engine``'s pool."""
    dialect = engine.dialect

    def checkin(dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    def checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or time.monotonic() - since <= PING_IF_IDLE_S:
            return  # fresh from connect(), or busy a moment ago
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as err:
            if dialect.is_disconnect(err, dbapi_conn, None):
                # The server restarted or the network broke: every pooled connection is
                # suspect. The pool retries this checkout on a new connection.
                raise exc.InvalidatePoolError() from err
            raise

    event.listen(engine.sync_engine, "checkin", checkin)
    event.listen(engine.sync_engine, "checkout", checkout)


class Database:
    """One engine per process; ``session()`` gives a unit of work that commits on success."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        kwargs: dict[str, Any] = {"echo": echo}
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs.update(pool_size=20, max_overflow=10)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            _ping_idle_connections(self.engine)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def upgrade(self, revision: str = "heads") -> None:
        """Apply Alembic migrations up to ``revision`` (all heads by default)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_run_upgrade, revision)

    async def current_revisions(self) -> set[str]:
        async with self.engine.connect() as conn:
            return await conn.run_sync(_current)

    async def close(self) -> None:
        await self.engine.dispose()


def alembic_config(connection: Connection | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _run_upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), revision)


def _current(connection: Connection) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    return set(MigrationContext.configure(connection).get_current_heads())


def run(coro: Any) -> Any:
    return asyncio.run(coro)
