"""The seam between Helix and the chat domain: who acts, on which channel, and error mapping.

Chat's service functions take logins and a :class:`Chatter`; Helix speaks ids and tokens.
Chat refusals carry Twitch's NOTICE ``msg-id``; here they become Helix statuses.
"""

from __future__ import annotations

from sqlalchemy import select

from livecast.api.helix.auth import Caller
from livecast.api.helix.errors import HelixError, bad_request, unauthorized
from livecast.chat.service import ChatError
from livecast.chat.state import Chatter
from livecast.identity.models import User

_STATUS = {
    "no_permission": 403,
    "bad_delete_message_error": 404,
    "msg_channel_suspended": 400,
    "invalid_user": 400,
}


def chat_error(exc: ChatError) -> HelixError:
    return HelixError(_STATUS.get(exc.code, 400), exc.message)


async def users_by_id(caller: Caller, ids: list[str]) -> dict[str, User]:
    if not ids:
        return {}
    async with caller.platform.db.session() as db:
        rows = (await db.execute(select(User).where(User.id.in_(ids)))).scalars()
        return {u.id: u for u in rows}


async def user(caller: Caller, user_id: str, field: str = "user_id") -> User:
    found = (await users_by_id(caller, [user_id])).get(user_id)
    if found is None:
        raise bad_request(f"The user in {field} was not found")
    return found


async def acting(caller: Caller, moderator_id: str, field: str = "moderator_id") -> Chatter:
    """The token's user, who must be the one named in ``moderator_id`` (or sender_id...)."""
    if caller.user_id != moderator_id:
        raise unauthorized(f"The ID in {field} must match the user ID in the access token")
    return Chatter.from_user(await user(caller, moderator_id, field))
