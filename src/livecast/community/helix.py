"""Helix: ``/channel_points/custom_rewards`` (+ ``/redemptions``), ``/predictions``, ``/polls``.

Twitch's shapes, scopes and refusals: the broadcaster in the query or body must be the user of
the token (401 otherwise), the channel must be an affiliate or partner (403, "Channel Points
are not available"), and a reward can be changed, deleted, or have its redemptions read and
updated only by the application (Client-Id) that created it (403), as on Twitch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.api.helix import pagination
from livecast.api.helix.auth import Caller, requires
from livecast.api.helix.errors import HelixError, bad_request, forbidden, unauthorized
from livecast.api.helix.respond import json_response, no_content
from livecast.api.helix.schemas import ERRORS, Data, Pagination
from livecast.community import points, polls, predictions, rewards
from livecast.community.models import CANCELED, FULFILLED, UNFULFILLED, Poll, Prediction
from livecast.community.points import CommunityError, Outbox
from livecast.identity.models import User

router = APIRouter()
T = TypeVar("T")

MANAGE_REWARDS = "channel:manage:redemptions"
READ_REWARDS = ("channel:read:redemptions", MANAGE_REWARDS)


class Page(BaseModel):
    data: list[dict[str, Any]]
    pagination: Pagination


class RewardBody(BaseModel):
    """Create/update fields; unknown fields are ignored as Twitch does."""

    model_config = {"extra": "allow"}


class StatusBody(BaseModel):
    status: str


class Choice(BaseModel):
    title: str


class PredictionBody(BaseModel):
    broadcaster_id: str
    title: str
    outcomes: list[Choice]
    prediction_window: int


class EndPredictionBody(BaseModel):
    broadcaster_id: str
    id: str
    status: str
    winning_outcome_id: str | None = None


class PollBody(BaseModel):
    broadcaster_id: str
    title: str
    choices: list[Choice]
    duration: int
    channel_points_voting_enabled: bool = False
    channel_points_per_vote: int | None = None


class EndPollBody(BaseModel):
    broadcaster_id: str
    id: str
    status: str


def _error(exc: CommunityError) -> HelixError:
    return HelixError(exc.status if exc.status != 409 else 400, exc.message)


async def _run(caller: Caller, fn: Callable[[AsyncSession, Outbox], Awaitable[T]]) -> T:
    try:
        return await points.run(caller.platform, fn)
    except CommunityError as exc:
        raise _error(exc) from None


async def _broadcaster(caller: Caller, broadcaster_id: str) -> User:
    """The token's user must be the broadcaster, an affiliate or partner."""
    if caller.user_id != broadcaster_id:
        raise unauthorized("The ID in broadcaster_id must match the user ID found in the request's OAuth token.")
    async with caller.platform.db.session() as db:
        user = await db.get(User, broadcaster_id)
    if user is None:
        raise bad_request("The broadcaster was not found")
    if user.broadcaster_type not in ("affiliate", "partner"):
        raise forbidden("The broadcaster must be a partner or affiliate to use channel points, predictions and polls")
    return user


def _own(caller: Caller, reward: Any) -> None:
    if reward.client_id != caller.client_id:
        raise forbidden("The ID in the Client-Id header must match the Client ID used to create the custom reward.")


# Custom rewards ------------------------------------------------------------------------------

@router.post("/channel_points/custom_rewards", responses={200: {"model": Data[dict[str, Any]]}, **ERRORS})
async def create_reward(broadcaster_id: str = Query(), body: RewardBody = Body(),
                        caller: Caller = Depends(requires(MANAGE_REWARDS, user=True))) -> Response:
    await _broadcaster(caller, broadcaster_id)
    fields = body.model_dump()

    async def apply(db: AsyncSession, out: Outbox) -> dict[str, Any]:
        reward = await rewards.create(db, channel_id=broadcaster_id, client_id=caller.client_id, body=fields,
                                      out=out)
        return await rewards.helix_doc(db, reward)

    return json_response({"data": [await _run(caller, apply)]})


@router.patch("/channel_points/custom_rewards", responses={200: {"model": Data[dict[str, Any]]}, **ERRORS})
async def update_reward(broadcaster_id: str = Query(), id: str = Query(), body: RewardBody = Body(),
                        caller: Caller = Depends(requires(MANAGE_REWARDS, user=True))) -> Response:
    await _broadcaster(caller, broadcaster_id)
    fields = body.model_dump()

    async def apply(db: AsyncSession, out: Outbox) -> dict[str, Any]:
        reward = await rewards.get(db, id, broadcaster_id)
        _own(caller, reward)
        await rewards.update_reward(db, reward, fields, out)
        return await rewards.helix_doc(db, reward)

    return json_response({"data": [await _run(caller, apply)]})


@router.delete("/channel_points/custom_rewards", status_code=204, responses={204: {"description": "Deleted"},
                                                                            **ERRORS})
async def delete_reward(broadcaster_id: str = Query(), id: str = Query(),
                        caller: Caller = Depends(requires(MANAGE_REWARDS, user=True))) -> Response:
    await _broadcaster(caller, broadcaster_id)

    async def apply(db: AsyncSession, out: Outbox) -> None:
        reward = await rewards.get(db, id, broadcaster_id)
        _own(caller, reward)
        await rewards.delete(db, out, reward)

    await _run(caller, apply)
    return no_content()


