"""Livecast: a self-hostable, Twitch-compatible live streaming platform."""

__version__ = "0.1.0"
