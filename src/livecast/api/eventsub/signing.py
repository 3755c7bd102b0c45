"""Webhook message signatures: ``sha256=`` HMAC-SHA256 over message id + timestamp + body."""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), message_id.encode() + timestamp.encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, message_id: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, message_id, timestamp, body), signature)