@router.get("/channel_points/custom_rewards", responses={200: {"model": Data[dict[str, Any]]}, **ERRORS})
async def get_rewards(broadcaster_id: str = Query(), id: list[str] = Query(default=[]),
                      only_manageable_rewards: bool = Query(default=False),
                      caller: Caller = Depends(requires(*READ_REWARDS, user=True))) -> Response:
    if len(id) > 50:
        raise bad_request("The parameter \"id\" may be specified at most 50 times")
    await _broadcaster(caller, broadcaster_id)
    async with caller.platform.db.session() as db:
        rows = await rewards.list_rewards(db, broadcaster_id, id,
                                          caller.client_id if only_manageable_rewards else None)
        data = [await rewards.helix_doc(db, r) for r in rows]
    if id and not data:
        raise HelixError(404, "No custom rewards with the specified IDs were found")
    return json_response({"data": data})


@router.get("/channel_points/custom_rewards/redemptions", responses={200: {"model": Page}, **ERRORS})
async def get_redemptions(
    broadcaster_id: str = Query(), reward_id: str = Query(), status: str | None = Query(default=None),
    id: list[str] = Query(default=[]), sort: str = Query(default="OLDEST"), after: str | None = Query(default=None),
    first: int = Query(default=20, ge=1, le=50),
    caller: Caller = Depends(requires(*READ_REWARDS, user=True)),
) -> Response:
    if status is None and not id:
        raise bad_request("The request must specify the status parameter or the id parameter")
    if status is not None and status not in (UNFULFILLED, FULFILLED, CANCELED):
        raise bad_request("The status parameter must be CANCELED, FULFILLED or UNFULFILLED")
    if sort not in ("OLDEST", "NEWEST"):
        raise bad_request("The sort parameter must be OLDEST or NEWEST")
    if len(id) > 50:
        raise bad_request("The parameter \"id\" may be specified at most 50 times")
    await _broadcaster(caller, broadcaster_id)
    position = pagination.decode(after, (int,))[0] if after else None
    async with caller.platform.db.session() as db:
        try:
            reward = await rewards.get(db, reward_id, broadcaster_id)
        except CommunityError as exc:
            raise _error(exc) from None
        _own(caller, reward)
        rows = await rewards.redemptions(db, reward=reward, ids=id, status=status, newest=sort == "NEWEST",
                                         after=position, first=first + 1)
        more = len(rows) > first and not id
        rows = rows[:first]
        data = await rewards.redemption_docs(db, reward, rows)
    cursor = pagination.encode(int(rows[-1].seq)) if more and rows else None
    return json_response({"data": data, "pagination": pagination.pagination(cursor)})


@router.patch("/channel_points/custom_rewards/redemptions", responses={200: {"model": Data[dict[str, Any]]},
                                                                       **ERRORS})
async def update_redemptions(
    broadcaster_id: str = Query(), reward_id: str = Query(), id: list[str] = Query(), body: StatusBody = Body(),
    caller: Caller = Depends(requires(MANAGE_REWARDS, user=True)),
) -> Response:
    if len(id) > 50:
        raise bad_request("The parameter \"id\" may be specified at most 50 times")
    if body.status not in (FULFILLED, CANCELED):
        raise bad_request("The status field must be CANCELED or FULFILLED")
    await _broadcaster(caller, broadcaster_id)

    async def apply(db: AsyncSession, out: Outbox) -> list[dict[str, Any]]:
        reward = await rewards.get(db, reward_id, broadcaster_id)
        _own(caller, reward)
        changed = await rewards.set_status(db, out, reward, id, body.status)
        return await rewards.redemption_docs(db, reward, changed)

    data = await _run(caller, apply)
    if not data:
        raise HelixError(404, "No unfulfilled redemptions with the specified IDs were found")
    return json_response({"data": data})


# Predictions ---------------------------------------------------------------------------------

@router.get("/predictions", responses={200: {"model": Page}, **ERRORS})
async def get_predictions(
    broadcaster_id: str = Query(), id: list[str] = Query(default=[]), after: str | None = Query(default=None),
    first: int = Query(default=20, ge=1, le=25),
    caller: Caller = Depends(requires("channel:read:predictions", "channel:manage:predictions", user=True)),
) -> Response:
    if len(id) > 25:
        raise bad_request("The parameter \"id\" may be specified at most 25 times")
    await _broadcaster(caller, broadcaster_id)
    await _run(caller, lambda db, out: predictions.expire(db, out, channel_id=broadcaster_id))
    return await _newest_first(caller, Prediction, Prediction.created_at, broadcaster_id, id, after, first,
                               predictions.helix_doc)


