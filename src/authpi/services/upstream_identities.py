"""Identities at upstream providers linked to users (``upstream_identities``), and the users
created from them (just-in-time sign-up).

A link is made only for a verified email, and only in one of two ways: the user was just created
from that identity, or the user proved the existing account with its own first factor in the same
sign-in (``account_linking_required``). Matching an email never links on its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.crypto import hashing
from authpi.crypto.secretbox import SecretBox
from authpi.services import events, users
from authpi.services.errors import InvalidInput
from authpi.storage.tables.auth_methods import AuthMethod
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.upstream import UpstreamIdentity
from authpi.storage.tables.users import User

TOKEN_FIELDS = ("access_token", "refresh_token", "id_token", "expires_in", "scope", "token_type")


@dataclass(frozen=True)
class Found:
    """An upstream identity as the accounts rules see it."""

    method_id: str | None  # the auth method's provider, or
    subject: str
    email: str | None
    email_verified: bool
    profile: dict[str, Any]
    org_id: str | None = None  # the organization's SSO connection


def _seal_context(identity_id: str) -> str:
    return f"upstream_identity:{identity_id}"


def sealed_tokens(box: SecretBox, identity_id: str, tokens: dict[str, Any] | None) -> str | None:
    """The provider's tokens sealed for the link ``identity_id``, when the method keeps them."""
    if not tokens:
        return None
    kept = {key: tokens[key] for key in TOKEN_FIELDS if key in tokens}
    kept["received_at"] = now_ms()
    return box.seal_json(kept, _seal_context(identity_id))


def tokens_of(box: SecretBox, row: UpstreamIdentity) -> dict[str, Any] | None:
    return box.open_json(row.sealed_tokens, _seal_context(row.id)) if row.sealed_tokens else None


async def linked(session: AsyncSession, method_id: str, subject: str) -> UpstreamIdentity | None:
    row: UpstreamIdentity | None = await session.scalar(
        select(UpstreamIdentity).where(
            UpstreamIdentity.method_id == method_id, UpstreamIdentity.subject == subject
        )
    )
    return row


async def linked_to_org(session: AsyncSession, org_id: str, subject: str) -> UpstreamIdentity | None:
    """The link of ``subject`` at the SSO connection of ``org_id``, if any."""
    row: UpstreamIdentity | None = await session.scalar(
        select(UpstreamIdentity).where(UpstreamIdentity.org_id == org_id, UpstreamIdentity.subject == subject)
    )
    return row


async def of_user(session: AsyncSession, user_id: str) -> list[UpstreamIdentity]:
    rows = await session.scalars(
        select(UpstreamIdentity).where(UpstreamIdentity.user_id == user_id).order_by(UpstreamIdentity.id)
    )
    return list(rows)


async def user_by_email(session: AsyncSession, issuer_id: str, email: str) -> User | None:
    """The issuer's user whose username is ``email`` (deleted users aside)."""
    try:
        key = users.normalize_username("email", email).key
    except InvalidInput:
        return None
    user: User | None = await session.scalar(
        select(User).where(User.issuer_id == issuer_id, User.username_key == key, User.deleted_at.is_(None))
    )
    return user


def used(row: UpstreamIdentity, box: SecretBox, email: str | None, tokens: dict[str, Any] | None) -> None:
    """A returning identity signed in: note when, its current email and (if kept) its tokens."""
    row.last_used_at = now_ms()
    row.email = email[:320] if email else row.email
    if tokens:
        row.sealed_tokens = sealed_tokens(box, row.id, tokens)


