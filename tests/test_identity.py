"""Identity on both databases: users, stream keys, apps and tokens."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from livecast.identity import service
from livecast.identity.models import Token, User
from livecast.store.base import utcnow
from livecast.store.db import Database


async def test_migrations_reach_head(database: Database) -> None:
    revisions = await database.current_revisions()
    assert revisions and all(r for r in revisions)


async def test_user_channel_and_stream_key(database: Database) -> None:
    async with database.session() as db:
        user, key = await service.create_user(db, "Alice_1", password="correct horse")
    async with database.session() as db:
        assert (await service.user_for_stream_key(db, key)).id == user.id  # type: ignore[union-attr]
        assert await service.user_for_stream_key(db, key + "x") is None
        assert await service.user_for_stream_key(db, "") is None
        assert (await service.authenticate(db, "alice_1", "correct horse")) is not None
        assert await service.authenticate(db, "alice_1", "wrong") is None
        assert await service.authenticate(db, "nobody", "wrong") is None
        new_key = await service.reset_stream_key(db, user.id)
    async with database.session() as db:
        assert await service.user_for_stream_key(db, key) is None
        assert (await service.user_for_stream_key(db, new_key)).login == "alice_1"  # type: ignore[union-attr]
        stored = await db.get(User, user.id)
        assert stored is not None and "correct horse" not in stored.password_hash


@pytest.mark.parametrize("login", ["ab", "has space", "x" * 26, "ünï", "-dash", "dashboard", "Helix"])
async def test_bad_logins_write_nothing(database: Database, login: str) -> None:
    with pytest.raises(service.IdentityError):
        async with database.session() as db:
            await service.create_user(db, login)
    async with database.session() as db:
        assert (await db.execute(select(func.count()).select_from(User))).scalar() == 0


async def test_tokens_hashed_expire_and_revoke(database: Database) -> None:
    async with database.session() as db:
        user, _ = await service.create_user(db, "bob")
        app, secret = await service.create_app(db, "bot")
        issued = await service.issue_token(db, app.client_id, user.id, ["chat:read"], lifetime=3600)
    async with database.session() as db:
        rows = (await db.execute(select(Token))).scalars().all()
        assert all(issued.access_token not in (r.access_hash, r.refresh_hash) for r in rows)
        info = await service.validate_token(db, issued.access_token)
        assert info is not None and info.login == "bob" and info.scopes == ("chat:read",)
        assert 3590 < info.expires_in() <= 3600
        assert await service.check_client(db, app.client_id, secret) is not None
        assert await service.check_client(db, app.client_id, secret + "x") is None
        refreshed = await service.refresh_token(db, app, issued.refresh_token or "", 3600)
        assert refreshed is not None
    async with database.session() as db:
        assert await service.validate_token(db, issued.access_token) is None  # rotated
        assert await service.refresh_token(db, app, issued.refresh_token or "", 3600) is None
        assert await service.validate_token(db, refreshed.access_token) is not None
        assert await service.revoke_token(db, app.client_id, refreshed.access_token)
    async with database.session() as db:
        assert await service.validate_token(db, refreshed.access_token) is None
        expired = await service.issue_token(db, app.client_id, user.id, [], lifetime=60)
        row = (await db.execute(select(Token).order_by(Token.id.desc()))).scalars().first()
        assert row is not None
        row.expires_at = utcnow() - dt.timedelta(seconds=1)
    async with database.session() as db:
        assert await service.validate_token(db, expired.access_token) is None
