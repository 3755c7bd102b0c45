"""HTTP for community features: Helix (mounted here), and the web app's JSON and live stream.

Twitch has no Helix endpoint for a viewer to redeem, bet or vote (its own site uses a private
API), so the channel page talks to ``/api/community/{login}/...`` with the web session and its
CSRF token; the dashboard's controls use ``/api/community/{login}/manage/...``, open only to
the channel's owner. ``GET /api/community/{login}/events`` is a server-sent events stream of
the channel's ``community.<id>`` bus topic (fanned out by :mod:`live`), which keeps the widgets live.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.app import error_response
from livecast.community import live, points, polls, predictions, rewards, widgets
from livecast.community.models import PollBallot, PredictionBet
from livecast.community.points import CommunityError, Outbox
from livecast.identity.models import User
from livecast.platform import Platform

KEEPALIVE_S = 15.0


async def _channel(platform: Platform, login: str) -> User:
    async with platform.db.session() as db:
        user = (await db.execute(select(User).where(User.login == login.lower()[:25]))).scalar_one_or_none()
    if user is None:
        raise CommunityError("not_found", "No such channel", 404)
    return user


async def _body(request: Request) -> dict[str, Any]:
    try:
        doc = json.loads(await request.body() or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise CommunityError("bad_json", "The body must be a JSON object") from None
    if not isinstance(doc, dict):
        raise CommunityError("bad_json", "The body must be a JSON object")
    return doc


async def _signed_in(request: Request, doc: dict[str, Any]) -> User:
    from livecast.web.session import check_csrf, current_user

    user = await current_user(request)
    if user is None:
        raise CommunityError("login_required", "Sign in first", 401)
    submitted = request.headers.get("x-csrf-token", "") or str(doc.get("csrf", ""))
    if not await check_csrf(request, submitted):
        raise CommunityError("csrf", "Missing or wrong CSRF token", 403)
    return user


def _refusal(exc: CommunityError) -> Response:
    return JSONResponse({"error": exc.code, "status": exc.status, "message": exc.message}, status_code=exc.status)


ViewerRead = Callable[[Platform, User, User | None], Awaitable[dict[str, Any]]]
"""One of the widgets' reads (:func:`state`, :func:`mine`): a channel and its viewer, or None when signed out."""


async def _viewer_doc(platform: Platform, login: str, request: Request, read: ViewerRead) -> Response:
    """*read* for the channel in the URL and the session's viewer, or the JSON refusal of an unknown channel."""
    from livecast.web.session import current_user

    try:
        channel = await _channel(platform, login)
    except CommunityError as exc:
        return _refusal(exc)
    return JSONResponse(await read(platform, channel, await current_user(request)))


def _int(doc: dict[str, Any], name: str, default: int | None = None) -> int:
    value = doc.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CommunityError("bad_field", f"{name} must be an integer")
    return value


def _str(doc: dict[str, Any], name: str, default: str | None = None) -> str:
    value = doc.get(name, default)
    if not isinstance(value, str):
        raise CommunityError("bad_field", f"{name} must be a string")
    return value


async def state(platform: Platform, channel: User, viewer: User | None) -> dict[str, Any]:
    """Everything the channel page's widgets show, for one viewer (the page's first load)."""
    await points.run(platform, lambda db, out: _expire(db, out, channel.id))
    async with platform.db.session() as db:
        doc = await widgets.public(db, channel.id)
        pred, poll = doc["prediction"], doc["poll"]
        doc.update(await widgets.personal(db, channel.id, viewer.id if viewer else None,
                                          pred["id"] if pred else None, poll["id"] if poll else None))
    return doc


async def mine(platform: Platform, channel: User, viewer: User | None) -> dict[str, Any]:
    """Only the viewer's own part: what a page refetches when its balance or stake changed."""
    async with platform.db.session() as db:
        pred_id, poll_id = await widgets.latest_ids(db, channel.id)
        return await widgets.personal(db, channel.id, viewer.id if viewer else None, pred_id, poll_id)


async def _expire(db: AsyncSession, out: Outbox, channel_id: str) -> None:
    await predictions.expire(db, out, channel_id=channel_id)
    await polls.expire(db, out, channel_id=channel_id)