async def _newest_first(caller: Caller, model: Any, when: Any, broadcaster_id: str, ids: list[str],
                        after: str | None, first: int, doc: Any) -> Response:
    """A channel's predictions or polls, newest first, keyset-paged on (time, id); asking by
    ``id`` returns just those, unpaged, as Twitch does."""
    stmt = select(model).where(model.channel_id == broadcaster_id)
    if ids:
        stmt = stmt.where(model.id.in_(ids))
    if after:
        at, last = pagination.decode(after, (str, str))
        stmt = stmt.where((when < _when(at)) | ((when == _when(at)) & (model.id < last)))
    stmt = stmt.order_by(when.desc(), model.id.desc()).limit(first + 1)
    async with caller.platform.db.session() as db:
        rows = list((await db.execute(stmt)).scalars().all())
        more = len(rows) > first and not ids
        rows = rows[:first]
        data = [await doc(db, row) for row in rows]
    key = when.key
    cursor = pagination.encode(getattr(rows[-1], key).isoformat(), rows[-1].id) if more and rows else None
    return json_response({"data": data, "pagination": pagination.pagination(cursor)})


def _when(text: str) -> Any:
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise bad_request("The parameter \"after\" was malformed: the value must be a valid cursor") from None


@router.post("/predictions", responses={200: {"model": Data[dict[str, Any]]}, **ERRORS})
async def create_prediction(body: PredictionBody = Body(),
                            caller: Caller = Depends(requires("channel:manage:predictions", user=True))) -> Response:
    await _broadcaster(caller, body.broadcaster_id)

    async def apply(db: AsyncSession, out: Outbox) -> dict[str, Any]:
        pred = await predictions.create(db, out, channel_id=body.broadcaster_id, title=body.title,
                                        outcomes=[o.title for o in body.outcomes], window=body.prediction_window)
        return await predictions.helix_doc(db, pred)

    return json_response({"data": [await _run(caller, apply)]})


@router.patch("/predictions", responses={200: {"model": Data[dict[str, Any]]}, **ERRORS})
async def end_prediction(body: EndPredictionBody = Body(),
                         caller: Caller = Depends(requires("channel:manage:predictions", user=True))) -> Response:
    await _broadcaster(caller, body.broadcaster_id)
    if body.status not in ("RESOLVED", "CANCELED", "LOCKED"):
        raise bad_request("The status field must be RESOLVED, CANCELED or LOCKED")
    if body.status == "RESOLVED" and not body.winning_outcome_id:
        raise bad_request("winning_outcome_id is required to resolve a prediction")

    async def apply(db: AsyncSession, out: Outbox) -> dict[str, Any]:
        await predictions.expire(db, out, channel_id=body.broadcaster_id)
        kw = {"channel_id": body.broadcaster_id, "prediction_id": body.id}
        if body.status == "LOCKED":
            pred = await predictions.lock(db, out, **kw)
        elif body.status == "CANCELED":
            pred = await predictions.cancel(db, out, **kw)
        else:
            pred = await predictions.resolve(db, out, winning_outcome_id=body.winning_outcome_id or "", **kw)
        return await predictions.helix_doc(db, pred)

    return json_response({"data": [await _run(caller, apply)]})


# Polls ---------------------------------------------------------------------------------------

@router.get("/polls", responses={200: {"model": Page}, **ERRORS})
async def get_polls(
    broadcaster_id: str = Query(), id: list[str] = Query(default=[]), after: str | None = Query(default=None),
    first: int = Query(default=20, ge=1, le=20),
    caller: Caller = Depends(requires("channel:read:polls", "channel:manage:polls", user=True)),
) -> Response:
    if len(id) > 20:
        raise bad_request("The parameter \"id\" may be specified at most 20 times")
    await _broadcaster(caller, broadcaster_id)
    await _run(caller, lambda db, out: polls.expire(db, out, channel_id=broadcaster_id))
    return await _newest_first(caller, Poll, Poll.started_at, broadcaster_id, id, after, first, polls.helix_doc)


@router.post("/polls", responses={200: {"model": Data[dict[str, Any]]}, **ERRORS})
async def create_poll(body: PollBody = Body(),
                      caller: Caller = Depends(requires("channel:manage:polls", user=True))) -> Response:
    await _broadcaster(caller, body.broadcaster_id)

    async def apply(db: AsyncSession, out: Outbox) -> dict[str, Any]:
        poll = await polls.create(db, out, channel_id=body.broadcaster_id, title=body.title,
                                  choices=[c.title for c in body.choices], duration=body.duration,
                                  points_voting=body.channel_points_voting_enabled,
                                  points_per_vote=body.channel_points_per_vote or 0)
        return await polls.helix_doc(db, poll)

    return json_response({"data": [await _run(caller, apply)]})


@router.patch("/polls", responses={200: {"model": Data[dict[str, Any]]}, **ERRORS})
async def end_poll(body: EndPollBody = Body(),
                   caller: Caller = Depends(requires("channel:manage:polls", user=True))) -> Response:
    await _broadcaster(caller, body.broadcaster_id)

    async def apply(db: AsyncSession, out: Outbox) -> dict[str, Any]:
        await polls.expire(db, out, channel_id=body.broadcaster_id)
        poll = await polls.end(db, out, channel_id=body.broadcaster_id, poll_id=body.id, status=body.status)
        return await polls.helix_doc(db, poll)

    return json_response({"data": [await _run(caller, apply)]})
