"""Live viewer counting: signed playback tokens, heartbeats, and distinct counts per minute.

A player asks for a playback token (bound to one *viewer session*: the signed-in user, or the
browser's viewer cookie) and sends heartbeats with it. Each heartbeat adds the session to a
per-channel, per-minute distinct set on the bus (Redis HyperLogLog in scale-out), so every
device, process and node of one session counts once, and a client that replays heartbeats or
opens more tabs adds nothing. The count is the union of the current and previous minute.
The token and key helpers are pure; only :func:`heartbeat` and :func:`count` touch the bus.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from livecast.bus import Bus

TOKEN_LIFETIME = 6 * 3600
MINUTE = 60
KEY_TTL = 3 * MINUTE
SECRET_KEY = "discovery:playback-secret"
ANON_PER_ADDRESS = 20


@dataclass(frozen=True)
class PlaybackGrant:
    channel_id: str
    session_id: str
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_token(secret: bytes, channel_id: str, session_id: str, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + TOKEN_LIFETIME)
    body = _b64(json.dumps([channel_id, session_id, expires], separators=(",", ":")).encode())
    mac = _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())
    return f"{body}.{mac}"


def verify_token(secret: bytes, token: str, now: float | None = None) -> PlaybackGrant | None:
    """The grant a token carries, or None when it is forged, malformed or expired."""
    # Tokens are base64url and one dot. Anything else is refused before it is encoded: JSON's
    # "\ud800" is a lone surrogate that str.encode() refuses, and compare_digest refuses
    # non-ASCII str (both were 500s on /api/heartbeat, found by fuzzing).
    if len(token) > 512 or token.count(".") != 1 or not token.isascii():
        return None
    body, mac = token.split(".")
    expected = _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(mac.encode(), expected.encode()):
        return None
    try:
        channel_id, session_id, expires = json.loads(_unb64(body))
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        return None
    if not (isinstance(channel_id, str) and isinstance(session_id, str) and isinstance(expires, int)):
        return None
    if expires < (time.time() if now is None else now):
        return None
    return PlaybackGrant(channel_id, session_id, expires)


def minute_key(channel_id: str, minute: int) -> str:
    return f"viewers:{channel_id}:{minute}"


def current_minute(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // MINUTE)


async def shared_secret(bus: Bus, configured: str) -> bytes:
    """The HMAC key: ``LIVECAST_SECRET_KEY`` when set, else one random key shared over the bus.

    With Redis every process agrees on the first key written; in memory it lives as long as
    the process, which only costs viewers a new token after a restart.
    """
    if configured:
        return hashlib.sha256(b"livecast-playback:" + configured.encode()).digest()
    await bus.set(SECRET_KEY, secrets.token_hex(32).encode(), only_if_absent=True)
    value = await bus.get(SECRET_KEY)
    if value is None:  # evicted between the two calls; try once more
        await bus.set(SECRET_KEY, secrets.token_hex(32).encode(), only_if_absent=True)
        value = await bus.get(SECRET_KEY) or b""
    return value


async def heartbeat(bus: Bus, grant: PlaybackGrant, now: float | None = None, *, address: str = "") -> bool:
    """Count ``grant``'s session as watching this minute; True if it was not counted yet.

    Anonymous sessions cost nothing to mint, so one network address counts for at most
    :data:`ANON_PER_ADDRESS` of them per channel and minute (enough for a household or a
    small office behind one NAT, not for a script minting viewers).
    """
    key = minute_key(grant.channel_id, current_minute(now))
    if address and grant.session_id.startswith("a:"):
        per_address = f"{key}:addr:{address}"
        await bus.hll_add(per_address, grant.session_id, ttl=KEY_TTL)
        if await bus.hll_count(per_address) > ANON_PER_ADDRESS:
            return False
    return await bus.hll_add(key, grant.session_id, ttl=KEY_TTL)


async def count(bus: Bus, channel_id: str, now: float | None = None) -> int:
    minute = current_minute(now)
    return await bus.hll_count(minute_key(channel_id, minute), minute_key(channel_id, minute - 1))


async def count_many(bus: Bus, channel_ids: Sequence[str], now: float | None = None) -> list[int]:
    """:func:`count` for every channel in one bus round trip (the worker's tick)."""
    minute = current_minute(now)
    return await bus.hll_counts([(minute_key(c, minute), minute_key(c, minute - 1)) for c in channel_ids])