async def link(
    session: AsyncSession,
    box: SecretBox,
    issuer: Issuer,
    user: User,
    found: Found,
    tokens: dict[str, Any] | None,
    *,
    provisioned: bool = False,
) -> UpstreamIdentity:
    """Link ``found`` to ``user`` (added; the caller commits, and the unique (method, subject)
    decides between concurrent links). ``user.sso.linked`` is recorded for an existing account,
    ``user.sso.provisioned`` for one just created from the identity."""
    now = now_ms()
    row_id = ids.ulid("uid_")
    row = UpstreamIdentity(
        id=row_id,
        issuer_id=issuer.id,
        method_id=found.method_id,
        org_id=found.org_id,
        subject=found.subject,
        user_id=user.id,
        email=found.email[:320] if found.email else None,
        sealed_tokens=sealed_tokens(box, row_id, tokens),
        created_at=now,
        last_used_at=now,
    )
    session.add(row)
    await events.emit(
        session,
        "user.sso.provisioned" if provisioned else "user.sso.linked",
        subject={"type": "user", "id": user.id},
        data={"method_id": found.method_id, "org_id": found.org_id, "identity_id": row_id},
        account_id=issuer.account_id,
        issuer_id=issuer.id,
        user_id=user.id,
    )
    return row


async def provision(session: AsyncSession, issuer: Issuer, found: Found) -> User:
    """A new user from a verified upstream identity (added with its events; the caller links it
    and commits: the unique username decides between concurrent sign-ups)."""
    assert found.email is not None and found.email_verified
    username = users.normalize_username("email", found.email)
    now = now_ms()
    approval = issuer.settings["access"]["mode"] == "approval"
    user = User(
        id=ids.user_id(),
        issuer_id=issuer.id,
        username_type="email",
        username=username.value,
        username_key=username.key,
        username_hash=hashing.digest(username.key),
        status="pending_approval" if approval else "active",
        status_at=now,
        profile=dict(found.profile),
        metadata_={},
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    kinds = ["user.created", "user.approval.requested"] if approval else ["user.created"]
    for kind in kinds:
        await events.emit_for(
            session, kind, user, "user", account_id=issuer.account_id, issuer_id=issuer.id, user_id=user.id
        )
    return user


def email_allowed(issuer: Issuer, email: str) -> bool:
    domains = [d.lower() for d in issuer.settings["access"].get("allowed_email_domains") or []]
    return not domains or email.rsplit("@", 1)[-1].lower() in domains


def pending_link(box: SecretBox, user: User, found: Found, tokens: dict[str, Any] | None) -> dict[str, Any]:
    """What a sign-in keeps while ``account_linking_required`` waits for ``user`` to prove the
    existing account (stored with the sign-in's progress; the tokens, if kept, stay sealed)."""
    context = f"upstream_link:{user.id}:{found.method_id}"
    return {
        "user_id": user.id,
        "method_id": found.method_id,
        "subject": found.subject,
        "email": found.email,
        "tokens": box.seal_json(tokens, context) if tokens else None,
    }


async def complete(
    session: AsyncSession, box: SecretBox, issuer: Issuer, user: User, pending: dict[str, Any]
) -> UpstreamIdentity | None:
    """Make the link ``pending_link`` described, now that ``user`` proved the account (added; the
    caller commits). Nothing happens when the method is gone or the identity got linked meanwhile."""
    method_id, subject = pending.get("method_id"), pending.get("subject")
    if not isinstance(method_id, str) or not isinstance(subject, str):
        return None
    method = await session.get(AuthMethod, method_id)
    if method is None or method.issuer_id != issuer.id or await linked(session, method_id, subject):
        return None
    sealed = pending.get("tokens")
    context = f"upstream_link:{user.id}:{method_id}"
    tokens = box.open_json(sealed, context) if isinstance(sealed, str) else None
    email = pending.get("email") if isinstance(pending.get("email"), str) else None
    try:
        # In a savepoint: a concurrent sign-in that linked the same identity first wins, and this
        # sign-in goes on without the link (and without its event).
        async with session.begin_nested():
            row = await link(session, box, issuer, user, Found(method_id, subject, email, True, {}), tokens)
            await session.flush()
    except IntegrityError:
        return None
    return row
