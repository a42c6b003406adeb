"""Password sign-in and self-service signup rules used by the hosted pages (decisions 20, 24)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.crypto import hashing, passwords
from authpi.ratelimit import RateLimits
from authpi.services import users
from authpi.services.auth_method_types import TYPES
from authpi.services.errors import InvalidInput
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.users import User

BAD_CREDENTIALS = "Incorrect username or password."


@dataclass(frozen=True)
class Outcome:
    user: User | None
    error: str | None


async def password_method(session: AsyncSession, issuer_id: str) -> AuthMethod | None:
    row: AuthMethod | None = await session.scalar(
        select(AuthMethod).where(AuthMethod.issuer_id == issuer_id, AuthMethod.method == "password")
    )
    return row


def _locked_message(seconds: int) -> str:
    return f"Too many failed attempts. Try again in {max(1, seconds // 60)} minute(s)."


async def verify(
    session: AsyncSession, limits: RateLimits, issuer: Issuer, identifier: str, password: str
) -> Outcome:
    """Check a password with lockout: after ``max_failures`` misses the credential locks for
    ``duration`` seconds. Unknown usernames cost one argon2 verify and lock the same way, so
    neither timing nor the lockout message reveals whether an account exists."""
    lockout = issuer.settings["security"]["lockout"]
    max_failures, duration = int(lockout["max_failures"]), int(lockout["duration"])
    user = await users.find_by_username(session, issuer.id, identifier)
    phantom = f"{issuer.id}:{identifier.strip().lower()}"
    now = now_ms()
    if user is not None and user.password_locked_until and user.password_locked_until > now:
        return Outcome(None, _locked_message((user.password_locked_until - now) // 1000))
    if user is None:
        locked = await limits.failure_lock("phantom_lockout", phantom, max_failures, duration, hit=False)
        if locked:
            return Outcome(None, _locked_message(locked))
    ok = await passwords.verify_password(user.password_hash if user else None, password)
    if user is None:
        await limits.failure_lock("phantom_lockout", phantom, max_failures, duration, hit=True)
        return Outcome(None, BAD_CREDENTIALS)
    if not ok:
        user.password_failures = (user.password_failures or 0) + 1
        if user.password_failures >= max_failures:
            user.password_locked_until = now + duration * 1000
            user.password_failures = 0
        await session.commit()
        return Outcome(None, BAD_CREDENTIALS)
    user.password_failures = 0
    user.password_locked_until = None
    if user.password_hash and passwords.needs_rehash(user.password_hash):
        user.password_hash = await passwords.hash_password(password)
    if user.status != "active":
        await session.commit()
        label = {"pending_approval": "is waiting for approval"}.get(user.status, f"is {user.status}")
        return Outcome(None, f"This account {label} and cannot sign in.")
    return Outcome(user, None)


def password_policy(method: AuthMethod | None) -> dict[str, Any]:
    return {**TYPES["password"].defaults, **(method.settings if method else {})}


async def signup(
    session: AsyncSession, issuer: Issuer, email: str, name: str, password: str, method: AuthMethod
) -> Outcome:
    mode = issuer.settings["access"]["mode"]
    try:
        username = users.normalize_username("email", email)
    except InvalidInput:
        return Outcome(None, "Enter a valid email address.")
    key = username.key
    domains = [d.lower() for d in issuer.settings["access"].get("allowed_email_domains") or []]
    if domains and key.rsplit("@", 1)[-1] not in domains:
        return Outcome(None, "Sign-up is not open to this email domain.")
    problems = users.policy_problems(password_policy(method), password)
    if problems:
        return Outcome(None, problems[0].message + ".")
    if await users.find_by_username(session, issuer.id, key) is not None:
        # Same answer as success would not be possible without email verification; say it plainly.
        return Outcome(None, "An account with this email already exists. Sign in instead.")
    now = now_ms()
    profile: dict[str, Any] = {"email_verified": False}
    if name.strip():
        profile["name"] = name.strip()[:200]
    user = User(
        id=ids.user_id(),
        issuer_id=issuer.id,
        username_type="email",
        username=username.value,
        username_key=key,
        username_hash=hashing.digest(key),
        status="pending_approval" if mode == "approval" else "active",
        status_at=now,
        profile=profile,
        metadata_={},
        password_hash=await passwords.hash_password(password),
        password_changed_at=now,
        password_failures=0,
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    await session.flush()
    return Outcome(user, None)
