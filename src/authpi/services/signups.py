"""Accounts created by their owner from a proven address (sign-up with a code sent to it): the
address is verified by construction, and no password is set."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.crypto import hashing
from authpi.services import events, users
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.users import User

VERIFIED_CLAIM = {"email": "email_verified", "phone": "phone_number_verified"}


async def create(
    session: AsyncSession, issuer: Issuer, username_type: str, username: str, name: str
) -> User | None:
    """Create and commit (with what the caller wrote, e.g. the spent code) the account of
    ``username``, an address whose owner just proved it; None when the issuer already has an
    account with it. The unique (issuer, username key) decides between concurrent sign-ups."""
    normalized = users.normalize_username(username_type, username)
    if await users.find_by_username(session, issuer.id, normalized.value) is not None:
        await session.commit()
        return None
    now = now_ms()
    profile: dict[str, Any] = {VERIFIED_CLAIM[username_type]: True}
    if name.strip():
        profile["name"] = name.strip()[:200]
    user = User(
        id=ids.user_id(),
        issuer_id=issuer.id,
        username_type=username_type,
        username=normalized.value,
        username_key=normalized.key,
        username_hash=hashing.digest(normalized.key),
        status="pending_approval" if issuer.settings["access"]["mode"] == "approval" else "active",
        status_at=now,
        profile=profile,
        metadata_={},
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    kinds = ["user.created"] + (["user.approval.requested"] if user.status == "pending_approval" else [])
    for kind in kinds:
        await events.emit_for(
            session, kind, user, "user", account_id=issuer.account_id, issuer_id=issuer.id, user_id=user.id
        )
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return None
    return user
