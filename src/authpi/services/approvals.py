"""Sign-up approvals (core-api rows 49-51, idp-api §C.5): users who signed up to an issuer in
``approval`` mode wait as ``pending_approval`` (no session, no token) until an admin approves them
(``active``) or rejects them (``blocked``); either way they are told by email."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from authpi.clock import now_ms
from authpi.crypto.secretbox import SecretBox
from authpi.services import events, messages, versions
from authpi.services.errors import Conflict, InvalidInput, NotFound
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.users import User

PENDING = "pending_approval"
DECISIONS = {"approve": "active", "reject": "blocked", "active": "active", "blocked": "blocked"}


def list_statement(issuer_id: str) -> Select[Any]:
    """Pending users, oldest sign-up first (the page pages forward on the ID)."""
    return select(User).where(User.issuer_id == issuer_id, User.status == PENDING)


async def get(session: AsyncSession, issuer_id: str, user_id: str, *, for_update: bool = False) -> User:
    """A user awaiting approval, or one an approval was decided for."""
    stmt = select(User).where(User.id == user_id, User.issuer_id == issuer_id, User.status != "deleted")
    user = await session.scalar(versions.for_update(stmt) if for_update else stmt)
    if user is None or (user.status != PENDING and user.approval is None):
        raise NotFound("Approval")
    return user


def target_status(body: dict[str, Any]) -> str:
    decision = body.get("decision") or body.get("status")
    if decision not in DECISIONS:
        raise InvalidInput.on(
            "status",
            "invalid_choice",
            "Send status active (approve) or blocked (reject), or decision approve|reject",
        )
    return DECISIONS[decision]


async def decide(
    session: AsyncSession,
    box: SecretBox,
    issuer: Issuer,
    user_id: str,
    body: dict[str, Any],
    if_match: str | None,
    by: str | None,
) -> User:
    status = target_status(body)
    user = await get(session, issuer.id, user_id, for_update=True)
    await versions.claim(session, user, "User", if_match)
    if user.status != PENDING:
        raise Conflict(f"This user is {user.status}: the approval was already decided")
    now = now_ms()
    reason = body.get("status_reason")
    user.status = status
    user.status_at = now
    user.status_reason = reason
    user.status_by = body.get("status_by") or by
    approved = status == "active"
    user.approval = {
        "status": "approved" if approved else "rejected",
        "decided_at": now,
        "decided_by": user.status_by,
        "reason": reason,
    }
    await session.flush()
    kind = "user.approval.approved" if approved else "user.approval.rejected"
    await events.emit_for(session, kind, user, "user", issuer_id=issuer.id, user_id=user.id)
    if user.username_type == "email":
        await messages.enqueue(
            session,
            box,
            account_id=issuer.account_id,
            issuer=issuer,
            channel="email",
            recipient=user.username,
            template="approval",
            context={"approved": approved, "reason": None if approved else reason},
        )
    return user
