from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from authpi.http.schemas.common import Metadata, StrictInput
from authpi.storage.tables.accounts import Account


class AddressIn(StrictInput):
    line1: str | None = Field(default=None, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=200)
    state: str | None = Field(default=None, max_length=200)
    postal_code: str | None = Field(default=None, max_length=32)
    country: str = Field(min_length=2, max_length=64)


class OrganizationOut(BaseModel):
    id: str
    issuer_id: str
    status: str
    name: str | None
    description: str | None
    logo_url: str | None
    org_type: str
    address: dict[str, Any] | None = None
    business_details: dict[str, Any] | None = None
    contact: dict[str, Any] | None = None
    social_links: list[dict[str, Any]] | None = None
    custom_fields: dict[str, Any] | None = None
    metadata: Metadata | None = None
    created_at: int
    updated_at: int | None


class AccountOut(BaseModel):
    id: str
    organization: OrganizationOut
    owner_user_id: str | None = None
    domains: list[dict[str, Any]] | None = None
    features: dict[str, Any] | None = None
    limits: dict[str, Any] | None = None
    billing_mode: str | None = None
    balance_μusd: int | None = None
    credits_run_out: bool | None = None
    payment_methods: list[dict[str, Any]] | None = None
    metadata: Metadata | None = None
    created_at: int
    updated_at: int | None

    @classmethod
    def of(cls, account: Account, platform_issuer_id: str) -> AccountOut:
        profile = account.profile or {}
        return cls(
            id=account.id,
            organization=OrganizationOut(
                id=account.org_id,
                issuer_id=platform_issuer_id,
                status="active",
                name=account.name,
                description=account.description,
                logo_url=account.logo_url,
                org_type=account.org_type,
                address=profile.get("address"),
                business_details=profile.get("business_details"),
                contact=profile.get("contact"),
                social_links=profile.get("social_links"),
                custom_fields=profile.get("custom_fields"),
                metadata=account.metadata_,
                created_at=account.created_at,
                updated_at=account.updated_at,
            ),
            domains=[],
            features={},
            limits={},
            billing_mode="ungated",
            balance_μusd=None,
            credits_run_out=False,
            payment_methods=[],
            metadata=account.metadata_,
            created_at=account.created_at,
            updated_at=account.updated_at,
        )


class AccountUpdate(StrictInput):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    logo_url: str | None = Field(default=None, max_length=2000)
    contact: dict[str, Any] | None = None
    address: AddressIn | None = None
    business_details: dict[str, Any] | None = None
    social_links: list[dict[str, Any]] | None = None
    custom_fields: dict[str, Any] | None = None
    metadata: Metadata | None = None
