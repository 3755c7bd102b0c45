"""``GET /users`` and ``PUT /users``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from sqlalchemy import or_, select

from livecast.api.helix import reads, render
from livecast.api.helix.auth import Caller, check_ids, requires
from livecast.api.helix.errors import bad_request
from livecast.api.helix.respond import json_response
from livecast.api.helix.schemas import ERRORS, Data, User
from livecast.identity.models import User as UserRow

router = APIRouter()


@router.get("/users", responses={200: {"model": Data[User]}, **ERRORS})
async def get_users(
    id: list[str] = Query(default=[], description="User ids, up to 100 in total with login"),
    login: list[str] = Query(default=[], description="Logins, up to 100 in total with id"),
    caller: Caller = Depends(requires()),
) -> Response:
    check_ids("id and login", id + login)
    logins = [name.strip().lower() for name in login]
    columns = select(*UserRow.__table__.columns)
    if not id and not logins:
        if caller.user_id is None:
            raise bad_request("Missing user id or login: an app access token must name the users")
        rows = await reads.rows(caller.platform, columns.where(UserRow.id == caller.user_id))
    else:
        conds = []
        if id:
            conds.append(UserRow.id.in_(id))
        if logins:
            conds.append(UserRow.login.in_(logins))
        rows = await reads.rows(caller.platform, columns.where(or_(*conds)))
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
