"""Search channels and categories by name: prefix and typo tolerant, live channels first
(among good matches, then among the rest).

Names are copied into ``search_docs`` (lowercased) by :func:`reindex`, an explicit call:
the discovery worker makes it every 30 seconds (a no-op pass over 100,000 channels costs
~0.4 s on PostgreSQL), and ``reindex(db, only=(kind, id))`` indexes one row at once, as
:func:`create_category` does. It compares the stored name with the source row, so renames
and deletions are picked up too.
PostgreSQL matches with ``pg_trgm`` (``%``, ``<%`` and ``LIKE`` through one GIN index);
SQLite matches on the ``search_grams`` postings with the same trigrams pg_trgm extracts and
ranks by the share of the query's trigrams a name contains.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, and_, case, delete, func, insert, literal, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.discovery import cursor
from livecast.discovery.models import Category, SearchDoc, SearchGram
from livecast.identity.models import Channel, User
from livecast.ingest.models import Stream
from livecast.store.db import upsert_insert

LIVE = ("live", "reconnecting")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
BATCH = 5000
SIMILARITY = 0.2
CANDIDATES = 200  # best-matching names considered per page (plus the offset)
WORD_SIMILARITY = 0.4
WORD_MATCH_MIN = 5
WHOLE_NAME_WEIGHT = 0.3
GOOD_MATCH = 0.5  # a prefix match, or half the trigrams in common


def normalize(text: str) -> str:
    return " ".join(_WORD.findall(text.casefold()))


def trigrams(text: str) -> set[str]:
    """pg_trgm's trigrams: each word padded with two spaces in front and one behind."""
    grams: set[str] = set()
    for word in _WORD.findall(text.casefold()):
        padded = f"  {word} "
        grams.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return grams


@dataclass(frozen=True)
class ChannelHit:
    user_id: str
    login: str
    display_name: str
    title: str
    language: str
    tags: list[str]
    category_id: str
    category_name: str
    profile_image_url: str
    is_live: bool
    stream_id: str | None
    started_at: Any
    viewer_count: int
    score: float


@dataclass(frozen=True)
class CategoryHit:
    id: str
    name: str
    box_art_url: str
    igdb_id: str
    score: float


def _channel_name_expr() -> Any:
    display = func.lower(User.display_name)
    return case((display == User.login, User.login), else_=User.login + literal(" ") + display)


async def reindex(db: AsyncSession, *, only: tuple[str, str] | None = None) -> int:
    """Bring ``search_docs`` up to date with users and categories; returns the docs changed.

    ``only=("channel", user_id)`` or ``("category", id)`` indexes one row now (a sign-up or a
    new category need not wait for the worker's next pass).
    """
    changed = 0
    sqlite = db.get_bind().dialect.name == "sqlite"
    sources: list[tuple[str, Any, Any, Any]] = [
        ("channel", User.id, _channel_name_expr(), select(User.id).join(Channel, Channel.id == User.id)),
        ("category", Category.id, func.lower(Category.name), select(Category.id)),
    ]
    if only is not None:
        sources = [src for src in sources if src[0] == only[0]]
    for kind, ref, name, _ in sources:
        while True:
            doc = SearchDoc.__table__.alias("d")
            base = select(ref, name.label("name"), doc.c.id)
            base = base.join(Channel, Channel.id == User.id) if kind == "channel" else base
            stmt = base.outerjoin(doc, and_(doc.c.kind == kind, doc.c.ref_id == ref)).where(
                or_(doc.c.id.is_(None), doc.c.name != name)
            ).limit(BATCH)
            if only is not None:
                stmt = stmt.where(ref == only[1])
            rows = (await db.execute(stmt)).all()
            if not rows:
                break
            # Store the SQL-computed name so the comparison above settles; trigrams() and pg_trgm
            # both look at words only, so punctuation left in it does not matter.
            fresh = [{"kind": kind, "ref_id": r[0], "name": r[1]} for r in rows if r[2] is None]
            stale = [{"doc_id": r[2], "new_name": r[1]} for r in rows if r[2] is not None]
            if fresh:
                # another instance (or a sign-up's own reindex) may be adding the same rows now:
                # whoever comes second updates the name instead of failing on the unique key
                await db.execute(_upsert(db, fresh))
            if stale:
                for item in stale:
                    await db.execute(update(SearchDoc).where(SearchDoc.id == item["doc_id"]).values(name=item["new_name"]))
            if sqlite:
                ids = [r[0] for r in rows]
                docs = (
                    await db.execute(
                        select(SearchDoc.id, SearchDoc.name).where(SearchDoc.kind == kind, SearchDoc.ref_id.in_(ids))
                    )
                ).all()
                await db.execute(delete(SearchGram).where(SearchGram.doc_id.in_([d[0] for d in docs])))
                grams = [{"gram": g, "doc_id": d[0]} for d in docs for g in trigrams(d[1])]
                if grams:
                    await db.execute(insert(SearchGram), grams)
            changed += len(rows)
            await db.flush()
    for kind, _ref, _, exists in sources if only is None else []:
        gone = select(SearchDoc.id).where(SearchDoc.kind == kind, SearchDoc.ref_id.not_in(exists.scalar_subquery()))
        gone_ids = list((await db.execute(gone)).scalars())
        if gone_ids:
            await db.execute(delete(SearchGram).where(SearchGram.doc_id.in_(gone_ids)))
            await db.execute(delete(SearchDoc).where(SearchDoc.id.in_(gone_ids)))
            changed += len(gone_ids)
    return changed


