"""High-entropy secrets (API-key and client secrets) are stored as SHA-256 digests (decision 4)."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_secret(prefix: str = "", nbytes: int = 32) -> str:
    return prefix + secrets.token_urlsafe(nbytes)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def matches(secret: str, stored_digest: str) -> bool:
    """Constant-time comparison of a presented secret against its stored digest."""
    return hmac.compare_digest(digest(secret), stored_digest)


def hint(secret: str) -> str:
    """The last eight characters: enough to tell keys apart, useless to an attacker."""
    return secret[-8:]
