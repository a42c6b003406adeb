from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from authpi.http.schemas.common import Metadata, StrictInput
from authpi.services.issuer_settings import branding_configured
from authpi.services.issuers import IssuerSummary
from authpi.storage.tables.issuers import Issuer

IssuerStatus = Literal["active", "disabled", "suspended", "deleted"]
AccessMode = Literal["open", "invite_only", "approval", "closed"]
Readiness = Literal["ready", "needs_auth_method", "needs_client", "disabled"]


class IssuerSettingsIn(BaseModel):
    """Known sections are objects; their content is validated by the issuer service, unknown keys kept."""

    portals: dict[str, Any] | None = None
    branding: dict[str, Any] | None = None
    access: dict[str, Any]
    security: dict[str, Any] | None = None


class IssuerSettingsPatch(BaseModel):
    portals: dict[str, Any] | None = None
    branding: dict[str, Any] | None = None
    access: dict[str, Any] | None = None
    security: dict[str, Any] | None = None


class IssuerCreate(StrictInput):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    links: dict[str, Any] | None = None
    available_scopes: list[str] | None = Field(default=None, max_length=500)
    status: IssuerStatus | None = None
    settings: IssuerSettingsIn | None = None
    metadata: Metadata | None = None


class IssuerUpdate(StrictInput):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    links: dict[str, Any] | None = None
    available_scopes: list[str] | None = Field(default=None, max_length=500)
    status: IssuerStatus | None = None
    settings: IssuerSettingsPatch | None = None
    metadata: Metadata | None = None


class IssuerOut(BaseModel):
    id: str
    account_id: str
    name: str | None
    description: str | None
    links: dict[str, Any] | None
    available_scopes: list[str]
    status: str
    status_at: int | None
    settings: dict[str, Any]
    metadata: Metadata
    created_at: int
    updated_at: int | None

    @classmethod
    def fields_of(cls, issuer: Issuer) -> dict[str, Any]:
        return {
            "id": issuer.id,
            "account_id": issuer.account_id,
            "name": issuer.name,
            "description": issuer.description,
            "links": issuer.links,
            "available_scopes": list(issuer.available_scopes),
            "status": issuer.status,
            "status_at": issuer.status_at,
            "settings": issuer.settings,
            "metadata": issuer.metadata_,
            "created_at": issuer.created_at,
            "updated_at": issuer.updated_at,
        }

    @classmethod
    def of(cls, issuer: Issuer) -> IssuerOut:
        return cls(**cls.fields_of(issuer))


class IssuerListItemOut(IssuerOut):
    access_mode: str | None
    auth_method_count: int
    enabled_login_method_count: int
    enabled_signup_method_count: int
    available_scope_count: int
    branding_configured: bool
    readiness: str

    @classmethod
    def of_summary(cls, summary: IssuerSummary) -> IssuerListItemOut:
        issuer = summary.issuer
        return cls(
            **cls.fields_of(issuer),
            access_mode=issuer.access_mode,
            auth_method_count=summary.auth_method_count,
            enabled_login_method_count=summary.enabled_login_method_count,
            enabled_signup_method_count=summary.enabled_signup_method_count,
            available_scope_count=len(issuer.available_scopes),
            branding_configured=branding_configured(issuer.settings),
            readiness=summary.readiness,
        )