def _upsert(db: AsyncSession, rows: list[dict[str, Any]]) -> Any:
    stmt = upsert_insert(db)(SearchDoc).values(rows)
    return stmt.on_conflict_do_update(index_elements=["kind", "ref_id"], set_={"name": stmt.excluded.name})


def _match(db: AsyncSession, kind: str, query: str, cap: int) -> Any:
    """A subquery of (ref_id, score, good): the ``cap`` docs of ``kind`` that best match ``query``.

    ``good`` marks a prefix match or one sharing at least half the query's trigrams, the
    matches "live first" applies to before the weaker ones. Capping before joining streams
    keeps a short, common query from sorting thousands of weak matches.
    """
    q = normalize(query)
    raw = " ".join(query.casefold().split())  # the prefix keeps underscores: logins have them
    prefix = raw.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    prefixed = SearchDoc.name.like(prefix, escape="\\")
    if db.get_bind().dialect.name == "postgresql":
        matchers = [prefixed, SearchDoc.name.op("%")(q)]
        if len(q) >= WORD_MATCH_MIN:
            # A short query's trigrams start half the names in the index; whole-word
            # similarity only pays off once the query is long enough to be selective.
            matchers.append(literal(q, String).op("<%")(SearchDoc.name))
        whole = func.similarity(SearchDoc.name, q)
        base = func.greatest(whole, func.word_similarity(q, SearchDoc.name))
        # Word similarity finds the query inside a longer name; whole-name similarity breaks
        # its many ties in favour of the name the user most likely meant.
        score = base + WHOLE_NAME_WEIGHT * whole + case((prefixed, 1.0), else_=0.0)
        good = case((or_(prefixed, base >= GOOD_MATCH), 1), else_=0)
        return (
            select(SearchDoc.ref_id.label("ref_id"), score.label("score"), good.label("good"))
            .where(SearchDoc.kind == kind)
            .where(or_(*matchers))
            .order_by(score.desc())
            .limit(cap)
            .subquery()
        )
    grams = sorted(trigrams(q))
    need = max(1, math.ceil(len(grams) * 0.4))
    hits = (
        select(SearchGram.doc_id, func.count().label("hits"))
        .where(SearchGram.gram.in_(grams))
        .group_by(SearchGram.doc_id)
        .having(func.count() >= need)
        .subquery()
    )
    share = hits.c.hits * 1.0 / max(1, len(grams))
    by_grams = select(
        SearchDoc.ref_id.label("ref_id"),
        (share + case((prefixed, 1.0), else_=0.0)).label("score"),
        case((or_(prefixed, share >= GOOD_MATCH), 1), else_=0).label("good"),
    ).join(hits, hits.c.doc_id == SearchDoc.id).where(SearchDoc.kind == kind)
    # Queries shorter than a trigram's worth still match by prefix.
    by_prefix = select(
        SearchDoc.ref_id.label("ref_id"), literal(1.0).label("score"), literal(1).label("good")
    ).where(SearchDoc.kind == kind, prefixed)
    union = by_grams.union_all(by_prefix).subquery()
    best = func.max(union.c.score)
    return (
        select(union.c.ref_id, best.label("score"), func.max(union.c.good).label("good"))
        .group_by(union.c.ref_id)
        .order_by(best.desc())
        .limit(cap)
        .subquery()
    )


