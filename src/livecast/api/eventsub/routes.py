"""HTTP surface of EventSub: ``/helix/eventsub/subscriptions`` (and twurple's aliases) and ``/ws``."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.websockets import WebSocket

from livecast.api.eventsub import service
from livecast.api.eventsub.websocket import manager_for
from livecast.api.helix.auth import Caller, requires
from livecast.api.helix.errors import HelixError, bad_request, not_found
from livecast.api.helix.respond import json_response, no_content
from livecast.api.helix.schemas import ERRORS, Pagination
from livecast.platform import Platform

MAX_BODY = 16 * 1024


class Transport(BaseModel):
    method: str
    callback: str | None = None
    session_id: str | None = None
    connected_at: str | None = None
    disconnected_at: str | None = None


class Subscription(BaseModel):
    id: str
    status: str
    type: str
    version: str
    condition: dict[str, str]
    created_at: str
    transport: Transport
    cost: int


class CreateBody(BaseModel):
    type: str
    version: str
    condition: dict[str, str]
    transport: dict[str, str]


class SubscriptionList(BaseModel):
    data: list[Subscription]
    total: int
    total_cost: int
    max_total_cost: int
    pagination: Pagination


class Created(BaseModel):
    data: list[Subscription]
    total: int
    total_cost: int
    max_total_cost: int


router = APIRouter()


def _raise(exc: service.EventSubError) -> HelixError:
    return HelixError(exc.status, exc.message)


@router.post(
    "/eventsub/subscriptions", status_code=202,
    responses={202: {"model": Created}, 409: {"model": ERRORS[400]["model"]}, **ERRORS},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": CreateBody.model_json_schema()}}}},
)
async def create_subscription(request: Request, caller: Caller = Depends(requires())) -> Response:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise bad_request("The request body is too large")
    try:
        body: Any = json.loads(raw or b"null")
    except ValueError:
        raise bad_request("The request body is not valid JSON") from None
    try:
        sub, budget = await service.create(caller.platform, caller.token, body)
    except service.EventSubError as exc:
        raise _raise(exc) from None
    return json_response(
        {"data": [service.subscription_json(sub)], "total": budget.total, "total_cost": budget.total_cost,
         "max_total_cost": budget.max_total_cost},
        status=202,
    )


@router.get("/eventsub/subscriptions", responses={200: {"model": SubscriptionList}, **ERRORS})
async def list_subscriptions(
    status: str | None = Query(default=None),
    type: str | None = Query(default=None),
    user_id: str | None = Query(default=None),
    subscription_id: str | None = Query(default=None),
    after: str | None = Query(default=None, max_length=64),
    caller: Caller = Depends(requires()),
) -> Response:
    given = [p for p in (status, type, user_id, subscription_id) if p]
    if len(given) > 1:
        raise bad_request("Specify at most one of status, type, user_id and subscription_id")
    rows, budget, cursor = await service.listing(
        caller.platform, caller.token, status=status, type_=type, user_id=user_id,
        subscription_id=subscription_id, after=after,
    )
    return json_response({
        "data": [service.subscription_json(r) for r in rows], "total": budget.total,
        "total_cost": budget.total_cost, "max_total_cost": budget.max_total_cost,
        "pagination": {"cursor": cursor} if cursor else {},
    })


@router.delete("/eventsub/subscriptions", status_code=204, responses={204: {"description": "Deleted"}, **ERRORS})
async def delete_subscription(
    id: str = Query(max_length=64), caller: Caller = Depends(requires())
) -> Response:
    if not await service.delete(caller.platform, caller.token, id):
        raise not_found("The subscription was not found")
    return no_content()


def install(app: FastAPI, platform: Platform) -> None:
    app.include_router(router, prefix="/helix", tags=["eventsub"])
    app.include_router(router, prefix="/mock", include_in_schema=False)
    app.include_router(router, include_in_schema=False)  # twurple: /eventsub/subscriptions
    manager = manager_for(platform)

    async def eventsub_ws(websocket: WebSocket) -> None:
        await manager.handle(websocket)

    app.add_api_websocket_route("/ws", eventsub_ws)
