from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Row

from authpi.http.schemas.common import Metadata, StrictInput
from authpi.services import users
from authpi.storage.tables.users import User

UsernameType = Literal["email", "unique-name", "phone"]
UserStatus = Literal["active", "suspended", "disabled", "deleted", "pending_approval", "blocked"]
SettableStatus = Literal["active", "suspended", "disabled"]


class UserCreate(StrictInput):
    username_type: UsernameType
    username: str = Field(min_length=1, max_length=320)
    profile: dict[str, Any] | None = None
    # Write-only. 4096 bounds the request; the issuer's password policy sets the real limits.
    password: str | None = Field(default=None, max_length=4096)
    # Write-only (decision 30): signs in only to choose a new password, and replaces any password;
    # never with ``password`` in one request. Expires after ``temporary_password_expires_in``
    # seconds (default 7 days, at most 90).
    temporary_password: str | None = Field(default=None, max_length=4096)
    temporary_password_expires_in: int | None = Field(default=None, ge=60, le=7_776_000)
    scopes: list[str] | None = Field(default=None, max_length=500)
    metadata: Metadata | None = None
    custom_fields: dict[str, Any] | None = None
    preferences: dict[str, Any] | None = None
    status: SettableStatus | None = None
    status_reason: str | None = Field(default=None, max_length=1000)
    status_by: str | None = Field(default=None, max_length=200)


class UserUpdate(StrictInput):
    """Objects (profile, metadata, custom_fields, preferences) replace the stored ones wholesale.
    ``password``: a new password; ``null`` removes the password."""

    profile: dict[str, Any] | None = None
    password: str | None = Field(default=None, max_length=4096)
    # Write-only (decision 30): signs in only to choose a new password, and replaces any password;
    # never with ``password`` in one request. Expires after ``temporary_password_expires_in``
    # seconds (default 7 days, at most 90).
    temporary_password: str | None = Field(default=None, max_length=4096)
    temporary_password_expires_in: int | None = Field(default=None, ge=60, le=7_776_000)
    scopes: list[str] | None = Field(default=None, max_length=500)
    metadata: Metadata | None = None
    custom_fields: dict[str, Any] | None = None
    preferences: dict[str, Any] | None = None
    status: SettableStatus | None = None
    status_reason: str | None = Field(default=None, max_length=1000)
    status_by: str | None = Field(default=None, max_length=200)
    # Accepted only to explain that they cannot change.
    username: str | None = Field(default=None, max_length=320)
    username_type: str | None = None


class UserOut(BaseModel):
    id: str
    issuer_id: str
    status: str
    status_at: int | None
    status_reason: str | None
    status_by: str | None
    username_type: str
    username: str
    profile: dict[str, Any]
    scopes: list[str] | None
    security: dict[str, Any] | None
    compliance: dict[str, Any] | None
    preferences: dict[str, Any] | None
    approval: dict[str, Any] | None
    custom_fields: dict[str, Any] | None
    metadata: Metadata | None
    created_at: int
    updated_at: int | None

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(**user_body(user))


def user_body(user: User | Row[Any]) -> dict[str, Any]:
    """A user as the Core API shows it (``UserOut``), from the entity or from a row of
    ``services.users.READ_COLUMNS``; the read route sends this dict as it is, without a model."""
    return {
        "id": user.id,
        "issuer_id": user.issuer_id,
        "status": user.status,
        "status_at": user.status_at,
        "status_reason": user.status_reason,
        "status_by": user.status_by,
        "username_type": user.username_type,
        "username": user.username,
        "profile": user.profile,
        "scopes": list(user.scopes) if user.scopes is not None else None,
        "security": user.security,
        "compliance": None,
        "preferences": user.preferences,
        "approval": user.approval,
        "custom_fields": user.custom_fields,
        "metadata": user.metadata_,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    }


class UserListItemOut(BaseModel):
    """An index entry, not the user: the username appears only as its SHA-256 hash."""

    user_id: str
    issuer_id: str
    username_hash: str
    username_type: str
    status: str
    store_id: str
    region: str | None
    created_at: int
    updated_at: int

    @classmethod
    def of(cls, user: User) -> UserListItemOut:
        return cls(
            user_id=user.id,
            issuer_id=user.issuer_id,
            username_hash=user.username_hash,
            username_type=user.username_type,
            status=user.status,
            store_id=users.STORE_ID,
            region=None,
            created_at=user.created_at,
            updated_at=user.updated_at,
        )
