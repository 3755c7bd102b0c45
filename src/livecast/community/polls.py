"""Polls: 2-5 choices for 15-1800 seconds; one free vote each, more for channel points if enabled.

Choice: every viewer's first vote is free and goes to one choice; when channel-points voting is
on, further votes cost ``channel_points_per_vote`` each and may go to any choice (they count in
both ``votes`` and ``channel_points_votes``). Spent points are not refunded when a poll ends,
as on Twitch. Votes bump ``polls.version`` under ``status = ACTIVE AND ends_at > now`` (the
row lock that orders them against ending the poll), like bets on a prediction.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.api.eventsub.catalog import timestamp
from livecast.community import points
from livecast.community.events import people, users
from livecast.community.models import (
    POLL_ACTIVE,
    POLL_ARCHIVED,
    POLL_COMPLETED,
    POLL_TERMINATED,
    Poll,
    PollBallot,
    PollChoice,
)
from livecast.community.points import CommunityError, Outbox
from livecast.store.base import utcnow

MIN_DURATION, MAX_DURATION = 15, 1800
MAX_VOTES_PER_CALL = 1000


async def create(db: AsyncSession, out: Outbox, *, channel_id: str, title: str, choices: Sequence[str],
                 duration: int, points_voting: bool = False, points_per_vote: int = 0) -> Poll:
    title = points.text(title, "title", 1, 60)
    if not 2 <= len(choices) <= 5:
        raise CommunityError("bad_choices", "A poll needs 2 to 5 choices")
    clean = [points.text(c, "Each choice's title", 1, 25) for c in choices]
    if not MIN_DURATION <= duration <= MAX_DURATION:
        raise CommunityError("bad_duration", f"duration must be {MIN_DURATION} to {MAX_DURATION} seconds")
    if points_voting and not 1 <= points_per_vote <= 1_000_000:
        raise CommunityError("bad_points", "channel_points_per_vote must be 1 to 1000000")
    await expire(db, Outbox(), channel_id=channel_id)
    if await db.scalar(select(Poll.id).where(Poll.channel_id == channel_id, Poll.status == POLL_ACTIVE)):
        raise CommunityError("already_active", "The broadcaster already has a poll that is running")
    now = utcnow()
    poll = Poll(id=str(uuid.uuid4()), channel_id=channel_id, title=title, status=POLL_ACTIVE, duration=duration,
                channel_points_voting_enabled=points_voting,
                channel_points_per_vote=points_per_vote if points_voting else 0,
                started_at=now, ends_at=now + dt.timedelta(seconds=duration))
    db.add(poll)
    await db.flush()
    for i, text in enumerate(clean):
        db.add(PollChoice(id=str(uuid.uuid4()), poll_id=poll.id, position=i, title=text, votes=0,
                          channel_points_votes=0))
    await db.flush()
    out.add("channel.poll.begin", channel_id, await event_doc(db, poll, stage="begin"))
    return poll


async def get(db: AsyncSession, poll_id: str, channel_id: str | None = None) -> Poll:
    poll = await db.get(Poll, poll_id, populate_existing=True)
    if poll is None or (channel_id is not None and poll.channel_id != channel_id):
        raise CommunityError("not_found", "The poll was not found", 404)
    return poll


async def vote(db: AsyncSession, out: Outbox, *, poll_id: str, user_id: str, choice_id: str,
               votes: int = 1, channel_id: str | None = None) -> PollBallot:
    """Cast ``votes`` votes for a choice: the first one free, the rest bought with points."""
    if not 1 <= votes <= MAX_VOTES_PER_CALL:
        raise CommunityError("bad_votes", f"Cast 1 to {MAX_VOTES_PER_CALL} votes at a time")
    taken = await db.execute(update(Poll).where(Poll.id == poll_id, Poll.status == POLL_ACTIVE,
                                                Poll.ends_at > utcnow())
                             .values(version=Poll.version + 1).execution_options(synchronize_session=False))
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        await get(db, poll_id)
        raise CommunityError("poll_closed", "The poll is no longer taking votes", 409)
    poll = await get(db, poll_id, channel_id)
    choice = await db.get(PollChoice, choice_id)
    if choice is None or choice.poll_id != poll_id:
        raise CommunityError("bad_choice", "No such choice in this poll")
    ballot = await db.get(PollBallot, (poll_id, user_id), populate_existing=True)
    paid = votes - (0 if ballot is not None else 1)
    if paid > 0:
        if not poll.channel_points_voting_enabled:
            raise CommunityError("already_voted", "You already voted in this poll" if ballot else
                                 "This poll takes one vote per viewer", 409)
        await points.debit(db, poll.channel_id, user_id, paid * int(poll.channel_points_per_vote), "vote",
                           ref=poll_id)
    if ballot is None:
        ballot = PollBallot(poll_id=poll_id, user_id=user_id, choice_id=choice_id, paid_votes=paid)
        db.add(ballot)
    else:
        ballot.paid_votes += paid
    await db.execute(update(PollChoice).where(PollChoice.id == choice_id).values(
        votes=PollChoice.votes + votes, channel_points_votes=PollChoice.channel_points_votes + paid))
    await db.flush()
    out.progress.append(("poll", poll_id))
    if paid:
        out.add("", poll.channel_id, {"type": "balance", "user_id": user_id})
    return ballot


async def end(db: AsyncSession, out: Outbox, *, channel_id: str, poll_id: str, status: str) -> Poll:
    """TERMINATED (ended early, results shown) or ARCHIVED (ended and hidden)."""
    if status not in (POLL_TERMINATED, POLL_ARCHIVED):
        raise CommunityError("bad_status", "status must be TERMINATED or ARCHIVED")
    poll = await get(db, poll_id, channel_id)
    allowed = (POLL_ACTIVE,) if status == POLL_TERMINATED else (POLL_ACTIVE, POLL_COMPLETED, POLL_TERMINATED)
    if not await _transition(db, poll, status, allowed):
        raise CommunityError("bad_status", f"A {poll.status} poll cannot become {status}")
    out.add("channel.poll.end", channel_id, await event_doc(db, poll, stage="end"))
    return poll


async def _transition(db: AsyncSession, poll: Poll, to: str, allowed: tuple[str, ...]) -> bool:
    ended = poll.ended_at if poll.status != POLL_ACTIVE else None
    done = await db.execute(update(Poll).where(Poll.id == poll.id, Poll.status.in_(allowed))
                            .values(status=to, version=Poll.version + 1, ended_at=ended or utcnow())
                            .execution_options(synchronize_session=False))
    await db.refresh(poll)
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


async def expire(db: AsyncSession, out: Outbox, *, channel_id: str | None = None,
                 now: dt.datetime | None = None) -> list[Poll]:
    """Complete the polls whose time is up (the worker's tick; reads call it too)."""
    now = now or utcnow()
    stmt = select(Poll).where(Poll.status == POLL_ACTIVE, Poll.ends_at <= now)
    if channel_id is not None:
        stmt = stmt.where(Poll.channel_id == channel_id)
    done = []
    for poll in (await db.execute(stmt.limit(100))).scalars().all():
        if await _transition(db, poll, POLL_COMPLETED, (POLL_ACTIVE,)):
            out.add("channel.poll.end", poll.channel_id, await event_doc(db, poll, stage="end"))
            done.append(poll)
    return done


async def announce_progress(db: AsyncSession, out: Outbox, poll_id: str) -> None:
    poll = await db.get(Poll, poll_id)
    if poll is not None and poll.status == POLL_ACTIVE:
        out.add("channel.poll.progress", poll.channel_id, await event_doc(db, poll, stage="progress"))


async def _choices(db: AsyncSession, poll: Poll) -> list[PollChoice]:
    stmt = select(PollChoice).where(PollChoice.poll_id == poll.id).order_by(PollChoice.position)
    return list((await db.execute(stmt.execution_options(populate_existing=True))).scalars().all())


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def helix_doc(db: AsyncSession, poll: Poll) -> dict[str, Any]:
    """The Helix ``Poll`` object."""
    owner = (await users(db, {poll.channel_id})).get(poll.channel_id)
    return {
        "id": poll.id, "broadcaster_id": poll.channel_id, "broadcaster_name": owner.display_name if owner else "",
        "broadcaster_login": owner.login if owner else "", "title": poll.title,
        "choices": [{"id": c.id, "title": c.title, "votes": int(c.votes),
                     "channel_points_votes": int(c.channel_points_votes), "bits_votes": 0}
                    for c in await _choices(db, poll)],
        "bits_voting_enabled": False, "bits_per_vote": 0,
        "channel_points_voting_enabled": poll.channel_points_voting_enabled,
        "channel_points_per_vote": int(poll.channel_points_per_vote), "status": poll.status,
        "duration": poll.duration, "started_at": _rfc3339(poll.started_at),
        "ended_at": _rfc3339(poll.ended_at) if poll.ended_at else None,
    }


async def event_doc(db: AsyncSession, poll: Poll, *, stage: str) -> dict[str, Any]:
    """EventSub ``channel.poll.<stage>`` event (begin, progress, end)."""
    owner = (await users(db, {poll.channel_id})).get(poll.channel_id)
    choices = await _choices(db, poll)
    doc: dict[str, Any] = {
        "id": poll.id, **people("broadcaster_user", owner, poll.channel_id), "title": poll.title,
        "choices": [{"id": c.id, "title": c.title} if stage == "begin" else
                    {"id": c.id, "title": c.title, "bits_votes": 0,
                     "channel_points_votes": int(c.channel_points_votes), "votes": int(c.votes)}
                    for c in choices],
        "bits_voting": {"is_enabled": False, "amount_per_vote": 0},
        "channel_points_voting": {"is_enabled": poll.channel_points_voting_enabled,
                                  "amount_per_vote": int(poll.channel_points_per_vote)},
        "started_at": timestamp(poll.started_at),
    }
    if stage == "end":
        doc["status"] = poll.status.lower()
        doc["ended_at"] = timestamp(poll.ended_at or utcnow())
    else:
        doc["ends_at"] = timestamp(poll.ends_at)
    return doc