async def manage(platform: Platform, channel: User, action: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The dashboard's controls: the same service functions Helix calls, by the owner's session."""

    async def apply(db: AsyncSession, out: Outbox) -> dict[str, Any]:
        cid = channel.id
        if action == "reward":
            reward = await rewards.create(db, channel_id=cid, client_id="", body=doc, out=out)
            return {"reward": await rewards.helix_doc(db, reward)}
        if action == "reward-delete":
            await rewards.delete(db, out, await rewards.get(db, _str(doc, "id"), cid))
            return {}
        if action == "redemption":
            reward = await rewards.get(db, _str(doc, "reward_id"), cid)
            changed = await rewards.set_status(db, out, reward, [_str(doc, "id")], _str(doc, "status"))
            return {"redemptions": await rewards.redemption_docs(db, reward, changed)}
        if action == "prediction":
            outcomes = doc.get("outcomes")
            if not isinstance(outcomes, list) or not all(isinstance(o, str) for o in outcomes):
                raise CommunityError("bad_field", "outcomes must be a list of titles")
            pred = await predictions.create(db, out, channel_id=cid, title=_str(doc, "title"), outcomes=outcomes,
                                            window=_int(doc, "prediction_window", 120))
            return {"prediction": await predictions.helix_doc(db, pred)}
        if action == "prediction-end":
            status, pid = _str(doc, "status"), _str(doc, "id")
            await predictions.expire(db, out, channel_id=cid)
            if status == "LOCKED":
                pred = await predictions.lock(db, out, channel_id=cid, prediction_id=pid)
            elif status == "CANCELED":
                pred = await predictions.cancel(db, out, channel_id=cid, prediction_id=pid)
            elif status == "RESOLVED":
                pred = await predictions.resolve(db, out, channel_id=cid, prediction_id=pid,
                                                 winning_outcome_id=_str(doc, "winning_outcome_id"))
            else:
                raise CommunityError("bad_status", "status must be LOCKED, RESOLVED or CANCELED")
            return {"prediction": await predictions.helix_doc(db, pred)}
        if action == "poll":
            choices = doc.get("choices")
            if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
                raise CommunityError("bad_field", "choices must be a list of titles")
            per_vote = _int(doc, "channel_points_per_vote", 0)
            poll = await polls.create(db, out, channel_id=cid, title=_str(doc, "title"), choices=choices,
                                      duration=_int(doc, "duration", 60), points_voting=per_vote > 0,
                                      points_per_vote=per_vote)
            return {"poll": await polls.helix_doc(db, poll)}
        if action == "poll-end":
            await polls.expire(db, out, channel_id=cid)
            poll = await polls.end(db, out, channel_id=cid, poll_id=_str(doc, "id"),
                                   status=_str(doc, "status", "TERMINATED"))
            return {"poll": await polls.helix_doc(db, poll)}
        raise CommunityError("not_found", f"No action {action!r}", 404)

    return await points.run(platform, apply)


async def queue_doc(platform: Platform, channel: User) -> dict[str, Any]:
    async with platform.db.session() as db:
        rows = await rewards.queue(db, channel.id)
        data = []
        for r in rows:
            reward = await rewards.get(db, r.reward_id, channel.id)
            data.extend(await rewards.redemption_docs(db, reward, [r]))
        listed = [await rewards.helix_doc(db, r) for r in await rewards.list_rewards(db, channel.id)]
    return {"queue": data, "rewards": listed}


async def _stream(platform: Platform, request: Request, channel_id: str) -> AsyncIterator[bytes]:
    widgets = live.hub(platform)
    queue = await widgets.join(channel_id)
    try:
        yield b"retry: 2000\n\n"
        while not await request.is_disconnected():
            try:  # never yield inside the timeout: it would fire on whoever consumes the stream
                async with asyncio.timeout(KEEPALIVE_S):
                    item = await queue.get()
            except TimeoutError:
                item = b": keepalive\n\n"
            yield item
    finally:
        await widgets.leave(channel_id, queue)


def install(app: FastAPI, platform: Platform) -> None:
    try:
        from livecast.community import helix
    except ImportError:  # Helix is not part of this build
        pass
    else:
        app.include_router(helix.router, prefix="/helix", tags=["helix"])
        app.include_router(helix.router, prefix="/mock", include_in_schema=False)

    from livecast.web.session import current_user

    @app.get("/api/community/{login}", include_in_schema=False)
    async def community_state(login: str, request: Request) -> Response:
        return await _viewer_doc(platform, login, request, state)

    @app.get("/api/community/{login}/me", include_in_schema=False)
    async def community_mine(login: str, request: Request) -> Response:
        return await _viewer_doc(platform, login, request, mine)

    @app.get("/api/community/{login}/events", include_in_schema=False)
    async def community_events(login: str, request: Request) -> Response:
        try:
            channel = await _channel(platform, login)
        except CommunityError as exc:
            return _refusal(exc)
        return StreamingResponse(_stream(platform, request, channel.id), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/api/community/{login}/{action}", include_in_schema=False)
    async def community_action(login: str, action: str, request: Request) -> Response:
        try:
            doc = await _body(request)
            viewer = await _signed_in(request, doc)
            channel = await _channel(platform, login)
            cid, vid = channel.id, viewer.id
            if action == "redeem":
                reward_id, text = _str(doc, "reward_id"), _str(doc, "user_input", "")
                row = await points.run(platform, lambda db, out: rewards.redeem(
                    db, out, channel_id=cid, reward_id=reward_id, user_id=vid, user_input=text))
                result: dict[str, Any] = {"redemption_id": row.id, "status": row.status}
                if row.user_input:
                    await _say_in_chat(platform, channel, viewer, row.user_input, reward_id)
            elif action == "bet":
                pid, oid, amount = _str(doc, "prediction_id"), _str(doc, "outcome_id"), _int(doc, "points")
                stake = await points.run(platform, lambda db, out: _bet(db, out, cid, pid, vid, oid, amount))
                result = {"outcome_id": stake.outcome_id, "points": int(stake.points)}
            elif action == "vote":
                poll_id, choice, votes = _str(doc, "poll_id"), _str(doc, "choice_id"), _int(doc, "votes", 1)
                ballot = await points.run(platform, lambda db, out: _vote(db, out, cid, poll_id, vid, choice, votes))
                result = {"choice_id": ballot.choice_id, "paid_votes": int(ballot.paid_votes)}
            else:
                raise CommunityError("not_found", f"No action {action!r}", 404)
            async with platform.db.session() as db:
                result["balance"] = await points.balance(db, cid, vid)
        except CommunityError as exc:
            return _refusal(exc)
        return JSONResponse(result)

    @app.get("/api/community/{login}/manage/queue", include_in_schema=False)
    async def community_queue(login: str, request: Request) -> Response:
        user = await current_user(request)
        if user is None or user.login != login.lower():
            return error_response(403, "Only the broadcaster manages this channel")
        return JSONResponse(await queue_doc(platform, user))

    @app.post("/api/community/{login}/manage/{action}", include_in_schema=False)
    async def community_manage(login: str, action: str, request: Request) -> Response:
        try:
            doc = await _body(request)
            user = await _signed_in(request, doc)
            if user.login != login.lower():
                raise CommunityError("forbidden", "Only the broadcaster manages this channel", 403)
            doc.pop("csrf", None)
            return JSONResponse(await manage(platform, user, action, doc))
        except CommunityError as exc:
            return _refusal(exc)


async def _say_in_chat(platform: Platform, channel: User, viewer: User, text: str, reward_id: str) -> None:
    """A reward's message also goes to chat, tagged ``custom-reward-id`` as on Twitch (bots read
    redemptions that way). Chat's rules still apply; a refused line does not undo the redemption."""
    try:
        from livecast.chat import service as chat
        from livecast.chat.state import Chatter
    except ImportError:  # a build without chat
        return
    try:
        await chat.send_message(platform, channel.login, Chatter.from_user(viewer), text,
                                custom_reward_id=reward_id)
    except chat.ChatError:
        return


async def _bet(db: AsyncSession, out: Outbox, channel_id: str, prediction_id: str, user_id: str, outcome_id: str,
               amount: int) -> PredictionBet:
    return await predictions.bet(db, out, prediction_id=prediction_id, user_id=user_id, outcome_id=outcome_id,
                                 amount=amount, channel_id=channel_id)


async def _vote(db: AsyncSession, out: Outbox, channel_id: str, poll_id: str, user_id: str, choice_id: str,
                votes: int) -> PollBallot:
    return await polls.vote(db, out, poll_id=poll_id, user_id=user_id, choice_id=choice_id, votes=votes,
                            channel_id=channel_id)

