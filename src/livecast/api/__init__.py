"""The Twitch-compatible API surface: OAuth2, Helix, EventSub, and operations endpoints."""
