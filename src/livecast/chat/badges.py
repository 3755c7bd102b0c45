"""Badges computed per message from who the sender is in the channel, as Twitch tags them."""

from __future__ import annotations

from dataclasses import dataclass

SUBSCRIBER_BADGE_STEPS = (0, 3, 6, 9, 12, 24, 36, 48, 60, 72, 84, 96, 108)


@dataclass(frozen=True)
class Standing:
    """Everything about a chatter in one channel that affects badges, rules and tags."""

    is_broadcaster: bool = False
    is_moderator: bool = False
    is_vip: bool = False
    is_subscriber: bool = False
    sub_months: int = 0
    sub_tier: int = 0
    is_partner: bool = False
    is_staff: bool = False

    @property
    def is_privileged(self) -> bool:
        """Broadcaster, moderators and staff skip the room modes and get the higher rate limit."""
        return self.is_broadcaster or self.is_moderator or self.is_staff


def subscriber_badge_version(months: int, tier: int) -> str:
    step = max(s for s in SUBSCRIBER_BADGE_STEPS if s <= max(0, months))
    prefix = {2000: 2000, 3000: 3000}.get(tier, 0)
    return str(prefix + step)


def badges(standing: Standing) -> tuple[str, str]:
    """``(badges, badge-info)`` tag values, in Twitch's order (most important first)."""
    out: list[str] = []
    if standing.is_staff:
        out.append("staff/1")
    if standing.is_broadcaster:
        out.append("broadcaster/1")
    elif standing.is_moderator:
        out.append("moderator/1")
    if standing.is_vip:
        out.append("vip/1")
    info = ""
    if standing.is_subscriber:
        out.append(f"subscriber/{subscriber_badge_version(standing.sub_months, standing.sub_tier)}")
        info = f"subscriber/{max(1, standing.sub_months)}"
    if standing.is_partner:
        out.append("partner/1")
    return ",".join(out), info


def user_type(standing: Standing) -> str:
    if standing.is_staff:
        return "staff"
    if standing.is_moderator and not standing.is_broadcaster:
        return "mod"
    return ""
