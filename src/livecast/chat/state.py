"""A node's cached view of each channel's chat rules, refreshed when the bus says they changed.

Checking every message against the database would make the database the chat's bottleneck;
instead each node loads a channel's settings, bans, roles, blocked terms and emotes once, and
drops them when a moderation change is announced on ``chat.ctl.<login>`` (or after a few
seconds, which bounds staleness if an announcement is lost).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.chat.badges import Standing
from livecast.chat.models import (
    ROLE_MODERATOR,
    ROLE_SUBSCRIBER,
    ROLE_VIP,
    BlockedTerm,
    ChatBan,
    ChatRole,
    ChatSettings,
    Emote,
)
from livecast.chat.rules import RoomSettings
from livecast.identity.models import User
from livecast.store.base import utcnow
from livecast.store.db import Database

CACHE_TTL_S = 5.0


@dataclass(frozen=True)
class Chatter:
    """The sender as chat shows them; loaded once per connection."""

    user_id: str
    login: str
    display_name: str
    color: str = ""
    is_staff: bool = False
    is_partner: bool = False

    @classmethod
    def from_user(cls, user: User) -> Chatter:
        return cls(user.id, user.login, user.display_name or user.login, user.color or "",
                   user.type == "staff", user.broadcaster_type == "partner")


@dataclass
class ChannelState:
    channel_id: str
    login: str
    display_name: str
    settings: RoomSettings = field(default_factory=RoomSettings)
    bans: dict[str, dt.datetime | None] = field(default_factory=dict)
    roles: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    blocked_terms: list[str] = field(default_factory=list)
    global_emotes: dict[str, str] = field(default_factory=dict)
    channel_emotes: dict[str, tuple[str, int]] = field(default_factory=dict)
    loaded_at: float = field(default_factory=time.monotonic)

    def standing(self, chatter: Chatter) -> Standing:
        roles = self.roles.get(chatter.user_id, {})
        months, tier = roles.get(ROLE_SUBSCRIBER, (0, 0))
        return Standing(
            is_broadcaster=chatter.user_id == self.channel_id,
            is_moderator=ROLE_MODERATOR in roles,
            is_vip=ROLE_VIP in roles,
            is_subscriber=ROLE_SUBSCRIBER in roles,
            sub_months=months,
            sub_tier=tier,
            is_partner=chatter.is_partner,
            is_staff=chatter.is_staff,
        )

    def ban_of(self, user_id: str, now: dt.datetime) -> tuple[bool, dt.datetime | None]:
        if user_id not in self.bans:
            return False, None
        expires = self.bans[user_id]
        if expires is not None and expires <= now:
            return False, None
        return True, expires

    def emotes_for(self, standing: Standing) -> dict[str, str]:
        """Codes this chatter may use: globals, plus channel emotes their tier unlocks."""
        usable = dict(self.global_emotes)
        tier = standing.sub_tier or (1000 if standing.is_subscriber else 0)
        if standing.is_broadcaster:
            tier = 3000
        for code, (emote_id, needed) in self.channel_emotes.items():
            if needed == 0 or tier >= needed:
                usable[code] = emote_id
        return usable


async def load_channel(db: AsyncSession, login: str) -> ChannelState | None:
    owner = (await db.execute(select(User).where(User.login == login))).scalar_one_or_none()
    if owner is None:
        return None
    state = ChannelState(owner.id, owner.login, owner.display_name or owner.login)
    row = await db.get(ChatSettings, owner.id)
    if row is not None:
        state.settings = RoomSettings(row.slow_seconds, row.followers_only_minutes, row.subscribers_only,
                                      row.emote_only, row.unique_chat, row.automod_level)
    now = utcnow()
    for ban in (await db.execute(select(ChatBan).where(ChatBan.channel_id == owner.id))).scalars():
        if ban.expires_at is None or ban.expires_at > now:
            state.bans[ban.user_id] = ban.expires_at
    for role in (await db.execute(select(ChatRole).where(ChatRole.channel_id == owner.id))).scalars():
        state.roles.setdefault(role.user_id, {})[role.role] = (role.months, role.tier)
    for term in (await db.execute(select(BlockedTerm).where(BlockedTerm.channel_id == owner.id))).scalars():
        if term.expires_at is None or term.expires_at > now:
            state.blocked_terms.append(term.text)
    emotes = await db.execute(select(Emote).where(or_(Emote.owner_id.is_(None), Emote.owner_id == owner.id)))
    for emote in emotes.scalars():
        if emote.owner_id is None:
            state.global_emotes[emote.code] = emote.id
        else:
            state.channel_emotes[emote.code] = (emote.id, emote.tier)
    return state


class ChannelCache:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._states: dict[str, ChannelState] = {}

    async def get(self, login: str) -> ChannelState | None:
        state = self._states.get(login)
        if state is not None and time.monotonic() - state.loaded_at < CACHE_TTL_S:
            return state
        async with self.db.session() as db:
            state = await load_channel(db, login)
        if state is None:
            self._states.pop(login, None)
        else:
            self._states[login] = state
        return state

    def invalidate(self, login: str) -> None:
        self._states.pop(login, None)
