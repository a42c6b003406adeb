from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from authpi.http.schemas.common import StrictInput
from authpi.storage.tables.auth_methods import AuthMethod

MethodName = Literal[
    "oauth2",
    "oidc",
    "apple",
    "github",
    "oauth2_manual",
    "password",
    "temporary_password",
    "email_link",
    "email_otp",
    "sms_otp",
    "passkey",
    "totp",
    "backup_codes",
]


class AuthMethodCreate(StrictInput):
    name: str = Field(min_length=1, max_length=200)
    method: MethodName
    first_factor_only: bool
    enabled_login: bool | None = None
    enabled_signup: bool | None = None
    featured: bool | None = None
    settings: dict[str, Any] | None = None


class AuthMethodUpdate(StrictInput):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    enabled_login: bool | None = None
    enabled_signup: bool | None = None
    featured: bool | None = None
    settings: dict[str, Any] | None = None
    # Accepted only to explain, field by field, that they cannot change.
    method: str | None = None
    first_factor_only: bool | None = None


class AuthMethodOut(BaseModel):
    id: str
    issuer_id: str
    name: str
    method: str
    enabled_login: bool
    enabled_signup: bool
    featured: bool
    first_factor_only: bool
    settings: dict[str, Any]
    created_at: int
    updated_at: int | None

    @classmethod
    def of(cls, row: AuthMethod) -> AuthMethodOut:
        return cls(
            id=row.id,
            issuer_id=row.issuer_id,
            name=row.name,
            method=row.method,
            enabled_login=row.enabled_login,
            enabled_signup=row.enabled_signup,
            featured=row.featured,
            first_factor_only=row.first_factor_only,
            settings=row.settings,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
