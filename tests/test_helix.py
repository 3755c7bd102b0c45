"""Helix over real HTTP: envelopes, errors, scopes, pagination under inserts, rate limiting."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from livecast.discovery.follows import follow
from livecast.discovery.models import Category
from livecast.identity import service
from tests.conftest import Server, start_server
from tests.helix_support import add_stream, app_with_tokens, headers


async def test_users_channels_and_update(server: Server) -> None:
    alice = await server.create_user("alice")
    bob = await server.create_user("bob", scopes=["user:read:email"])
    h = headers(alice["client_id"], alice["token"])
    async with httpx.AsyncClient(base_url=server.http_url) as c:
        r = await c.get("/helix/users", params=[("login", "alice"), ("id", bob["user_id"])], headers=h)
        assert r.status_code == 200
        assert {u["login"] for u in r.json()["data"]} == {"alice", "bob"}
        assert int(r.headers["Ratelimit-Limit"]) == 800
        assert int(r.headers["Ratelimit-Remaining"]) < 800
        # without ids: the token's own user, with email because the token has user:read:email
        r = await c.get("/helix/users", headers=headers(bob["client_id"], bob["token"]))
        assert [u["login"] for u in r.json()["data"]] == ["bob"] and "email" in r.json()["data"][0]
        r = await c.put("/helix/users", params={"description": "hi there"}, headers=h)
        assert r.status_code == 200 and r.json()["data"][0]["description"] == "hi there"
        # bob's token lacks user:edit: Twitch answers 401 with the missing scope
        r = await c.put("/helix/users", params={"description": "x"}, headers=headers(bob["client_id"], bob["token"]))
        assert r.status_code == 401 and r.json()["message"] == "Missing scope: user:edit"

        async with server.platform.db.session() as db:
            db.add(Category(id="509658", name="Just Chatting"))
        r = await c.patch("/helix/channels", params={"broadcaster_id": alice["user_id"]}, headers=h,
                          json={"title": "Live now", "game_id": "509658", "tags": ["English", "Chill"]})
        assert r.status_code == 204, r.text
        r = await c.get("/helix/channels", params={"broadcaster_id": alice["user_id"]}, headers=h)
        chan = r.json()["data"][0]
        assert (chan["title"], chan["game_name"], chan["tags"]) == ("Live now", "Just Chatting", ["English", "Chill"])
        # someone else's channel: 401 as on Twitch; a bad game id: 400
        r = await c.patch("/helix/channels", params={"broadcaster_id": bob["user_id"]}, headers=h,
                          json={"title": "nope"})
        assert r.status_code == 401
        r = await c.patch("/helix/channels", params={"broadcaster_id": alice["user_id"]}, headers=h,
                          json={"game_id": "999"})
        assert r.status_code == 400 and "game_id" in r.json()["message"]


async def test_auth_errors(server: Server) -> None:
    alice = await server.create_user("alice")
    client_id, _secret, app_token, _ = await app_with_tokens(server, [])
    async with httpx.AsyncClient(base_url=server.http_url) as c:
        r = await c.get("/helix/users", params={"login": "alice"})
        assert r.status_code == 401 and r.json() == {"error": "Unauthorized", "status": 401,
                                                      "message": "OAuth token is missing"}
        r = await c.get("/helix/users", params={"login": "alice"}, headers=headers(alice["client_id"], "nope"))
        assert r.status_code == 401 and r.json()["message"] == "Invalid OAuth token"
        r = await c.get("/helix/users", params={"login": "alice"}, headers=headers(client_id, alice["token"]))
        assert r.status_code == 401 and "do not match" in r.json()["message"]
        # an app token where a user token is required
        r = await c.put("/helix/users", params={"description": "x"}, headers=headers(client_id, app_token))
        assert r.status_code == 401 and "user access token" in r.json()["message"]
        r = await c.get("/helix/users", headers=headers(client_id, app_token))
        assert r.status_code == 400
        r = await c.get("/helix/users", params={"login": "alice"}, headers=headers(client_id, app_token))
        assert r.status_code == 200 and r.json()["data"][0]["login"] == "alice"
        assert "email" not in r.json()["data"][0]
        h = headers(alice["client_id"], alice["token"])
        r = await c.get("/helix/streams", params={"first": "101"}, headers=h)
        assert r.status_code == 400 and r.json()["error"] == "Bad Request"
        r = await c.get("/helix/streams", params={"after": "bm90LWEtY3Vyc29y"}, headers=h)
        assert r.status_code == 400 and "cursor" in r.json()["message"]
        r = await c.get("/helix/streams", params={"user_logn": "alice"}, headers=h)
        assert r.status_code == 400 and "user_logn" in r.json()["message"]
        r = await c.get("/helix/users", params=[("id", str(i)) for i in range(101)], headers=h)
        assert r.status_code == 400
        # twurple's mock layout serves the same endpoints
        r = await c.get("/mock/users", params={"login": "alice"}, headers=h)
        assert r.status_code == 200 and r.json()["data"][0]["login"] == "alice"


async def test_streams_filters_order_and_stable_pagination(server: Server) -> None:
    users = [await server.create_user(f"streamer{i:02d}") for i in range(12)]
    h = headers(users[0]["client_id"], users[0]["token"])
    for i, u in enumerate(users[:10]):
        await add_stream(server, u["user_id"], viewers=100 - i * 5, language="de" if i % 2 else "en",
                         category_id="33" if i < 3 else "")
    async with httpx.AsyncClient(base_url=server.http_url) as c:
        r = await c.get("/helix/streams", headers=h)
        counts = [s["viewer_count"] for s in r.json()["data"]]
        assert counts == sorted(counts, reverse=True) and len(counts) == 10
        r = await c.get("/helix/streams", params={"language": "de"}, headers=h)
        assert {s["language"] for s in r.json()["data"]} == {"de"} and len(r.json()["data"]) == 5
        r = await c.get("/helix/streams", params={"game_id": "33"}, headers=h)
        assert len(r.json()["data"]) == 3
        r = await c.get("/helix/streams", params=[("user_login", "streamer01"), ("user_id", users[2]["user_id"])],
                        headers=h)
        assert {s["user_login"] for s in r.json()["data"]} == {"streamer01", "streamer02"}

        # page through 3 at a time while new streams go live in front of and behind the cursor
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, str | int] = {"first": 3}
            if cursor:
                params["after"] = cursor
            r = await c.get("/helix/streams", params=params, headers=h)
            assert r.status_code == 200
            seen += [s["user_login"] for s in r.json()["data"]]
            pages += 1
            if pages == 1:
                await add_stream(server, users[10]["user_id"], viewers=1000)  # ahead of the cursor
                await add_stream(server, users[11]["user_id"], viewers=1)  # behind it
            cursor = r.json()["pagination"].get("cursor")
            if not cursor:
                break
        assert len(seen) == len(set(seen)), "no duplicates"
        assert set(seen) >= {f"streamer{i:02d}" for i in range(10)}, "no gaps"
        assert "streamer11" in seen and "streamer10" not in seen


async def test_games_search_and_follows(server: Server) -> None:
    alice = await server.create_user("alice")
    fans = [await server.create_user(f"fan{i}") for i in range(5)]
    h = headers(alice["client_id"], alice["token"])
    async with server.platform.db.session() as db:
        db.add_all([Category(id="1", name="Chess"), Category(id="2", name="Chess Variants"),
                    Category(id="3", name="Art")])
        for fan in fans:
            await follow(db, fan["user_id"], alice["user_id"])
    await add_stream(server, alice["user_id"], viewers=50, category_id="3", category_name="Art")
    async with httpx.AsyncClient(base_url=server.http_url) as c:
        r = await c.get("/helix/games", params=[("name", "Chess"), ("id", "3")], headers=h)
        assert {g["name"] for g in r.json()["data"]} == {"Chess", "Art"}
        r = await c.get("/helix/games", headers=h)
        assert r.status_code == 400
        r = await c.get("/helix/games/top", params={"first": 1}, headers=h)
        assert r.json()["data"][0]["name"] == "Art" and r.json()["pagination"]["cursor"]
        r2 = await c.get("/helix/games/top", params={"after": r.json()["pagination"]["cursor"]}, headers=h)
        assert {g["name"] for g in r2.json()["data"]} == {"Chess", "Chess Variants"}
        r = await c.get("/helix/search/categories", params={"query": "ches"}, headers=h)
        assert [g["name"] for g in r.json()["data"]] == ["Chess", "Chess Variants"]
        r = await c.get("/helix/search/channels", params={"query": "a", "live_only": "true"}, headers=h)
        assert [ch["broadcaster_login"] for ch in r.json()["data"]] == ["alice"]
        assert r.json()["data"][0]["is_live"] is True
        r = await c.get("/helix/channels/followers", params={"broadcaster_id": alice["user_id"], "first": 2},
                        headers=h)
        body = r.json()
        assert body["total"] == 5 and len(body["data"]) == 2 and body["pagination"]["cursor"]
        logins = [f["user_login"] for f in body["data"]]
        r = await c.get("/helix/channels/followers", headers=h,
                        params={"broadcaster_id": alice["user_id"], "after": body["pagination"]["cursor"]})
        logins += [f["user_login"] for f in r.json()["data"]]
        assert sorted(logins) == [f"fan{i}" for i in range(5)]
        # someone else's token sees the count only, as on Twitch
        fh = headers(fans[0]["client_id"], fans[0]["token"])
        r = await c.get("/helix/channels/followers", params={"broadcaster_id": alice["user_id"]}, headers=fh)
        assert r.json()["total"] == 5 and r.json()["data"] == []
        r = await c.get("/helix/channels/followed", params={"user_id": fans[0]["user_id"]}, headers=fh)
        assert [f["broadcaster_login"] for f in r.json()["data"]] == ["alice"] and r.json()["total"] == 1
        r = await c.get("/helix/channels/followed", params={"user_id": alice["user_id"]}, headers=fh)
        assert r.status_code == 401


@pytest.mark.parametrize("bus", ["memory", "redis"])
async def test_rate_limit(tmp_path: Path, bus: str) -> None:
    """The bucket is per client id and lives in the bus: two processes sharing Redis share it."""
    from tests.conftest import REDIS_URL

    overrides: dict[str, object] = {"helix_rate_limit": 5}
    if bus == "redis":
        overrides["bus_url"] = REDIS_URL
    first = await start_server(tmp_path / "a", **overrides)
    second = None
    try:
        if bus == "redis":
            # a second API process on the same database and Redis
            db_url = f"sqlite:///{tmp_path / 'a' / 'var' / 'livecast.db'}"
            second = await start_server(tmp_path / "b", database_url=db_url, **overrides)
            await first.platform.bus.delete("helix:ratelimit:livecast-admin")
        alice = await first.create_user("alice")
        h = headers(alice["client_id"], alice["token"])
        urls = [first.http_url, second.http_url if second else first.http_url]
        statuses = []
        async with httpx.AsyncClient() as c:
            for i in range(7):
                r = await c.get(f"{urls[i % 2]}/helix/users", headers=h)
                statuses.append(r.status_code)
                assert "Ratelimit-Reset" in r.headers
            assert statuses[:5] == [200] * 5 and statuses[5:] == [429, 429]
            assert r.json()["status"] == 429 and r.headers["Ratelimit-Remaining"] == "0"
            # another client id has its own bucket
            async with first.platform.db.session() as db:
                app, _ = await service.create_app(db, "other")
                tok = await service.issue_token(db, app.client_id, alice["user_id"], [])
            r = await c.get(f"{first.http_url}/helix/users", headers=headers(app.client_id, tok.access_token))
            assert r.status_code == 200
    finally:
        if second is not None:
            await second.runner.stop()
        await first.runner.stop()


async def test_single_valued_parameters_appear_once(server: Server) -> None:
    alice = await server.create_user("alice")
    h = headers(alice["client_id"], alice["token"])
    async with httpx.AsyncClient(base_url=server.http_url) as c:
        r = await c.get("/helix/streams", params=[("first", "5"), ("first", "6")], headers=h)
        assert r.status_code == 400 and "first" in r.json()["message"]
        # list parameters repeat, as on Twitch
        r = await c.get("/helix/users", params=[("login", "alice"), ("login", "nobody")], headers=h)
        assert r.status_code == 200 and [u["login"] for u in r.json()["data"]] == ["alice"]


async def test_search_is_ranked_and_typo_tolerant(server: Server) -> None:
    from livecast.discovery import search as ranked

    alice = await server.create_user("alice")
    for login in ("shroud", "shroudfan", "loud"):
        await server.create_user(login)
    h = headers(alice["client_id"], alice["token"])
    async with httpx.AsyncClient(base_url=server.http_url) as c:
        # not indexed yet: the substring fallback still finds a sign-up of a moment ago
        r = await c.get("/helix/search/channels", params={"query": "shroudf"}, headers=h)
        assert [ch["broadcaster_login"] for ch in r.json()["data"]] == ["shroudfan"]
        async with server.platform.db.session() as db:
            await ranked.reindex(db)
        r = await c.get("/helix/search/channels", params={"query": "shruod"}, headers=h)  # swapped letters
        logins = [ch["broadcaster_login"] for ch in r.json()["data"]]
        assert logins[0] == "shroud" and "shroudfan" in logins
        await add_stream(server, (await server.create_user("shroud_live"))["user_id"], viewers=3)
        async with server.platform.db.session() as db:
            await ranked.reindex(db)
        r = await c.get("/helix/search/channels", params={"query": "shroud", "first": 1}, headers=h)
        assert r.json()["data"][0]["broadcaster_login"] == "shroud_live"  # live first among good matches
        page2 = await c.get("/helix/search/channels", headers=h,
                            params={"query": "shroud", "first": 1, "after": r.json()["pagination"]["cursor"]})
        assert page2.json()["data"][0]["broadcaster_login"] != "shroud_live"
        bad = await c.get("/helix/search/channels", params={"query": "x", "after": "garbage"}, headers=h)
        assert bad.status_code == 400
