"""Password sign-in and self-service signup rules used by the hosted pages (decisions 20, 24)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.crypto import hashing, passwords
from authpi.services.auth_method_types import TYPES
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


async def find_user(session: AsyncSession, issuer_id: str, identifier: str) -> User | None:
    cleaned = identifier.strip()
    candidates = {cleaned, cleaned.lower()}
    user: User | None = await session.scalar(
        select(User).where(
            User.issuer_id == issuer_id, User.username_key.in_(candidates), User.status != "deleted"
        )
    )
    return user


async def verify(session: AsyncSession, issuer: Issuer, identifier: str, password: str) -> Outcome:
    """Check a password with lockout: after ``max_failures`` misses the credential locks for
    ``duration`` seconds. Unknown users cost one argon2 verify too, so timing reveals nothing."""
    lockout = issuer.settings["security"]["lockout"]
    user = await find_user(session, issuer.id, identifier)
    now = now_ms()
    if user is not None and user.password_locked_until and user.password_locked_until > now:
        minutes = max(1, (user.password_locked_until - now) // 60000)
        return Outcome(None, f"Too many failed attempts. Try again in {minutes} minute(s).")
    ok = await passwords.verify_password(user.password_hash if user else None, password)
    if user is None:
        return Outcome(None, BAD_CREDENTIALS)
    if not ok:
        user.password_failures = (user.password_failures or 0) + 1
        if user.password_failures >= int(lockout["max_failures"]):
            user.password_locked_until = now + int(lockout["duration"]) * 1000
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


def policy_problem(policy: dict[str, Any], password: str) -> str | None:
    if len(password) < policy["min_length"]:
        return f"The password must be at least {policy['min_length']} characters."
    if len(password) > policy["max_length"]:
        return f"The password must be at most {policy['max_length']} characters."
    checks = (
        ("require_uppercase", str.isupper, "an uppercase letter"),
        ("require_lowercase", str.islower, "a lowercase letter"),
        ("require_digit", str.isdigit, "a digit"),
        ("require_symbol", lambda c: not c.isalnum(), "a symbol"),
    )
    for flag, test, label in checks:
        if policy.get(flag) and not any(test(c) for c in password):
            return f"The password must contain {label}."
    return None


async def signup(
    session: AsyncSession, issuer: Issuer, email: str, name: str, password: str, method: AuthMethod
) -> Outcome:
    from email_validator import EmailNotValidError, validate_email

    mode = issuer.settings["access"]["mode"]
    try:
        normalized = validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError:
        return Outcome(None, "Enter a valid email address.")
    key = normalized.lower()
    domains = [d.lower() for d in issuer.settings["access"].get("allowed_email_domains") or []]
    if domains and key.rsplit("@", 1)[-1] not in domains:
        return Outcome(None, "Sign-up is not open to this email domain.")
    problem = policy_problem(password_policy(method), password)
    if problem:
        return Outcome(None, problem)
    if await find_user(session, issuer.id, key) is not None:
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
        username=normalized,
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
