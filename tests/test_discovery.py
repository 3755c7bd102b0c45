"""Discovery services on SQLite and PostgreSQL: search, browse, recommendations, notifications, analytics."""

from __future__ import annotations

import datetime as dt
import json
import random
from types import SimpleNamespace

from sqlalchemy import delete, func, select, update

from livecast.bus.memory import MemoryBus
from livecast.discovery import analytics, browse, follows, notifications, recommend, search
from livecast.discovery.cursor import InvalidCursor
from livecast.discovery.models import Category, CoFollow, Notification, StreamStats
from livecast.identity.models import Channel, User
from livecast.ingest.models import Stream
from livecast.store.base import utcnow
from livecast.store.db import Database


async def make_channels(database: Database, logins: list[str], **channel: object) -> dict[str, str]:
    ids = {}
    async with database.session() as db:
        for login in logins:
            user = User(login=login, display_name=login)
            db.add(user)
            await db.flush()
            db.add(Channel(id=user.id, **channel))
            ids[login] = user.id
    return ids


async def go_live(database: Database, user_id: str, viewers: int = 0, *, category: Category | None = None,
                  language: str = "en", tags: list[str] | None = None) -> str:
    async with database.session() as db:
        row = Stream(user_id=user_id, status="live", viewer_count=viewers, language=language, tags=tags or [],
                     category_id=category.id if category else "", category_name=category.name if category else "")
        db.add(row)
        await db.flush()
        return row.id


async def test_search_is_typo_tolerant_prefix_and_live_first(database: Database) -> None:
    ids = await make_channels(database, ["shroud", "pokimane", "ninja", "ninjago", "xqcow", "summit1g", "shrimp",
                                         "lirik_tv"])
    async with database.session() as db:
        for name in ["Just Chatting", "Minecraft", "Fortnite", "Counter-Strike 2"]:
            await search.create_category(db, name, box_art_url=f"https://cdn/{{width}}x{{height}}/{name}.jpg")
        await search.reindex(db)
    await go_live(database, ids["ninjago"], 5)
    await go_live(database, ids["shrimp"], 500)
    async with database.session() as db:
        hits, _ = await search.search_channels(db, "ninja")
        assert [h.login for h in hits][:2] == ["ninjago", "ninja"]  # live first, then the exact name
        assert hits[0].is_live and not hits[1].is_live
        typo, _ = await search.search_channels(db, "shruod")  # as close to "shrimp" as to "shroud"
        assert "shroud" in [h.login for h in typo][:2]
        # A weakly similar live channel does not push the misspelled one off the top.
        misspelt, _ = await search.search_channels(db, "shrowd")
        assert [h.login for h in misspelt][:2] == ["shroud", "shrimp"]
        assert [h.login for h in (await search.search_channels(db, "lirik_"))[0]] == ["lirik_tv"]
        swapped, _ = await search.search_channels(db, "ninaj")
        assert "ninja" in [h.login for h in swapped]
        prefix, _ = await search.search_channels(db, "pok")
        assert [h.login for h in prefix] == ["pokimane"]
        live, _ = await search.search_channels(db, "ninja", live_only=True)
        assert [h.login for h in live] == ["ninjago"]
        assert (await search.search_channels(db, "zzzzqqq"))[0] == []
        cats, _ = await search.search_categories(db, "minecraf")
        assert cats[0].name == "Minecraft"
        cats, _ = await search.search_categories(db, "fortnight")
        assert cats[0].name == "Fortnite"
        cats, _ = await search.search_categories(db, "counter strike")
        assert cats[0].name == "Counter-Strike 2"

    # Renames and deletions reach the index through reindex().
    async with database.session() as db:
        await db.execute(update(User).where(User.id == ids["xqcow"]).values(login="juicer", display_name="Juicer"))
        await db.execute(delete(Category).where(Category.name == "Minecraft"))
        assert await search.reindex(db) == 2
        assert await search.reindex(db) == 0
    async with database.session() as db:
        assert [h.login for h in (await search.search_channels(db, "juicer"))[0]] == ["juicer"]
        assert (await search.search_channels(db, "xqcow"))[0] == []
        assert all(c.name != "Minecraft" for c in (await search.search_categories(db, "minecraft"))[0])


async def test_reindex_one_row_and_follow_events(database: Database) -> None:
    ids = await make_channels(database, ["newbie", "other", "fan"])
    async with database.session() as db:
        assert await search.reindex(db, only=("channel", ids["newbie"])) == 1
        assert [h.login for h in (await search.search_channels(db, "newbie"))[0]] == ["newbie"]
        assert (await search.search_channels(db, "other"))[0] == []  # not indexed yet

    bus = MemoryBus()
    sub = await bus.subscribe("event.channel.follow")
    async with database.session() as db:
        _, new = await follows.follow(db, ids["fan"], ids["newbie"], bus=bus)
        assert new
        _, again = await follows.follow(db, ids["fan"], ids["newbie"], bus=bus)
        assert not again
    async for topic, data in sub:
        assert topic == "event.channel.follow"
        event = json.loads(data)
        break
    assert {k: event[k] for k in ("user_id", "user_login", "broadcaster_user_id", "broadcaster_user_login")} == {
        "user_id": ids["fan"], "user_login": "fan", "broadcaster_user_id": ids["newbie"],
        "broadcaster_user_login": "newbie"}
    assert event["followed_at"].endswith("Z")
    assert sub.queue.empty()  # the repeated follow announced nothing
    await sub.close()


