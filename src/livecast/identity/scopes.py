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


# What the consent page tells a user each scope lets an app do (Twitch's wording where it has one).
DESCRIPTIONS: dict[str, str] = {
    "chat:read": "View live stream chat messages",
    "chat:edit": "Send live stream chat messages",
    "user:read:email": "View your email address",
    "user:edit": "Manage your user information",
    "user:read:follows": "View the list of channels you follow",
    "user:read:subscriptions": "View your channel subscriptions",
    "user:read:chat": "Receive chatroom messages and informational notifications",
    "user:write:chat": "Send chat messages to a chatroom",
    "user:bot": "Join your channel's chatroom as a bot user",
    "user:manage:whispers": "Receive and send whispers on your behalf",
    "user:manage:blocked_users": "Manage your block list",
    "user:manage:chat_color": "Update the color used for your name in chat",
    "channel:bot": "Join your channel's chatroom as a bot user",
    "channel:manage:broadcast": "Manage your channel's broadcast configuration",
    "channel:manage:raids": "Start raids to other channels",
    "channel:manage:moderators": "Add or remove the moderator role from users in your channel",
    "channel:manage:vips": "Add or remove the VIP role from users in your channel",
    "channel:read:stream_key": "View your stream key",
    "channel:read:subscriptions": "View a list of all subscribers to your channel",
    "channel:moderate": "Perform moderation actions in a channel",
    "clips:edit": "Create clips from a broadcast or video",
    "moderation:read": "View your channel's moderation data",
    "moderator:read:followers": "Read the followers of a broadcaster",
    "moderator:read:chatters": "View the chatters in a broadcaster's chat room",
    "moderator:manage:banned_users": "Ban and unban users",
    "moderator:manage:chat_messages": "Delete chat messages in channels where you have the moderator role",
    "moderator:manage:chat_settings": "Manage a broadcaster's chat room settings",
    "moderator:manage:announcements": "Send announcements in channels where you have the moderator role",
    "whispers:read": "View your whisper messages",
    "whispers:edit": "Send whisper messages",
}


def describe(scope: str) -> str:
    return DESCRIPTIONS.get(scope, scope.replace(":", " ").replace("_", " ").capitalize())
