"""Twitch's OAuth2 scope names, so tokens minted here mean what bots expect them to mean."""

from __future__ import annotations

SCOPES: frozenset[str] = frozenset(
    {
        "analytics:read:extensions", "analytics:read:games", "bits:read",
        "channel:bot", "channel:edit:commercial", "channel:manage:ads", "channel:manage:broadcast",
        "channel:manage:extensions", "channel:manage:guest_star", "channel:manage:moderators",
        "channel:manage:polls", "channel:manage:predictions", "channel:manage:raids",
        "channel:manage:redemptions", "channel:manage:schedule", "channel:manage:videos",
        "channel:manage:vips", "channel:moderate", "channel:read:ads", "channel:read:charity",
        "channel:read:editors", "channel:read:goals", "channel:read:guest_star", "channel:read:hype_train",
        "channel:read:polls", "channel:read:predictions", "channel:read:redemptions",
        "channel:read:stream_key", "channel:read:subscriptions", "channel:read:vips",
        "chat:edit", "chat:read", "clips:edit", "moderation:read",
        "moderator:manage:announcements", "moderator:manage:automod", "moderator:manage:automod_settings",
        "moderator:manage:banned_users", "moderator:manage:blocked_terms", "moderator:manage:chat_messages",
        "moderator:manage:chat_settings", "moderator:manage:shield_mode", "moderator:manage:shoutouts",
        "moderator:manage:unban_requests", "moderator:manage:warnings",
        "moderator:read:automod_settings", "moderator:read:blocked_terms", "moderator:read:chat_settings",
        "moderator:read:chatters", "moderator:read:followers", "moderator:read:moderators",
        "moderator:read:vips", "moderator:read:banned_users", "moderator:read:chat_messages",
        "user:bot", "user:edit", "user:edit:broadcast", "user:manage:blocked_users",
        "user:manage:chat_color", "user:manage:whispers", "user:read:blocked_users",
        "user:read:broadcast", "user:read:chat", "user:read:email", "user:read:emotes",
        "user:read:follows", "user:read:moderated_channels", "user:read:subscriptions",
        "user:read:whispers", "user:write:chat", "whispers:read", "whispers:edit",
    }
)


def parse_scopes(raw: str | None) -> list[str]:
    """Twitch separates scopes with spaces (``+`` in URLs, which form decoding already turns into spaces)."""
    if not raw:
        return []
    seen: dict[str, None] = {}
    for part in raw.replace("+", " ").split():
        seen[part] = None
    return list(seen)


def unknown_scopes(scopes: list[str]) -> list[str]:
    return [s for s in scopes if s not in SCOPES]