async def test_search_pagination_is_complete_and_disjoint(database: Database) -> None:
    logins = [f"gamer{i:02d}" for i in range(25)]
    await make_channels(database, logins)
    async with database.session() as db:
        await search.reindex(db)
        seen: list[str] = []
        after = None
        for _ in range(10):
            hits, after = await search.search_channels(db, "gamer", first=10, after=after)
            seen += [h.login for h in hits]
            if after is None:
                break
        assert sorted(seen) == logins and len(seen) == 25
        try:
            await search.search_channels(db, "gamer", after="not-a-cursor")
        except InvalidCursor:
            pass
        else:
            raise AssertionError("a forged cursor must be rejected")


async def test_browse_ranking_filters_and_keyset_pages(database: Database) -> None:
    ids = await make_channels(database, [f"streamer{i}" for i in range(7)] + ["viewer"])
    async with database.session() as db:
        chat = await search.create_category(db, "Just Chatting")
        game = await search.create_category(db, "Minecraft")
        await search.create_category(db, "Nobody Plays This")
    plan = [(0, 50, chat, "en", ["English"]), (1, 40, game, "de", ["Speedrun"]), (2, 40, game, "en", ["speedrun"]),
            (3, 40, game, "en", []), (4, 10, chat, "fr", []), (5, 5, game, "en", ["Chill", "Speedrun"])]
    streams = {}
    for i, viewers, cat, lang, tags in plan:
        streams[i] = await go_live(database, ids[f"streamer{i}"], viewers, category=cat, language=lang, tags=tags)
    async with database.session() as db:
        offline = Stream(user_id=ids["streamer6"], status="offline", viewer_count=999, category_id=chat.id)
        db.add(offline)

    async with database.session() as db:
        top, cur = await browse.top_categories(db, first=1)
        assert [(c.name, c.viewers, c.live_channels) for c in top] == [("Minecraft", 125, 4)]
        top2, cur2 = await browse.top_categories(db, first=1, after=cur)
        assert [(c.name, c.viewers) for c in top2] == [("Just Chatting", 60)] and cur2 is None

        pages: list[str] = []
        after = None
        while True:
            rows, after = await browse.live_streams(db, first=2, after=after)
            pages += [r.stream.id for r in rows]
            if after is None:
                break
        tied = sorted([streams[1], streams[2], streams[3]])
        assert pages == [streams[0], *tied, streams[4], streams[5]]

        rows, _ = await browse.live_streams(db, category_id=game.id, languages=["en"])
        assert [r.stream.id for r in rows] == [*sorted([streams[2], streams[3]]), streams[5]]
        rows, _ = await browse.live_streams(db, tags=["speedrun"])
        assert {r.stream.id for r in rows} == {streams[1], streams[2], streams[5]}
        rows, _ = await browse.live_streams(db, tags=["speedrun", "chill"])
        assert [r.stream.id for r in rows] == [streams[5]]

        for i in (0, 4, 6):
            await follows.follow(db, ids["viewer"], ids[f"streamer{i}"])
        live_now, _ = await browse.followed_live(db, ids["viewer"])
        assert [r.login for r in live_now] == ["streamer0", "streamer4"]  # streamer6 is offline


async def test_recommendations_on_a_generated_follow_graph(database: Database) -> None:
    rng = random.Random(7)
    communities = {name: [f"{name}{i}" for i in range(4)] for name in ("art", "chess", "speedrun")}
    fans = {name: [f"{name}fan{j:02d}" for j in range(12)] for name in communities}
    logins = [c for cs in communities.values() for c in cs] + [f for fs in fans.values() for f in fs]
    ids = await make_channels(database, [*logins, "megastar", "newcomer"])
    async with database.session() as db:
        for name, channels in communities.items():
            for fan in fans[name]:
                picks = channels[:] + (["megastar"] if rng.random() < 0.9 else [])
                rng.shuffle(picks)
                for channel in picks:
                    await follows.follow(db, ids[fan], ids[channel])
        # a few cross-community follows and an unfollow keep the counts honest
        await follows.follow(db, ids["artfan00"], ids["chess0"])
        await follows.unfollow(db, ids["artfan01"], ids["art2"])
        for channel in ("art0", "art1", "art2"):
            await follows.follow(db, ids["newcomer"], ids[channel])
    await go_live(database, ids["megastar"], 900)

    async with database.session() as db:
        recs = await recommend.recommend(db, ids["newcomer"], limit=5)
        assert recs[0].login == "art3"
        assert recs[0].reason.startswith("because you follow art")
        assert not {"art0", "art1", "art2", "newcomer"} & {r.login for r in recs}

        # Incremental co-follow counts equal a full rebuild from the follows table.
        incremental = set((await db.execute(select(CoFollow.channel_id, CoFollow.other_id, CoFollow.weight))).all())
        await recommend.rebuild(db)
        rebuilt = set((await db.execute(select(CoFollow.channel_id, CoFollow.other_id, CoFollow.weight))).all())
        assert incremental == rebuilt

        assert await recommend.block(db, ids["newcomer"], ids["art3"])
        assert "art3" not in {r.login for r in await recommend.recommend(db, ids["newcomer"], limit=5)}
        await recommend.unblock(db, ids["newcomer"], ids["art3"])
        await recommend.record_watch(db, ids["newcomer"], ids["art3"])  # watching it right now
        assert "art3" not in {r.login for r in await recommend.recommend(db, ids["newcomer"], limit=5)}

    async with database.session() as db:
        anonymous = await recommend.popular_live(db, language="en")
        assert [r.login for r in anonymous] == ["megastar"]


