"""Shared fixtures: databases on SQLite and PostgreSQL, and a whole platform on free ports."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from livecast.config import Settings, load_settings
from livecast.identity import service
from livecast.platform import Platform
from livecast.server import Runner
from livecast.store.db import Database

PG_ADMIN_URL = os.environ.get("LIVECAST_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("LIVECAST_TEST_REDIS", "redis://127.0.0.1:6379/15")


async def create_pg_database() -> str:
    """A fresh, empty PostgreSQL database; a missing server fails the test (never skips)."""
    name = "livecast_test_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


async def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database URL on each backend; tests using it run twice."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    url = await create_pg_database()
    try:
        yield url
    finally:
        await drop_pg_database(url)


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    settings = load_settings({}, database_url=db_url, data_dir=str(Path("/tmp")))
    db = Database(settings.resolved_database_url)
    await db.upgrade()
    try:
        yield db
    finally:
        await db.close()


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": str(tmp_path / "var"),
        "http_port": 0,
        "rtmp_port": 0,
        "irc_port": 0,
        "reconnect_window": 5,
        "log_level": "INFO",
        # chat's sender threads (chat/sendpool.py) are off on 2 cores: the tests run them anyway
        "chat_send_threads": 3,
    }
    values.update(overrides)
    return load_settings({}, **values)


@dataclass
class Server:
    """A running platform in this event loop, on free ports."""

    runner: Runner
    platform: Platform

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.platform.ports['http']}"

    @property
    def rtmp_port(self) -> int:
        return self.platform.ports["rtmp"]

    @property
    def irc_port(self) -> int:
        return self.platform.ports["irc"]

    async def create_user(self, login: str, *, partner: bool = False, password: str | None = None,
                          scopes: list[str] | None = None) -> dict[str, Any]:
        async with self.platform.db.session() as db:
            user, key = await service.create_user(db, login, password=password,
                                                  broadcaster_type="partner" if partner else "")
            app = await service.ensure_admin_app(db)
            token = await service.issue_token(db, app.client_id, user.id,
                                              service.ALL_SCOPES if scopes is None else scopes)
        return {"user_id": user.id, "login": user.login, "stream_key": key, "token": token.access_token,
                "client_id": app.client_id}

    async def create_app(self, name: str = "test app", redirect_uris: list[str] | None = None) -> tuple[str, str]:
        async with self.platform.db.session() as db:
            app, secret = await service.create_app(db, name, redirect_uris)
        return app.client_id, secret


async def start_server(tmp_path: Path, **overrides: Any) -> Server:
    runner = Runner(make_settings(tmp_path, **overrides))
    platform = await runner.start()
    return Server(runner, platform)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = await start_server(tmp_path)
    try:
        yield srv
    finally:
        await srv.runner.stop()


@pytest.fixture
async def pg_server(tmp_path: Path) -> AsyncIterator[Server]:
    url = await create_pg_database()
    srv = await start_server(tmp_path, database_url=url)
    try:
        yield srv
    finally:
        await srv.runner.stop()
        await drop_pg_database(url)


async def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll an (async or sync) predicate until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)
