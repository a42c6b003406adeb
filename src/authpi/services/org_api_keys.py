"""Organization API keys (core-api rows 81-82, idp-api §A.9): the same rules as account keys
(``services/api_keys``: the secret shown once and stored as a digest, statuses, expiry, IP
allowlist) with app-defined scopes (idp-api §D.2). An application verifies a key and reads its
scopes through ``GET /{issuer_id}/keyinfo``; the Core API introspects it too.

No escalation: when the organization sets ``scopes`` (its ceiling), a key may only hold scopes
that ceiling grants, by the SDK's evaluation rules (``grants``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.clock import now_ms
from authpi.crypto import hashing
from authpi.services import api_keys, events, versions
from authpi.services.clients import scope_names
from authpi.services.errors import Conflict, Forbidden, InvalidInput, NotFound
from authpi.storage.tables.organizations import Organization, OrganizationApiKey

_UNKNOWN_DIGEST = hashing.digest("unknown-organization-key")


def _parse(scope: str) -> tuple[str, str] | None:
    resource, sep, action = scope.rpartition(":")
    return (resource, action) if sep and resource and action else None


def grants(scopes: Iterable[str], action: str, resource: str) -> bool:
    """idp-api §D.3: whether any of ``scopes`` grants ``action`` on ``resource``."""
    for scope in scopes:
        parsed = _parse(scope)
        if parsed is None:
            continue
        granted_resource, granted_action = parsed
        if granted_action not in (action, "*", "**"):
            continue
        if granted_resource == "*":
            if granted_action == "**" or "." not in resource:
                return True
            continue
        if granted_resource == resource:
            return True
        if granted_action == "**" and resource.startswith(granted_resource + "."):
            return True
    return False


def within(ceiling: Iterable[str], wanted: str) -> bool:
    """Whether ``wanted`` hands out nothing beyond ``ceiling``: held literally, or a concrete
    ``resource:action`` the ceiling grants (a wildcard must be held as such, or ``*:**``)."""
    held = list(ceiling)
    if wanted in held or "*:**" in held:
        return True
    parsed = _parse(wanted)
    if parsed is None or "*" in wanted:
        return False
    return grants(held, parsed[1], parsed[0])


def _check_scopes(org: Organization, raw: Any) -> list[str]:
    wanted = scope_names("restrictions.scopes", raw)
    if org.scopes is not None:
        beyond = [s for s in wanted if not within(org.scopes, s)]
        if beyond:
            raise Forbidden(f"The organization's scopes do not include: {', '.join(beyond)}")
    return wanted


@dataclass(frozen=True)
class NewOrgKey:
    key: OrganizationApiKey
    secret: str


async def create_key(session: AsyncSession, org: Organization, body: dict[str, Any]) -> NewOrgKey:
    restrictions = body["restrictions"]
    now = now_ms()
    expires_at = body.get("expires_at")
    if expires_at is not None and expires_at <= now:
        raise InvalidInput.on("expires_at", "in_past", "expires_at must be in the future")
    ips = restrictions.get("ip_addresses", restrictions.get("ip_allowlist"))
    key = OrganizationApiKey(
        id=ids.api_key_id(),
        org_id=org.id,
        issuer_id=org.issuer_id,
        name=body["name"],
        description=body.get("description"),
        tags=body.get("tags"),
        scopes=_check_scopes(org, restrictions.get("scopes", [])),
        ip_allowlist=api_keys.validate_networks(ips),
        status="active",
        status_at=now,
        expires_at=expires_at,
        metadata_=body.get("metadata") or {},
        created_at=now,
        updated_at=now,
    )
    plain = api_keys.new_secret_for(key, body.get("secret"), body.get("secret_hint"))
    session.add(key)
    await session.flush()
    await events.emit_for(session, "api-key.created", key, "api_key", issuer_id=org.issuer_id)
    return NewOrgKey(key, plain)


def list_statement(org_id: str, q: str | None, status: str | None) -> Select[Any]:
    model = OrganizationApiKey
    stmt = select(model).where(model.org_id == org_id)
    if q:
        stmt = stmt.where(or_(model.name.icontains(q, autoescape=True), model.id == q))
    if status == "expired":
        stmt = stmt.where(
            model.status == "active", model.expires_at.is_not(None), model.expires_at <= now_ms()
        )
    elif status == "active":
        stmt = stmt.where(
            model.status == "active", or_(model.expires_at.is_(None), model.expires_at > now_ms())
        )
    elif status:
        stmt = stmt.where(model.status == status)
    return stmt


async def get_key(
    session: AsyncSession, org_id: str, key_id: str, *, for_update: bool = False
) -> OrganizationApiKey:
    stmt = select(OrganizationApiKey).where(
        OrganizationApiKey.id == key_id, OrganizationApiKey.org_id == org_id
    )
    key = await session.scalar(versions.for_update(stmt) if for_update else stmt)
    if key is None:
        raise NotFound("API key")
    return key


async def update_key(
    session: AsyncSession, org: Organization, key_id: str, changes: dict[str, Any], if_match: str | None
) -> OrganizationApiKey:
    key = await get_key(session, org.id, key_id, for_update=True)
    await versions.claim(session, key, "API key", if_match)
    before = key.status
    for field in ("name", "description", "tags", "expires_at", "status_reason", "status_by"):
        if field in changes and not (field == "name" and changes[field] is None):
            setattr(key, field, changes[field])
    if "metadata" in changes:
        key.metadata_ = changes["metadata"] or {}
    restrictions = changes.get("restrictions") or {}
    if "scopes" in restrictions:
        key.scopes = _check_scopes(org, restrictions["scopes"])
    if "ip_addresses" in restrictions:
        key.ip_allowlist = api_keys.validate_networks(restrictions["ip_addresses"])
    if changes.get("status"):
        api_keys.transition(key, changes["status"], changes.get("status_reason"), changes.get("status_by"))
    await session.flush()
    kind = {("active", "blocked"): "api-key.blocked", ("blocked", "active"): "api-key.unblocked"}.get(
        (before, key.status), "api-key.updated"
    )
    await events.emit_for(session, kind, key, "api_key", issuer_id=org.issuer_id)
    return key


async def rotate(session: AsyncSession, org: Organization, key_id: str, if_match: str | None) -> str:
    key = await get_key(session, org.id, key_id, for_update=True)
    await versions.claim(session, key, "API key", if_match)
    if key.status == "revoked":
        raise Conflict("A revoked API key cannot be rotated")
    plain = api_keys.new_secret_for(key, None, None)
    key.last_rotated_at = now_ms()
    await session.flush()
    await events.emit_for(session, "api-key.updated", key, "api_key", issuer_id=org.issuer_id)
    return plain


async def delete_key(session: AsyncSession, org: Organization, key_id: str, if_match: str | None) -> None:
    key = await get_key(session, org.id, key_id, for_update=True)
    await versions.claim(session, key, "API key", if_match)
    await events.emit_for(session, "api-key.deleted", key, "api_key", issuer_id=org.issuer_id)
    await session.delete(key)
    await session.flush()


# --- verification (keyinfo, introspection) -------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    key: OrganizationApiKey | None
    # None: valid; invalid_credentials (401); key_<status>, ip_not_allowed, organization_<status> (403)
    reason: str | None


async def check(session: AsyncSession, issuer_id: str, key_id: str, secret: str, ip: str | None) -> Checked:
    """Verify ``key_id:secret`` for an organization key of ``issuer_id``, in constant time for
    unknown keys (a dummy digest is compared)."""
    row = None
    if key_id.startswith("key_") and len(key_id) <= 64:
        row = (
            await session.execute(
                select(OrganizationApiKey, Organization.status)
                .join(Organization, Organization.id == OrganizationApiKey.org_id)
                .where(OrganizationApiKey.id == key_id, OrganizationApiKey.issuer_id == issuer_id)
            )
        ).first()
    if row is None:
        hashing.matches(secret, _UNKNOWN_DIGEST)
        return Checked(None, "invalid_credentials")
    key, org_status = row
    reason = api_keys.rejection(key, secret, ip)
    if reason is None and org_status != "active":
        reason = f"organization_{org_status}"
    return Checked(key, reason)


def describe(key: OrganizationApiKey) -> dict[str, Any]:
    """The key's metadata, never its secret (idp-api §A.9)."""
    return {
        "id": key.id,
        "type": "api_key",
        "org_id": key.org_id,
        "issuer_id": key.issuer_id,
        "name": key.name,
        "status": api_keys.effective_status(key),
        "scopes": list(key.scopes),
        "restrictions": {"scopes": list(key.scopes), "ip_allowlist": key.ip_allowlist},
        "expires_at": key.expires_at,
        "created_at": key.created_at,
    }
