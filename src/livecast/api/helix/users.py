"""``GET /users`` and ``PUT /users``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from sqlalchemy import ColumnElement, or_, select

from livecast.api.helix import reads, render
from livecast.api.helix.auth import Caller, check_ids, requires
from livecast.api.helix.errors import bad_request
from livecast.api.helix.respond import json_response
from livecast.api.helix.schemas import ERRORS, Data, User
from livecast.identity.models import User as UserRow

router = APIRouter()

# A Core statement over the table, built once (see streams.py for why not ORM attributes).
_U = UserRow.__table__.c
_USERS = select(*UserRow.__table__.columns)


def _one_of(column: Any, values: list[str]) -> ColumnElement[bool]:
    """``column = v`` for one value, the usual case (a bot looking up one login); ``IN`` only
    for several. The same rows either way, but an ``IN`` list is an "expanding" parameter that
    SQLAlchemy re-renders into the SQL on every execution, a twentieth of a one-user read."""
    return column == values[0] if len(values) == 1 else column.in_(values)


@router.get("/users", responses={200: {"model": Data[User]}, **ERRORS})
async def get_users(
    id: list[str] = Query(default=[], description="User ids, up to 100 in total with login"),
    login: list[str] = Query(default=[], description="Logins, up to 100 in total with id"),
    caller: Caller = Depends(requires()),
) -> Response:
    check_ids("id and login", id + login)
    logins = [name.strip().lower() for name in login]
    if not id and not logins:
        if caller.user_id is None:
            raise bad_request("Missing user id or login: an app access token must name the users")
        rows = await reads.rows(caller.platform, _USERS.where(_U.id == caller.user_id))
    else:
        conds = []
        if id:
            conds.append(_one_of(_U.id, id))
        if logins:
            conds.append(_one_of(_U.login, logins))
        rows = await reads.rows(caller.platform, _USERS.where(or_(*conds)))
    can_email = caller.has("user:read:email")
    return json_response(
        {"data": [render.user(r, email=can_email and r.id == caller.user_id) for r in rows]}
    )


@router.put("/users", responses={200: {"model": Data[User]}, **ERRORS})
async def update_user(
    description: str = Query(default="", max_length=300, description="The new channel description"),
    caller: Caller = Depends(requires("user:edit", user=True)),
) -> Response:
    async with caller.platform.db.session() as db:
        row = await db.get(UserRow, caller.user_id)
        if row is None:
            raise bad_request("The user in the access token no longer exists")
        row.description = description
        await db.flush()
        doc = render.user(row, email=caller.has("user:read:email"))
    return json_response({"data": [doc]})
