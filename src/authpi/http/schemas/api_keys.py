from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from authpi.http.schemas.common import MAX_TIMESTAMP_MS, Metadata, StrictInput
from authpi.services.api_keys import KeyRow, effective_status

KeyStatus = Literal["active", "blocked", "revoked", "expired", "suspended"]


class RestrictionsIn(StrictInput):
    scopes: list[str] = Field(default_factory=list, max_length=200)
    ip_addresses: list[str] | None = Field(default=None, max_length=100)


class ApiKeyCreate(StrictInput):
    name: str = Field(min_length=1, max_length=200)
    restrictions: RestrictionsIn
    description: str | None = Field(default=None, max_length=5000)
    tags: list[str] | None = Field(default=None, max_length=50)
    expires_at: int | None = Field(default=None, ge=0, le=MAX_TIMESTAMP_MS)
    metadata: Metadata | None = None
    secret: str | None = Field(default=None, min_length=24, max_length=256)
    secret_hint: str | None = Field(default=None, max_length=16)


class ApiKeyUpdate(StrictInput):
    status: Literal["active", "blocked", "revoked", "suspended"] | None = None
    status_reason: str | None = Field(default=None, max_length=1000)
    status_by: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    tags: list[str] | None = Field(default=None, max_length=50)
    restrictions: RestrictionsIn | None = None
    expires_at: int | None = Field(default=None, ge=0, le=MAX_TIMESTAMP_MS)
    metadata: Metadata | None = None


class RotateIn(StrictInput):
    secret: str | None = Field(default=None, min_length=24, max_length=256)


class ApiKeyOut(BaseModel):
    id: str
    org_id: str
    issuer_id: str
    type: str
    name: str
    description: str | None
    tags: list[str] | None
    restrictions: dict[str, Any]
    status: str
    status_at: int | None
    status_reason: str | None
    status_by: str | None
    expires_at: int | None
    metadata: Metadata | None
    secret: dict[str, Any]
    last_rotated_at: int | None
    created_at: int
    updated_at: int | None

    @classmethod
    def of(cls, key: KeyRow, org_id: str, issuer_id: str) -> ApiKeyOut:
        restrictions: dict[str, Any] = {"scopes": list(key.scopes)}
        if key.ip_allowlist is not None:
            restrictions["ip_addresses"] = list(key.ip_allowlist)
        return cls(
            id=key.id,
            org_id=org_id,
            issuer_id=issuer_id,
            type="api_key",
            name=key.name,
            description=key.description,
            tags=key.tags,
            restrictions=restrictions,
            status=effective_status(key),
            status_at=key.status_at,
            status_reason=key.status_reason,
            status_by=key.status_by,
            expires_at=key.expires_at,
            metadata=key.metadata_,
            secret={"algorithm": "sha256", "hint": key.secret_hint},
            last_rotated_at=key.last_rotated_at,
            created_at=key.created_at,
            updated_at=key.updated_at,
        )


class CreatedApiKeyOut(ApiKeyOut):
    secret_plain: str


class ApiKeyListItemOut(BaseModel):
    id: str
    org_id: str
    issuer_id: str
    type: str
    status: str
    name: str
    description: str | None
    tags: list[str] | None
    scopes: list[str]
    ip_allowlist: list[str] | None
    expires_at: int | None
    secret_hint: str | None
    last_rotated_at: int | None
    status_at: int | None
    created_at: int
    updated_at: int | None

    @classmethod
    def of(cls, key: KeyRow, org_id: str, issuer_id: str) -> ApiKeyListItemOut:
        return cls(
            id=key.id,
            org_id=org_id,
            issuer_id=issuer_id,
            type="api_key",
            status=effective_status(key),
            name=key.name,
            description=key.description,
            tags=key.tags,
            scopes=list(key.scopes),
            ip_allowlist=key.ip_allowlist,
            expires_at=key.expires_at,
            secret_hint=key.secret_hint,
            last_rotated_at=key.last_rotated_at,
            status_at=key.status_at,
            created_at=key.created_at,
            updated_at=key.updated_at,
        )


class RotatedOut(BaseModel):
    secret_plain: str
