"""The rules of password sign-in and self-service sign-up (decisions 20, 24)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.crypto import hashing, passwords
from authpi.i18n import Text, _l
from authpi.oidc.context import auth_method
from authpi.oidc.signin.flow import inactive_text, locked_text
from authpi.services import events, lockouts, users
from authpi.services.auth_method_types import TYPES
from authpi.services.errors import FieldProblem, InvalidInput
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.users import User

BAD_CREDENTIALS = _l("Incorrect username or password.")
INVALID_EMAIL = _l("Enter a valid email address.")
DOMAIN_REFUSED = _l("Sign-up is not open to this email domain.")
# What each password rule (``users.policy_problems`` codes) tells the user on a hosted page.
_POLICY_TEXTS = {
    "too_short": _l("The password must be at least %(min)s characters."),
    "too_long": _l("The password must be at most %(max)s characters."),
    "missing_uppercase": _l("The password needs an uppercase letter."),
    "missing_lowercase": _l("The password needs a lowercase letter."),
    "missing_digit": _l("The password needs a digit."),
    "missing_symbol": _l("The password needs a symbol."),
}
# Said only to whoever typed the right temporary password, so it reveals nothing to a guesser.
TEMPORARY_EXPIRED = _l("This temporary password has expired. Ask your administrator for a new one.")


# "locked": refused without checking anything, because the credential is locked.
LoginResult = Literal["success", "failure", "locked"]


@dataclass(frozen=True)
class Outcome:
    user: User | None
    error: Text | None
    result: LoginResult = "failure"
    locked_now: bool = False  # this failure reached the limit: the credential is now locked
    # The password is a temporary one (decision 30): it proves nothing until a new one is chosen.
    temporary: bool = False
    waiting: bool = False  # the right password of a user whose sign-up awaits approval


async def password_method(session: AsyncSession, issuer_id: str) -> AuthMethod | None:
    return await auth_method(session, issuer_id, "password")


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
        return Outcome(None, inactive_text(user.status), waiting=user.status == "pending_approval")
    if user.password_temporary_until is not None:
        if user.password_temporary_until <= now_ms():
            await session.commit()
            return Outcome(None, TEMPORARY_EXPIRED)
        return Outcome(user, None, "success", temporary=True)
    return Outcome(user, None, "success")


def policy_text(problem: FieldProblem, policy: dict[str, Any]) -> Text:
    """``problem`` (one of ``users.policy_problems``) in the words of the hosted pages."""
    text = _POLICY_TEXTS.get(problem.code)
    if text is None:
        return problem.message
    return text.format(
        min=policy["min_length"], max=min(int(policy["max_length"]), users.MAX_PASSWORD_LENGTH)
    )


def password_policy(method: AuthMethod | None) -> dict[str, Any]:
    return {**TYPES["password"].defaults, **(method.settings if method else {})}


# Sends the proof of a sign-up address (``email``, ``key``, ``name``, ``password_hash``): the
# account is created from them once the mailbox is proven (services/email_verification).
Verify = Callable[[str, str, str, str], Awaitable[None]]


async def signup(
    session: AsyncSession,
    issuer: Issuer,
    email: str,
    name: str,
    password: str,
    method: AuthMethod,
    *,
    verify: Verify | None = None,
) -> Text | None:
    """Self-service sign-up; returns what is wrong with the input, or None once it was accepted.

    Accepted means an account was created *or* the address was already taken; the caller answers
    both alike, so sign-up cannot be used to find out which addresses have accounts. The taken
    address's account is left untouched; the next step, signing in, is where the owner of the
    address finds out. With ``verify`` (the issuer proves sign-up addresses), nothing is created
    here: ``verify`` mails a code for a free address, and the account is created once it comes
    back (a taken address gets no mail, and the same page).
    """
    try:
        username = users.normalize_username("email", email)
    except InvalidInput:
        return INVALID_EMAIL
    key = username.key
    domains = [d.lower() for d in issuer.settings["access"].get("allowed_email_domains") or []]
    if domains and key.rsplit("@", 1)[-1] not in domains:
        return DOMAIN_REFUSED
    policy = password_policy(method)
    problems = users.policy_problems(policy, password)
    if problems:
        return policy_text(problems[0], policy)
    # Hashed whether or not the address is taken, so both answers take the same time.
    password_hash = await passwords.hash_password(password)
    if verify is not None:
        # No account until the mailbox is proven; a taken address gets no mail and the same page.
        taken = await session.scalar(
            select(User.id).where(User.issuer_id == issuer.id, User.username_key == key)
        )
        if taken is None:
            await verify(username.value, key, name.strip()[:200], password_hash)
        return None
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
        password_hash=password_hash,
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