async def test_go_live_fan_out_respects_preferences_and_feeds(database: Database) -> None:
    fans = [f"fan{i:02d}" for i in range(12)]
    ids = await make_channels(database, ["caster", *fans])
    async with database.session() as db:
        for fan in fans:
            await follows.follow(db, ids[fan], ids["caster"])
        await notifications.set_preference(db, ids["fan00"], ids["caster"], False)
        await notifications.set_preference(db, ids["fan01"], ids["caster"], False)
        await notifications.set_preference(db, ids["fan02"], ids["caster"], True)
        assert not await notifications.preference(db, ids["fan00"], ids["caster"])
    sent = await notifications.fan_out(database.session, ids["caster"], "stream1", batch=5)
    assert sent == 10
    async with database.session() as db:
        assert (await db.execute(select(func.count()).select_from(Notification))).scalar() == 10
        muted = select(func.count()).select_from(Notification).where(Notification.user_id == ids["fan00"])
        assert (await db.execute(muted)).scalar() == 0
    await notifications.fan_out(database.session, ids["caster"], "stream2", batch=100)
    async with database.session() as db:
        items, unread, cur = await notifications.feed(db, ids["fan05"], first=1)
        assert unread == 2 and items[0].stream_id == "stream2" and items[0].channel_login == "caster"
        items2, _, cur2 = await notifications.feed(db, ids["fan05"], first=1, after=cur)
        assert items2[0].stream_id == "stream1" and cur2 is None
        assert await notifications.mark_read(db, ids["fan05"], up_to=items2[0].id) == 1
        assert (await notifications.feed(db, ids["fan05"]))[1] == 1


async def test_creator_analytics_per_stream_and_day(database: Database) -> None:
    ids = await make_channels(database, ["caster", "a", "b"])
    stream_id = await go_live(database, ids["caster"])
    async with database.session() as db:
        await db.execute(update(Stream).where(Stream.id == stream_id)
                         .values(started_at=utcnow() - dt.timedelta(minutes=5)))
        await follows.follow(db, ids["a"], ids["caster"])
    for viewers, chat in [(10, 3), (30, 0), (20, 7)]:
        async with database.session() as db:
            await analytics.record_samples(db, {stream_id: (ids["caster"], viewers)}, 10.0, {stream_id: chat})
    async with database.session() as db:
        summary = await analytics.stream_summary(db, stream_id)
        assert summary is not None
        assert (summary.average_viewers, summary.peak_viewers, summary.minutes_watched) == (20.0, 30, 10.0)
        assert (summary.new_followers, summary.chat_messages, summary.subscriptions) == (1, 10, 0)
        stats = await db.get(StreamStats, stream_id)
        assert stats is not None and stats.samples == 3
        days = await analytics.daily(db, ids["caster"])
        assert len(days) == 1 and days[0]["streams"] == 1 and days[0]["peak_viewers"] == 30
        assert days[0]["average_viewers"] == 20.0
        report = await analytics.admin_stats(db, SimpleNamespace(login="Caster", days=7), None)
        assert report["days"] == days and report["streams"][0]["peak_viewers"] == 30


async def test_concurrent_reindexes_settle_without_conflicts(database: Database) -> None:
    """Two app instances (or a sign-up beside the worker's pass) may index the same new rows at
    once: neither may fail on the other's insert, and the index ends up whole."""
    import asyncio

    ids = await make_channels(database, [f"racer{i}" for i in range(40)])

    async def one(only: tuple[str, str] | None = None) -> None:
        async with database.session() as db:
            await search.reindex(db, only=only)

    await asyncio.gather(one(), one(), one(("channel", ids["racer7"])), one())
    async with database.session() as db:
        docs = (await db.execute(select(func.count()).select_from(search.SearchDoc))).scalar_one()
        assert docs == 40
        hits, _ = await search.search_channels(db, "racer7")
        assert hits and hits[0].login == "racer7"
