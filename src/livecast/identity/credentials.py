"""Hashing of passwords (argon2), stream keys and tokens (SHA-256 of high-entropy values)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
_ALNUM = string.ascii_lowercase + string.digits


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def random_token(length: int = 30) -> str:
    """Twitch access tokens are 30 lowercase alphanumerics; ours look the same."""
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def new_stream_key(user_id: str) -> str:
    return f"live_{user_id}_{secrets.token_urlsafe(24)}"
