"""Discovery p99 on PostgreSQL: browse, search and recommendation queries, plus go-live fan-out.

Seeds a fresh PostgreSQL database with 100,000 channels, 10,000 live streams and 1,000,000
follows (``--quick``: 10,000 / 1,000 / 100,000) in community-shaped clusters, one of them a
channel every user follows (100,000 followers; ``--quick``: 10,000), indexes names for search
and builds co-follow similarity. Then it times each query repeatedly, in-process, against the
service functions Helix and the web app call. Baseline, in the same run on the same database:
a primary-key lookup of one user; ratios are p99 over the baseline's p99.

Fan-out: notifying the big channel's followers, timed. While it runs, the going-live path's
own work (publish ``stream.online`` and update one stream row) is timed every 10 ms; its p99
is compared with the same measured just before, which shows the fan-out does not hold it up.
Also reported: one viewer-count tick over every live stream (counts read from Redis).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench.common import percentile, table

PG_ADMIN = os.environ.get("LIVECAST_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("LIVECAST_TEST_REDIS", "redis://127.0.0.1:6379/15")
SYLLABLES = ["ka", "zu", "mi", "ro", "ten", "vex", "lor", "an", "qui", "sha", "dor", "el", "fyn", "gro", "pix",
             "nu", "tar", "os", "bli", "wen", "jax", "cro", "mo", "ry", "sto", "iv", "ple", "ux", "hal", "deg"]
TAGS = ["English", "Speedrun", "Chill", "Competitive", "Cozy", "Esports", "Retro", "NoBackseating"]
LANGS = ["en"] * 10 + ["de", "fr", "es", "pt", "ja", "ko"] * 2


def _name(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts))


def _typo(rng: random.Random, word: str) -> str:
    """One swapped pair of neighbouring letters, the commonest typing mistake."""
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 2)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


async def seed(url: str, channels: int, live: int, follows: int, categories: int) -> dict[str, Any]:
    import asyncpg

    rng = random.Random(42)
    conn = await asyncpg.connect(url)
    now = dt.datetime.now(dt.UTC)
    try:
        cats = []
        names: set[str] = set()
        while len(cats) < categories:
            name = " ".join(_name(rng, 2).capitalize() for _ in range(rng.choice((1, 2, 2, 3))))
            if name not in names:
                names.add(name)
                cats.append((str(3 * 10**11 + len(cats)), name, "https://cdn/{width}x{height}.jpg", "", now))
        await conn.copy_records_to_table("categories", records=cats,
                                         columns=["id", "name", "box_art_url", "igdb_id", "created_at"])
        logins: list[str] = []
        seen: set[str] = set()
        while len(logins) < channels:
            login = _name(rng, rng.choice((2, 3, 3, 4))) + (str(rng.randrange(100)) if rng.random() < 0.4 else "")
            if login not in seen and 3 <= len(login) <= 25:
                seen.add(login)
                logins.append(login)
        logins.append("megacaster")
        ids = [str(10**11 + i) for i in range(len(logins))]
        await conn.copy_records_to_table(
            "users", records=[(i, lg, lg, "", "", "", "", "", "", "", "", now) for i, lg in zip(ids, logins, strict=True)],
            columns=["id", "login", "display_name", "email", "password_hash", "type", "broadcaster_type",
                     "description", "profile_image_url", "offline_image_url", "color", "created_at"])
        chan_cat = [cats[min(len(cats) - 1, int(rng.paretovariate(1.2)) - 1)] for _ in ids]
        chan_lang = [rng.choice(LANGS) for _ in ids]
        await conn.copy_records_to_table(
            "channels",
            records=[(i, f"stream of {lg}", c[0], c[1], la, "[]", 0, False, "", "", now)
                     for i, lg, c, la in zip(ids, logins, chan_cat, chan_lang, strict=True)],
            columns=["id", "title", "category_id", "category_name", "language", "tags", "delay",
                     "is_branded_content", "stream_key_hash", "stream_key_prefix", "updated_at"])
        live_idx = rng.sample(range(channels), live)
        streams = []
        for n, i in enumerate(live_idx):
            tags = rng.sample(TAGS, rng.randrange(0, 3))
            viewers = min(200_000, int(rng.paretovariate(1.1) * 3) - 3)
            streams.append((str(2 * 10**11 + n), ids[i], "live", chan_cat[i][0], chan_cat[i][1], chan_lang[i],
                            _json(tags), "live", now, None, viewers, "", "[]", "{}", False))
        await conn.copy_records_to_table(
            "streams", records=streams,
            columns=["id", "user_id", "title", "category_id", "category_name", "language", "tags", "status",
                     "started_at", "ended_at", "viewer_count", "node_id", "renditions", "health", "is_mature"])
        # Follows: users (the same accounts) mostly follow inside a community of 50 channels.
        mega = ids[-1]
        community_size = 50
        per_user = max(1, (follows - channels) // channels)
        rows = []
        for u in range(channels):
            base = (u // community_size) * community_size
            chosen = {base + k for k in rng.sample(range(community_size), per_user - 2)} - {u}
            while len(chosen) < per_user:  # the rest anywhere, popular channels more likely
                pick = int(rng.paretovariate(1.0) * 10) % channels
                if pick != u:
                    chosen.add(pick)
            rows.extend((ids[u], ids[c % channels], now) for c in chosen)
        rows.extend((ids[u], mega, now) for u in range(channels))
        await conn.copy_records_to_table("follows", records=rows, columns=["user_id", "channel_id", "followed_at"])
        await conn.execute("ANALYZE")
        return {"ids": ids[:-1], "logins": logins[:-1], "categories": cats, "mega": mega, "follows": len(rows),
                "live_ids": [ids[i] for i in live_idx]}
    finally:
        await conn.close()


def _json(tags: list[str]) -> str:
    import json

    return json.dumps(tags)


async def _time(fn: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


async def main(args: list[str]) -> dict[str, Any]:
    import asyncpg
    from sqlalchemy import select, text, update

    from livecast.bus import create_bus, publish_event
    from livecast.config import load_settings
    from livecast.discovery import browse, notifications, recommend, search, viewers
    from livecast.discovery import follows as follows_service
    from livecast.discovery.worker import DiscoveryWorker
    from livecast.identity.models import User
    from livecast.ingest.models import Stream
    from livecast.platform import Platform
    from livecast.storage import create_store
    from livecast.store.db import Database

    quick = "--quick" in args
    channels, live, follows, categories = (10_000, 1_000, 100_000, 100) if quick else (100_000, 10_000, 1_000_000, 500)
    runs = 100 if quick else 300
    name = "livecast_bench_disc_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    db = Database("postgresql+asyncpg://" + url.split("://", 1)[1])
    results: dict[str, Any] = {"channels": channels, "live": live, "runs": runs}
    try:
        await db.upgrade()
        t = time.perf_counter()
        data = await seed(url, channels, live, follows, categories)
        results["follows"] = data["follows"]
        results["seed_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        async with db.session() as s:
            await search.reindex(s)
        results["search_index_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        async with db.session() as s:
            await search.reindex(s)
        results["search_reindex_noop_ms"] = round((time.perf_counter() - t) * 1000, 1)
        t = time.perf_counter()
        async with db.session() as s:
            results["co_follow_pairs"] = await recommend.rebuild(s)
        results["co_follow_rebuild_s"] = round(time.perf_counter() - t, 1)
        async with db.engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
        print(f"seeded {channels} channels, {live} live, {data['follows']} follows in {results['seed_s']} s")

        rng = random.Random(7)
        ids, logins, cats = data["ids"], data["logins"], data["categories"]
        popular_cats = [c[0] for c in cats[:20]]

        async def q(fn: Callable[[Any], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
            async def run() -> Any:
                async with db.session() as s:
                    return await fn(s)
            return run

        queries: dict[str, Callable[[], Awaitable[Any]]] = {
            "baseline: user by id": await q(lambda s: s.execute(select(User).where(User.id == rng.choice(ids)))),
            "browse: top categories": await q(lambda s: browse.top_categories(s, first=20)),
            "browse: live in category": await q(lambda s: browse.live_streams(s, category_id=rng.choice(popular_cats))),
            "browse: language+tag": await q(lambda s: browse.live_streams(s, languages=["de"], tags=["Speedrun"])),
            "browse: followed live": await q(lambda s: browse.followed_live(s, rng.choice(ids))),
            "search: channels (typo)": await q(lambda s: search.search_channels(s, _typo(rng, rng.choice(logins)))),
            "search: channels prefix": await q(lambda s: search.search_channels(s, rng.choice(logins)[:4])),
            "search: categories (typo)": await q(
                lambda s: search.search_categories(s, _typo(rng, rng.choice(cats)[1].split()[0]))),
            "recommendations": await q(lambda s: recommend.recommend(s, rng.choice(ids))),
            "follow (with co-follow update)": await q(
                lambda s: follows_service.follow(s, ids[-1 - rng.randrange(len(ids) // 2)],
                                                 ids[rng.randrange(len(ids) // 2)])),
        }
        rows = []
        base_p99 = None
        for label, fn in queries.items():
            await _time(fn, 5)  # warm caches and the pool
            samples = await _time(fn, runs)
            p50, p99 = percentile(samples, 50), percentile(samples, 99)
            base_p99 = base_p99 or p99
            rows.append({"query": label, "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
                         "x_baseline_p99": round(p99 / base_p99, 1)})
        print(table(rows))
        results["queries"] = rows

        # Search quality on this data: how often a one-typo login finds the channel on page one.
        found = 0
        trials = 100
        for _ in range(trials):
            login = rng.choice([lg for lg in logins if len(lg) >= 6])
            async with db.session() as s:
                hits, _ = await search.search_channels(s, _typo(rng, login), first=20)
            found += any(h.login == login for h in hits)
        results["typo_recall_at_20"] = found / trials

        # Fan-out to the big channel's followers while timing the going-live path.
        bus = create_bus("memory://")
        await bus.start()
        probe_stream = data["live_ids"][0]

        async def go_live_step() -> None:
            await publish_event(bus, "stream.online", {"id": probe_stream, "broadcaster_user_id": ids[0]})
            async with db.session() as s:
                await s.execute(update(Stream).where(Stream.id == probe_stream).values(title="live!"))

        before = await _time(go_live_step, 100)
        during: list[float] = []
        fan = asyncio.create_task(notifications.fan_out(db.session, data["mega"], "bench-stream"))
        t = time.perf_counter()
        while not fan.done():
            during += await _time(go_live_step, 1)
            await asyncio.sleep(0.01)
        sent = await fan
        fan_s = time.perf_counter() - t
        results["fanout"] = {
            "followers_notified": sent, "seconds": round(fan_s, 2), "per_second": round(sent / fan_s),
            "go_live_p99_ms_before": round(percentile(before, 99), 2),
            "go_live_p99_ms_during": round(percentile(during, 99), 2),
            "ratio_during_over_before": round(percentile(during, 99) / percentile(before, 99), 2),
        }
        print(table([results["fanout"]]))
        await bus.close()

        # One viewer-count tick over every live stream, counts from Redis.
        rbus = create_bus(REDIS_URL)
        await rbus.start()
        prefix = uuid.uuid4().hex[:6]
        for n, cid in enumerate(data["live_ids"]):
            for k in range(1 + n % 5):
                await viewers.heartbeat(rbus, viewers.PlaybackGrant(cid, f"{prefix}:{k}", 0))
        settings = load_settings({}, database_url=url, data_dir="/tmp/livecast-bench")
        platform = Platform(settings=settings, db=db, bus=rbus, storage=create_store("file:///tmp/livecast-bench"))
        worker = DiscoveryWorker(platform)
        t = time.perf_counter()
        counted = await worker.tick(claim=False)
        results["viewer_tick"] = {"live_streams": len(counted), "seconds": round(time.perf_counter() - t, 2)}
        print(f"viewer-count tick over {len(counted)} live streams: {results['viewer_tick']['seconds']} s")
        await rbus.close()
        return results
    finally:
        await db.close()
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
