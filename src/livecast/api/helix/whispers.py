"""``POST /whispers``: a private message through the chat domain."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel

from livecast.api.helix import chatlink
from livecast.api.helix.auth import Caller, requires
from livecast.api.helix.errors import bad_request
from livecast.api.helix.respond import no_content
from livecast.api.helix.schemas import ERRORS
from livecast.chat import service as chat

router = APIRouter()


class WhisperBody(BaseModel):
    message: str


@router.post("/whispers", status_code=204, responses={204: {"description": "Sent"}, **ERRORS})
async def whisper(
    from_user_id: str = Query(), to_user_id: str = Query(), body: WhisperBody = Body(),
    caller: Caller = Depends(requires("user:manage:whispers", user=True)),
) -> Response:
    sender = await chatlink.acting(caller, from_user_id, "from_user_id")
    target = await chatlink.user(caller, to_user_id, "to_user_id")
    if not body.message:
        raise bad_request("The message may not be empty")
    if len(body.message) > 10_000:
        raise bad_request("The message may not be longer than 10,000 characters")
    if target.id == sender.user_id:
        raise bad_request("You cannot whisper yourself")
    try:
        await chat.send_whisper(caller.platform, sender, target.login, body.message)
    except chat.ChatError as exc:
        raise chatlink.chat_error(exc) from None
    return no_content()
