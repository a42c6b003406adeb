"""Organization invitations (core-api rows 88-93, §C.9): an email with a link to the issuer's hosted
invitation page, where the invitee signs in or up and accepts (one membership, once) or declines.

The link's secret is stored only as its SHA-256; a resend mails a fresh link (the previous one stops
working) at most once per ``RESEND_COOLDOWN_MS``. Accepting, declining and revoking each move a
pending invitation with one guarded UPDATE, so two of them racing cannot both succeed; an invitation
past ``expires_at`` reads as ``expired`` and can no longer be used.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import Select, and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import i18n, ids
from authpi.clock import now_ms
from authpi.crypto import hashing
from authpi.crypto.secretbox import SecretBox
from authpi.services import events, messages, organizations, versions
from authpi.services.clients import scope_names
from authpi.services.errors import Conflict, InvalidInput, NotFound, RateLimited
from authpi.services.users import normalize_username
from authpi.storage.tables.issuers import Issuer
from authpi.storage.tables.organizations import Invitation, Membership, Organization

DEFAULT_TTL_S = 14 * 86400
TTL_RANGE_S = (300, 90 * 86400)
RESEND_COOLDOWN_MS = 60_000
STATUSES = ("pending", "accepted", "declined", "revoked", "expired")


def effective_status(invitation: Invitation, now: int | None = None) -> str:
    if invitation.status == "pending" and invitation.expires_at <= (now or now_ms()):
        return "expired"
    return invitation.status


def link(issuer_url: str, token: str) -> str:
    return f"{issuer_url}/invitations/{token}"


def _expires_at(seconds: Any, now: int) -> int:
    low, high = TTL_RANGE_S
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not low <= seconds <= high:
        raise InvalidInput.on(
            "expires_in_seconds", "out_of_range", f"expires_in_seconds must be from {low} to {high}"
        )
    return now + seconds * 1000


async def _emit(session: AsyncSession, kind: str, invitation: Invitation) -> None:
    await events.emit_for(
        session, kind, invitation, "organization_invitation", issuer_id=invitation.issuer_id
    )


def _new_token(invitation: Invitation) -> str:
    token = secrets.token_urlsafe(32)
    invitation.token_digest = hashing.digest(token)
    return token


async def _mail(
    session: AsyncSession, box: SecretBox, issuer: Issuer, org: Organization, invitation: Invitation, url: str
) -> None:
    inviter = (invitation.inviter or {}).get("name") or org.name or i18n._l("An administrator")
    await messages.enqueue(
        session,
        box,
        account_id=issuer.account_id,
        issuer=issuer,
        channel="email",
        recipient=invitation.email_invited,
        template="invitation",
        context={
            "inviter": inviter,
            "org_name": org.name or org.id,
            "message": invitation.message or org.invitation_message,
            "link": url,
            "expires": i18n.LazyDateTime(invitation.expires_at),  # in the message's language
        },
    )
    invitation.last_email_sent_at = now_ms()


async def create(
    session: AsyncSession,
    box: SecretBox,
    issuer: Issuer,
    org: Organization,
    body: dict[str, Any],
    issuer_url: str,
) -> Invitation:
    if not org.invitation_enabled:
        raise Conflict("Invitations are switched off for this organization (invitation_enabled)")
    if org.status != "active":
        raise Conflict("A suspended organization cannot invite")
    email = normalize_username("email", body["email_invited"]).key  # stored lowercased
    granted = scope_names("scopes", body.get("scopes"))
    if not granted:
        raise InvalidInput.on("scopes", "required", "An invitation grants at least one scope")
    now = now_ms()
    pending = await session.scalar(
        select(Invitation.id).where(
            Invitation.org_id == org.id,
            Invitation.email_invited == email,
            Invitation.status == "pending",
            Invitation.expires_at > now,
        )
    )
    if pending:
        raise Conflict(f"{email} already has a pending invitation ({pending}); resend or revoke it")
    invitation = Invitation(
        id=ids.invitation_id(),
        org_id=org.id,
        issuer_id=org.issuer_id,
        status="pending",
        email_invited=email,
        user_id_invited=body.get("user_id_invited"),
        user_title=body.get("user_title"),
        message=body.get("message"),
        scopes=granted,
        inviter=body.get("inviter"),
        expires_at=_expires_at(body.get("expires_in_seconds", DEFAULT_TTL_S), now),
        metadata_=body.get("metadata") or {},
        created_at=now,
        updated_at=now,
    )
    token = _new_token(invitation)
    await _mail(session, box, issuer, org, invitation, link(issuer_url, token))
    session.add(invitation)
    await session.flush()
    await _emit(session, "organization.invitation.created", invitation)
    return invitation


def list_statement(org_id: str, status: str | None) -> Select[Any]:
    stmt = select(Invitation).where(Invitation.org_id == org_id)
    now = now_ms()
    if status == "expired":
        stmt = stmt.where(Invitation.status == "pending", Invitation.expires_at <= now)
    elif status == "pending":
        stmt = stmt.where(Invitation.status == "pending", Invitation.expires_at > now)
    elif status:
        stmt = stmt.where(Invitation.status == status)
    return stmt


async def get(
    session: AsyncSession, org_id: str, invitation_id: str, *, for_update: bool = False
) -> Invitation:
    stmt = select(Invitation).where(Invitation.id == invitation_id, Invitation.org_id == org_id)
    invitation = await session.scalar(versions.for_update(stmt) if for_update else stmt)
    if invitation is None:
        raise NotFound("Invitation")
    return invitation


def _pending(invitation: Invitation) -> None:
    status = effective_status(invitation)
    if status != "pending":
        raise Conflict(f"The invitation is {status}")


async def update_invitation(
    session: AsyncSession, org_id: str, invitation_id: str, changes: dict[str, Any], if_match: str | None
) -> Invitation:
    invitation = await get(session, org_id, invitation_id, for_update=True)
    await versions.claim(session, invitation, "Invitation", if_match)
    _pending(invitation)
    if "scopes" in changes:
        granted = scope_names("scopes", changes["scopes"])
        if not granted:
            raise InvalidInput.on("scopes", "required", "An invitation grants at least one scope")
        invitation.scopes = granted
    for field in ("user_title", "message"):
        if field in changes:
            setattr(invitation, field, changes[field])
    if "metadata" in changes:
        invitation.metadata_ = changes["metadata"] or {}
    if "expires_in_seconds" in changes:
        invitation.expires_at = _expires_at(changes["expires_in_seconds"], now_ms())
    await session.flush()
    return invitation


async def resend(
    session: AsyncSession,
    box: SecretBox,
    issuer: Issuer,
    org: Organization,
    invitation_id: str,
    if_match: str | None,
    issuer_url: str,
) -> Invitation:
    invitation = await get(session, org.id, invitation_id, for_update=True)
    await versions.claim(session, invitation, "Invitation", if_match)
    _pending(invitation)
    waited = now_ms() - (invitation.last_email_sent_at or 0)
    if waited < RESEND_COOLDOWN_MS:
        raise RateLimited(-(-(RESEND_COOLDOWN_MS - waited) // 1000))
    token = _new_token(invitation)
    await _mail(session, box, issuer, org, invitation, link(issuer_url, token))
    await session.flush()
    return invitation


async def revoke(session: AsyncSession, org_id: str, invitation_id: str, if_match: str | None) -> Invitation:
    invitation = await get(session, org_id, invitation_id, for_update=True)
    await versions.claim(session, invitation, "Invitation", if_match)
    _pending(invitation)
    invitation.status = "revoked"
    invitation.revoked_at = now_ms()
    await session.flush()
    await _emit(session, "organization.invitation.deleted", invitation)
    return invitation


# --- the invitee's side (hosted page) --------------------------------------------------------------


async def by_token(
    session: AsyncSession, issuer_id: str, token: str
) -> tuple[Invitation, Organization] | None:
    """The invitation a link stands for, with its (non-deleted) organization."""
    if not token or len(token) > 128:
        return None
    row = (
        await session.execute(
            select(Invitation, Organization)
            .join(Organization, Organization.id == Invitation.org_id)
            .where(
                Invitation.token_digest == hashing.digest(token),
                Invitation.issuer_id == issuer_id,
                Organization.status != "deleting",
            )
        )
    ).first()
    return (row[0], row[1]) if row else None


async def _settle(session: AsyncSession, invitation: Invitation, status: str, **values: Any) -> bool:
    """Move a usable invitation to ``status`` with one guarded UPDATE (False: someone else did)."""
    moved = await session.execute(
        update(Invitation)
        .where(
            and_(
                Invitation.id == invitation.id,
                Invitation.status == "pending",
                Invitation.expires_at > now_ms(),
            )
        )
        .values(status=status, updated_at=now_ms(), **values)
        .execution_options(synchronize_session=False)
    )
    return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


async def accept(session: AsyncSession, invitation: Invitation, org: Organization, user_id: str) -> bool:
    """The invitee ``user_id`` accepts: the invitation is claimed once, then the membership is created
    (or, for an existing member, its scopes widened by the invited ones). False when the invitation
    could not be claimed (used, revoked, expired)."""
    now = now_ms()
    if not await _settle(session, invitation, "accepted", accepted_at=now, user_id_invited=user_id):
        return False
    existing = await session.scalar(
        select(Membership).where(Membership.org_id == org.id, Membership.member_id == user_id)
    )
    if existing is None:
        await organizations.add_member(
            session, org, member_id=user_id, scopes=list(invitation.scopes), user_title=invitation.user_title
        )
    else:
        existing.scopes = organizations.effective_scopes(existing.scopes, invitation.scopes)
        existing.updated_at = now
        await session.flush()
        await events.emit_for(
            session,
            "organization.membership.updated",
            existing,
            "organization_membership",
            issuer_id=existing.issuer_id,
            user_id=user_id,
        )
    await session.refresh(invitation)
    await _emit(session, "organization.invitation.accepted", invitation)
    return True


async def decline(session: AsyncSession, invitation: Invitation) -> bool:
    if not await _settle(session, invitation, "declined", declined_at=now_ms()):
        return False
    await session.refresh(invitation)
    await _emit(session, "organization.invitation.declined", invitation)
    return True
