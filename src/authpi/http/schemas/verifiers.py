"""User verifiers (§C.7): one common shape for every type, with the public fields of its type.

Nothing secret is ever part of it: no TOTP secret, no backup code, no passkey key material beyond
what the authenticator itself publishes. The user's password appears as a read-only ``password``
entry (id ``password``) so the list shows every way the user can prove who they are; it is
changed through the user resource, not here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from authpi.http.schemas.common import StrictInput
from authpi.services import verifiers
from authpi.storage.tables.users import User
from authpi.storage.tables.verifiers import Verifier

PASSWORD_ID = "password"


class VerifierCreate(StrictInput):
    type: str = Field(min_length=1, max_length=32, description="Only `totp` starts an enrollment here")
    name: str | None = Field(default=None, min_length=1, max_length=200)


class VerifierUpdate(StrictInput):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    primary: bool | None = None


class CompleteEnrollmentIn(StrictInput):
    enrollment_id: str = Field(min_length=1, max_length=64)
    code: str = Field(min_length=1, max_length=64)


class VerifyIn(StrictInput):
    code: str = Field(min_length=1, max_length=64)


class VerifierOut(BaseModel):
    """A verifier; the type-specific fields appear only on verifiers of that type."""

    id: str
    user_id: str
    issuer_id: str
    type: str
    name: str | None
    status: str
    primary: bool
    read_only: bool
    created_at: int
    updated_at: int
    last_used_at: int | None
    expires_at: int | None = None
    # totp
    digits: int | None = None
    period: int | None = None
    # backup_codes
    remaining: int | None = None
    # passkey
    credential_id: str | None = None
    aaguid: str | None = None
    transports: list[str] | None = None
    backup_eligible: bool | None = None
    backed_up: bool | None = None
    sign_count: int | None = None


def verifier_out(row: Verifier, remaining: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "user_id": row.user_id,
        "issuer_id": row.issuer_id,
        "type": row.type,
        "name": row.name,
        "status": row.status,
        "primary": row.primary,
        "read_only": False,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "last_used_at": row.last_used_at,
    }
    if row.status == "pending":
        out["expires_at"] = row.expires_at
    meta = row.metadata_ or {}
    if row.type == verifiers.TOTP:
        out.update(digits=meta.get("digits"), period=meta.get("period"))
    elif row.type == verifiers.BACKUP_CODES:
        out["remaining"] = remaining or 0
    elif row.type == verifiers.PASSKEY:
        out.update(
            credential_id=row.credential_id,
            aaguid=row.aaguid,
            transports=list(row.transports or []),
            backup_eligible=row.backup_eligible,
            backed_up=row.backed_up,
            sign_count=row.sign_count,
        )
    return out


def password_out(user: User) -> dict[str, Any] | None:
    """The user's password as a read-only entry, when they have one."""
    if not user.password_hash:
        return None
    changed = user.password_changed_at or user.created_at
    return {
        "id": PASSWORD_ID,
        "user_id": user.id,
        "issuer_id": user.issuer_id,
        "type": "password",
        "name": "Password",
        "status": "active",
        "primary": False,
        "read_only": True,
        "created_at": changed,
        "updated_at": changed,
        "last_used_at": None,
    }


class EnrollmentOut(BaseModel):
    enrollment_id: str
    secret: str
    provisioning_uri: str
    expires_at: int


class CompletedOut(BaseModel):
    success: bool
    verifier_id: str | None = None
    backup_codes: list[str] | None = None
    error: str | None = None


class CodesOut(BaseModel):
    codes: list[str]


class VerifiedOut(BaseModel):
    success: bool
    remaining: int | None = None
    error: str | None = None