async def _thresholds(db: AsyncSession, query: str) -> None:
    """pg_trgm's defaults (0.3, 0.6) miss a swapped pair of letters in a short name such as
    "shruod"; these match SQLite's 40 % of trigrams. A query shorter than five characters
    keeps the default similarity: at 0.2 its few trigrams would match a tenth of all names.
    Transaction-local, so nothing else sees it."""
    if db.get_bind().dialect.name == "postgresql":
        similarity = SIMILARITY if len(normalize(query)) >= WORD_MATCH_MIN else 0.3
        await db.execute(
            text(
                "SELECT set_config('pg_trgm.similarity_threshold', :s, true),"
                " set_config('pg_trgm.word_similarity_threshold', :w, true)"
            ),
            {"s": str(similarity), "w": str(WORD_SIMILARITY)},
        )


def _page(after: str | None) -> int:
    if not after:
        return 0
    (offset,) = cursor.decode(after, (int,))
    if offset < 0:
        raise cursor.InvalidCursor("negative offset")
    return int(offset)


async def search_channels(
    db: AsyncSession, query: str, *, live_only: bool = False, first: int = 20, after: str | None = None
) -> tuple[list[ChannelHit], str | None]:
    """Channels whose login or display name resembles ``query``: live ones first, then by relevance."""
    if not normalize(query):
        return [], None
    offset = _page(after)
    await _thresholds(db, query)
    matched = _match(db, "channel", query, CANDIDATES + offset)
    is_live = case((Stream.id.is_not(None), 1), else_=0)
    stmt = (
        select(User, Channel, Stream, matched.c.score)
        .join(matched, matched.c.ref_id == User.id)
        .join(Channel, Channel.id == User.id)
        .outerjoin(Stream, and_(Stream.user_id == User.id, Stream.status.in_(LIVE)))
    )
    if live_only:
        stmt = stmt.where(Stream.id.is_not(None))
    # Live first among good matches, then live first among the rest: a barely similar live
    # channel must not push the channel the user misspelled off the first page.
    stmt = stmt.order_by(
        matched.c.good.desc(), is_live.desc(), matched.c.score.desc(), func.coalesce(Stream.viewer_count, 0).desc(),
        func.length(User.login), User.id,
    ).offset(offset).limit(first + 1)
    rows = (await db.execute(stmt)).all()
    hits = [
        ChannelHit(
            user_id=u.id, login=u.login, display_name=u.display_name, title=c.title, language=c.language,
            tags=list(c.tags or []), category_id=c.category_id, category_name=c.category_name,
            profile_image_url=u.profile_image_url, is_live=s is not None, stream_id=s.id if s else None,
            started_at=s.started_at if s else None, viewer_count=s.viewer_count if s else 0, score=float(score),
        )
        for u, c, s, score in rows[:first]
    ]
    return hits, cursor.encode(offset + first) if len(rows) > first else None


async def search_categories(
    db: AsyncSession, query: str, *, first: int = 20, after: str | None = None
) -> tuple[list[CategoryHit], str | None]:
    if not normalize(query):
        return [], None
    offset = _page(after)
    await _thresholds(db, query)
    matched = _match(db, "category", query, CANDIDATES + offset)
    stmt = (
        select(Category, matched.c.score)
        .join(matched, matched.c.ref_id == Category.id)
        .order_by(matched.c.score.desc(), func.length(Category.name), Category.id)
        .offset(offset)
        .limit(first + 1)
    )
    rows = (await db.execute(stmt)).all()
    hits = [CategoryHit(c.id, c.name, c.box_art_url, c.igdb_id, float(score)) for c, score in rows[:first]]
    return hits, cursor.encode(offset + first) if len(rows) > first else None


async def create_category(
    db: AsyncSession, name: str, *, box_art_url: str = "", igdb_id: str = "", id: str | None = None
) -> Category:
    """Staff create categories; Twitch's box art template keeps ``{width}x{height}``."""
    row = Category(name=name, box_art_url=box_art_url, igdb_id=igdb_id)
    if id:
        row.id = id
    db.add(row)
    await db.flush()
    await reindex(db, only=("category", row.id))
    return row
