"""The rules of password sign-in and self-service sign-up (decisions 20, 24)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.crypto import hashing, passwords
from authpi.oidc.signin.flow import locked_text
from authpi.services import events, lockouts, users
from authpi.services.auth_method_types import TYPES
from authpi.services.errors import InvalidInput
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.users import User

BAD_CREDENTIALS = "Incorrect username or password."


# "locked": refused without checking anything, because the credential is locked.
LoginResult = Literal["success", "failure", "locked"]


@dataclass(frozen=True)
class Outcome:
    user: User | None
    error: str | None
    result: LoginResult = "failure"
    locked_now: bool = False  # this failure reached the limit: the credential is now locked
    waiting: bool = False  # the right password of a user whose sign-up awaits approval


async def password_method(session: AsyncSession, issuer_id: str) -> AuthMethod | None:
    row: AuthMethod | None = await session.scalar(
        select(AuthMethod).where(AuthMethod.issuer_id == issuer_id, AuthMethod.method == "password")
    )
    return row


def account_key(issuer: Issuer, identifier: str) -> str:
    """What counts attempts on one account of ``issuer``: the digest of the identifier's normalised
    key (the lockout's subject), the same for identifiers with and without an account, and never
    the identifier in clear (it may end up in Redis)."""
    return f"{issuer.id}:{lockouts.subject_digest(users.login_key(identifier))}"


async def verify(session: AsyncSession, issuer: Issuer, identifier: str, password: str) -> Outcome:
    """Check a password under the issuer's lockout (decision 20).

    Known and unknown identifiers take the same steps: the attempt is counted on the identifier's
    normalised key first (a lock refuses it before any hash is checked), then exactly one argon2
    verify runs, so neither the answers, their timing nor the lockout reveal whether an account
    exists. Only the right password clears the count."""
    subject = users.login_key(identifier)
    policy = lockouts.Policy.of(issuer)
    attempt = await lockouts.count_attempt(session, issuer.id, lockouts.PASSWORD, subject, policy)
    if not attempt.allowed:
        return Outcome(None, locked_text(attempt.locked_for_ms), "locked")
    found = await users.find_by_username(session, issuer.id, identifier)
    checked = found.password_hash if found else None
    verified = await passwords.verify_password(checked, password)
    # Hashed before the write transaction below starts: argon2 is slow, write turns must be short.
    stale = verified and checked is not None and passwords.needs_rehash(checked)
    rehashed = await passwords.hash_password(password) if stale else None
    # Re-read under a row lock: the status checked below is the one the new session is created under.
    user = await users.lock(session, found.id) if verified and found else None
    if user is None or user.status == "deleted":
        return Outcome(None, BAD_CREDENTIALS, locked_now=attempt.number == policy.max_failures)
    await lockouts.clear(session, issuer.id, lockouts.PASSWORD, subject)
    if rehashed is not None and user.password_hash == checked:
        user.password_hash = rehashed
    if user.status != "active":
        await session.commit()
        label = {"pending_approval": "is waiting for approval"}.get(user.status, f"is {user.status}")
        return Outcome(
            None, f"This account {label} and cannot sign in.", waiting=user.status == "pending_approval"
        )
    return Outcome(user, None, "success")


def password_policy(method: AuthMethod | None) -> dict[str, Any]:
    return {**TYPES["password"].defaults, **(method.settings if method else {})}


async def signup(
    session: AsyncSession, issuer: Issuer, email: str, name: str, password: str, method: AuthMethod
) -> str | None:
    """Self-service sign-up; returns what is wrong with the input, or None once it was accepted.

    Accepted means an account was created *or* the address was already taken; the caller answers
    both alike, so sign-up cannot be used to find out which addresses have accounts. The taken
    address's account is left untouched. Once email delivery exists, the outcome goes to the
    mailbox (a welcome, or "you already have an account"); until then the next step, signing in,
    is where the owner of the address finds out.
    """
    try:
        username = users.normalize_username("email", email)
    except InvalidInput:
        return "Enter a valid email address."
    key = username.key
    domains = [d.lower() for d in issuer.settings["access"].get("allowed_email_domains") or []]
    if domains and key.rsplit("@", 1)[-1] not in domains:
        return "Sign-up is not open to this email domain."
    problems = users.policy_problems(password_policy(method), password)
    if problems:
        return problems[0].message + "."
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
        status="pending_approval" if issuer.settings["access"]["mode"] == "approval" else "active",
        status_at=now,
        profile=profile,
        metadata_={},
        # Hashed whether or not the address is taken, so both answers take the same time.
        password_hash=await passwords.hash_password(password),
        password_changed_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    # Recorded whether or not the address is taken (same work either way); the commit keeps it
    # only with the account it describes.
    await events.emit_for(
        session,
        "user.created",
        user,
        "user",
        account_id=issuer.account_id,
        issuer_id=issuer.id,
        user_id=user.id,
    )
    if user.status == "pending_approval":
        await events.emit_for(
            session,
            "user.approval.requested",
            user,
            "user",
            account_id=issuer.account_id,
            issuer_id=issuer.id,
            user_id=user.id,
        )
    try:
        # The unique (issuer, username key) decides, also between concurrent sign-ups.
        await session.commit()
    except IntegrityError:
        await session.rollback()
    return None
