"""Custom rewards and the redemption queue.

A redemption is one transaction: bump the reward's ``version`` (its row lock: concurrent
redemptions of one reward queue up here, so the per-stream and per-user counts read next are
exact), check enabled / paused / cooldown / limits, take the points with the conditional debit
(two different rewards redeemed at once by one viewer still cannot spend the same points), then
queue the redemption as UNFULFILLED, or FULFILLED when the reward skips the queue. The
broadcaster later marks it FULFILLED, or CANCELED, which refunds what was paid.

Choice: deleting a reward refunds its redemptions still in the queue (nobody can fulfil them
any more), so no viewer loses points to a reward that vanished.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecast.api.eventsub.catalog import timestamp
from livecast.community import points
from livecast.community.events import people, users
from livecast.community.models import CANCELED, FULFILLED, UNFULFILLED, CustomReward, Redemption
from livecast.community.points import CommunityError, Outbox
from livecast.store.base import utcnow

MAX_REWARDS = 50
MAX_COST = 2**31 - 1
COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")

# Helix body field -> (attribute, type); the *_enabled flags are handled with their values.
FIELDS: dict[str, tuple[str, type]] = {
    "title": ("title", str), "prompt": ("prompt", str), "cost": ("cost", int),
    "background_color": ("background_color", str), "is_enabled": ("is_enabled", bool),
    "is_user_input_required": ("is_user_input_required", bool), "is_paused": ("is_paused", bool),
    "should_redemptions_skip_request_queue": ("skip_queue", bool),
}
LIMITS = {  # enable flag -> (value field, attribute, minimum)
    "is_max_per_stream_enabled": ("max_per_stream", "max_per_stream", 1),
    "is_max_per_user_per_stream_enabled": ("max_per_user_per_stream", "max_per_user_per_stream", 1),
    "is_global_cooldown_enabled": ("global_cooldown_seconds", "global_cooldown_seconds", 1),
}


def apply_fields(reward: CustomReward, body: dict[str, Any], *, creating: bool) -> None:
    """Validate and apply a Helix create/update body (Twitch's field names and limits)."""
    for name, (attr, kind) in FIELDS.items():
        if name not in body or body[name] is None:
            continue
        value = body[name]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise CommunityError("bad_field", f"{name} must be an integer")
        if kind is not int and not isinstance(value, kind):
            raise CommunityError("bad_field", f"{name} must be a {kind.__name__}")
        setattr(reward, attr, value)
    for flag, (field, attr, minimum) in LIMITS.items():
        enabled = body.get(flag)
        value = body.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise CommunityError("bad_field", f"{field} must be an integer")
        if enabled is False:
            setattr(reward, attr, 0)
        elif enabled is True or (value is not None and enabled is None and getattr(reward, attr)):
            number = value if value is not None else getattr(reward, attr)
            if not isinstance(number, int) or number < minimum:
                raise CommunityError("bad_field", f"{field} must be at least {minimum} when {flag} is true")
            setattr(reward, attr, number)
    reward.title = points.text(reward.title or "", "title", 1, 45)
    reward.prompt = points.text(reward.prompt or "", "prompt", 0, 200)
    for _, attr, _ in LIMITS.values():
        if getattr(reward, attr) > MAX_COST:
            raise CommunityError("bad_field", f"{attr} is too large")
    if not isinstance(reward.cost, int) or not 1 <= reward.cost <= MAX_COST:
        raise CommunityError("bad_field", "cost must be at least 1")
    if not COLOR.match(reward.background_color or ""):
        raise CommunityError("bad_field", "background_color must be a hex colour such as #9147FF")
    if reward.global_cooldown_seconds > 7 * 86400:
        raise CommunityError("bad_field", "global_cooldown_seconds may be at most 604800")
    if creating and "cost" not in body:
        raise CommunityError("bad_field", "cost is required")


async def create(db: AsyncSession, *, channel_id: str, client_id: str, body: dict[str, Any],
                 out: Outbox | None = None) -> CustomReward:
    reward = CustomReward(id=str(uuid.uuid4()), channel_id=channel_id, client_id=client_id, title="", prompt="",
                          cost=0, background_color="#9147FF", is_enabled=True, is_paused=False,
                          is_user_input_required=False, max_per_stream=0, max_per_user_per_stream=0,
                          global_cooldown_seconds=0, skip_queue=False, version=0)
    apply_fields(reward, body, creating=True)
    count = await db.scalar(select(func.count()).select_from(CustomReward).where(CustomReward.channel_id == channel_id))
    if int(count or 0) >= MAX_REWARDS:
        raise CommunityError("too_many", f"A channel may have at most {MAX_REWARDS} custom rewards")
    await _unique_title(db, reward)
    db.add(reward)
    await db.flush()
    if out is not None:  # the channel page's rewards list refreshes
        out.add("", channel_id, {"type": "rewards"})
    return reward


async def _unique_title(db: AsyncSession, reward: CustomReward) -> None:
    clash = await db.scalar(select(CustomReward.id).where(CustomReward.channel_id == reward.channel_id,
                                                          CustomReward.title == reward.title,
                                                          CustomReward.id != reward.id))
    if clash is not None:
        raise CommunityError("CREATE_CUSTOM_REWARD_DUPLICATE_REWARD", "CREATE_CUSTOM_REWARD_DUPLICATE_REWARD")


async def get(db: AsyncSession, reward_id: str, channel_id: str) -> CustomReward:
    reward = await db.get(CustomReward, reward_id, populate_existing=True)
    if reward is None or reward.channel_id != channel_id:
        raise CommunityError("not_found", "The custom reward was not found", 404)
    return reward


async def update_reward(db: AsyncSession, reward: CustomReward, body: dict[str, Any],
                        out: Outbox | None = None) -> CustomReward:
    apply_fields(reward, body, creating=False)
    await _unique_title(db, reward)
    await db.flush()
    if out is not None:
        out.add("", reward.channel_id, {"type": "rewards"})
    return reward


async def delete(db: AsyncSession, out: Outbox, reward: CustomReward) -> None:
    queued = (await db.execute(select(Redemption).where(Redemption.reward_id == reward.id,
                                                        Redemption.status == UNFULFILLED))).scalars().all()
    if queued:
        await set_status(db, out, reward, [r.id for r in queued], CANCELED)
    await db.delete(reward)
    await db.flush()
    out.add("", reward.channel_id, {"type": "rewards"})


async def list_rewards(db: AsyncSession, channel_id: str, ids: Sequence[str] = (), client_id: str | None = None
                       ) -> list[CustomReward]:
    stmt = select(CustomReward).where(CustomReward.channel_id == channel_id)
    if ids:
        stmt = stmt.where(CustomReward.id.in_(ids))
    if client_id is not None:
        stmt = stmt.where(CustomReward.client_id == client_id)
    return list((await db.execute(stmt.order_by(CustomReward.created_at, CustomReward.id))).scalars().all())


async def redeem(db: AsyncSession, out: Outbox, *, channel_id: str, reward_id: str, user_id: str,
                 user_input: str = "") -> Redemption:
    now = utcnow()
    # The lock and the fresh row in one statement (RETURNING on both PostgreSQL and SQLite).
    reward = (await db.execute(
        update(CustomReward).where(CustomReward.id == reward_id, CustomReward.channel_id == channel_id)
        .values(version=CustomReward.version + 1).returning(CustomReward)
        .execution_options(synchronize_session=False, populate_existing=True))).scalar_one_or_none()
    if reward is None:
        raise CommunityError("not_found", "The custom reward was not found", 404)
    if user_id == channel_id:
        raise CommunityError("own_channel", "Broadcasters cannot redeem their own rewards", 403)
    if not reward.is_enabled:
        raise CommunityError("disabled", "This reward is not available", 409)
    if reward.is_paused:
        raise CommunityError("paused", "This reward is paused", 409)
    user_input = points.text(user_input, "The message", 0, 500)
    if reward.is_user_input_required and not user_input:
        raise CommunityError("input_required", "This reward needs a message")
    if reward.cooldown_expires_at is not None and reward.cooldown_expires_at > now:
        raise CommunityError("cooldown", "This reward is on cooldown", 409)
    stream_key = await points.current_stream_key(db, channel_id)
    if reward.max_per_stream:
        used = await db.scalar(select(func.count()).select_from(Redemption).where(
            Redemption.reward_id == reward.id, Redemption.stream_key == stream_key, Redemption.status != CANCELED))
        if int(used or 0) >= reward.max_per_stream:
            raise CommunityError("out_of_stock", "This reward reached its limit for this stream", 409)
    if reward.max_per_user_per_stream:
        mine = await db.scalar(select(func.count()).select_from(Redemption).where(
            Redemption.reward_id == reward.id, Redemption.stream_key == stream_key, Redemption.user_id == user_id,
            Redemption.status != CANCELED))
        if int(mine or 0) >= reward.max_per_user_per_stream:
            raise CommunityError("user_limit", "You reached this reward's limit for this stream", 409)
    await points.debit(db, channel_id, user_id, int(reward.cost), "redeem", ref=reward.id)
    redemption = Redemption(id=str(uuid.uuid4()), channel_id=channel_id, reward_id=reward.id, user_id=user_id,
                            user_input=user_input if reward.is_user_input_required else "",
                            status=FULFILLED if reward.skip_queue else UNFULFILLED, cost=int(reward.cost),
                            stream_key=stream_key, redeemed_at=now, seq=reward.version)
    db.add(redemption)
    if reward.global_cooldown_seconds:
        reward.cooldown_expires_at = now + dt.timedelta(seconds=reward.global_cooldown_seconds)
    await db.flush()
    out.add("channel.channel_points_custom_reward_redemption.add", channel_id,
            await event_doc(db, reward, redemption))
    out.add("", channel_id, {"type": "balance", "user_id": user_id})
    return redemption


async def set_status(db: AsyncSession, out: Outbox, reward: CustomReward, ids: Sequence[str],
                     status: str) -> list[Redemption]:
    """Fulfil or cancel queued redemptions; cancelling refunds exactly what was paid.

    Only UNFULFILLED ones change (the conditional update makes a double refund impossible even
    when two moderators click at once); the rest are left as they are and not returned.
    """
    if status not in (FULFILLED, CANCELED):
        raise CommunityError("bad_status", "status must be FULFILLED or CANCELED")
    changed: list[Redemption] = []
    for rid in ids:
        done = await db.execute(update(Redemption).where(Redemption.id == rid, Redemption.reward_id == reward.id,
                                                         Redemption.status == UNFULFILLED)
                                .values(status=status).execution_options(synchronize_session=False))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            continue
        row = await db.get(Redemption, rid, populate_existing=True)
        assert row is not None
        if status == CANCELED:
            await points.credit(db, row.channel_id, row.user_id, int(row.cost), "refund", ref=row.id,
                                idem_key=f"refund:{row.id}")
            out.add("", row.channel_id, {"type": "balance", "user_id": row.user_id})
        out.add("channel.channel_points_custom_reward_redemption.update", row.channel_id,
                await event_doc(db, reward, row))
        changed.append(row)
    return changed


async def redemptions(db: AsyncSession, *, reward: CustomReward, ids: Sequence[str] = (), status: str | None = None,
                      newest: bool = False, after: int | None = None, first: int = 20) -> list[Redemption]:
    stmt = select(Redemption).where(Redemption.reward_id == reward.id)
    if ids:
        stmt = stmt.where(Redemption.id.in_(ids))
    if status:
        stmt = stmt.where(Redemption.status == status)
    if after is not None:
        stmt = stmt.where(Redemption.seq < after if newest else Redemption.seq > after)
    stmt = stmt.order_by(Redemption.seq.desc() if newest else Redemption.seq).limit(first)
    return list((await db.execute(stmt)).scalars().all())


async def queue(db: AsyncSession, channel_id: str, limit: int = 50) -> list[Redemption]:
    """The broadcaster's request queue across all rewards, oldest first (the dashboard)."""
    stmt = (select(Redemption).where(Redemption.channel_id == channel_id, Redemption.status == UNFULFILLED)
            .order_by(Redemption.redeemed_at, Redemption.seq).limit(limit))
    return list((await db.execute(stmt)).scalars().all())


# Rendering -----------------------------------------------------------------------------------

def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def stock(db: AsyncSession, reward: CustomReward) -> tuple[int | None, bool]:
    """(redemptions this stream while live, else None; whether it can be redeemed now)."""
    live = await points.live_stream_id(db, reward.channel_id)
    used: int | None = None
    if live is not None:
        used = int(await db.scalar(select(func.count()).select_from(Redemption).where(
            Redemption.reward_id == reward.id, Redemption.stream_key == live, Redemption.status != CANCELED)) or 0)
    in_stock = not (reward.max_per_stream and used is not None and used >= reward.max_per_stream)
    if reward.cooldown_expires_at is not None and reward.cooldown_expires_at > utcnow():
        in_stock = False
    return used, in_stock


async def helix_doc(db: AsyncSession, reward: CustomReward) -> dict[str, Any]:
    """The Helix ``CustomReward`` object."""
    owner = (await users(db, {reward.channel_id})).get(reward.channel_id)
    used, in_stock = await stock(db, reward)
    cooling = reward.cooldown_expires_at is not None and reward.cooldown_expires_at > utcnow()
    return {
        "broadcaster_name": owner.display_name if owner else "", "broadcaster_login": owner.login if owner else "",
        "broadcaster_id": reward.channel_id, "id": reward.id, "image": None,
        "background_color": reward.background_color, "is_enabled": reward.is_enabled, "cost": int(reward.cost),
        "title": reward.title, "prompt": reward.prompt, "is_user_input_required": reward.is_user_input_required,
        "max_per_stream_setting": {"is_enabled": bool(reward.max_per_stream), "max_per_stream": reward.max_per_stream},
        "max_per_user_per_stream_setting": {"is_enabled": bool(reward.max_per_user_per_stream),
                                            "max_per_user_per_stream": reward.max_per_user_per_stream},
        "global_cooldown_setting": {"is_enabled": bool(reward.global_cooldown_seconds),
                                    "global_cooldown_seconds": reward.global_cooldown_seconds},
        "is_paused": reward.is_paused, "is_in_stock": in_stock,
        "default_image": {"url_1x": "/static/reward-1x.png", "url_2x": "/static/reward-2x.png",
                          "url_4x": "/static/reward-4x.png"},
        "should_redemptions_skip_request_queue": reward.skip_queue,
        "redemptions_redeemed_current_stream": used,
        "cooldown_expires_at": _rfc3339(reward.cooldown_expires_at) if cooling and reward.cooldown_expires_at
        else None,
    }


async def redemption_docs(db: AsyncSession, reward: CustomReward, rows: Sequence[Redemption]) -> list[dict[str, Any]]:
    """Helix ``CustomRewardRedemption`` objects."""
    who = await users(db, {reward.channel_id} | {r.user_id for r in rows})
    owner = who.get(reward.channel_id)
    return [{
        "broadcaster_name": owner.display_name if owner else "", "broadcaster_login": owner.login if owner else "",
        "broadcaster_id": reward.channel_id, "id": r.id, **people("user", who.get(r.user_id), r.user_id),
        "user_input": r.user_input, "status": r.status, "redeemed_at": _rfc3339(r.redeemed_at),
        "reward": {"id": reward.id, "title": reward.title, "prompt": reward.prompt, "cost": int(r.cost)},
    } for r in rows]


async def event_doc(db: AsyncSession, reward: CustomReward, r: Redemption) -> dict[str, Any]:
    """EventSub ``channel.channel_points_custom_reward_redemption.add`` / ``.update`` event."""
    who = await users(db, {reward.channel_id, r.user_id})
    return {
        "id": r.id, **people("broadcaster_user", who.get(reward.channel_id), reward.channel_id),
        **people("user", who.get(r.user_id), r.user_id), "user_input": r.user_input, "status": r.status.lower(),
        "reward": {"id": reward.id, "title": reward.title, "cost": int(r.cost), "prompt": reward.prompt},
        "redeemed_at": timestamp(r.redeemed_at),
    }
