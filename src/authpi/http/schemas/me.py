from __future__ import annotations

from pydantic import BaseModel


class CallerAccountAccess(BaseModel):
    account_id: str
    org_id: str
    scopes: list[str]


class CallerOrganizationAccess(BaseModel):
    org_id: str
    scopes: list[str]


class CallerIdentity(BaseModel):
    type: str
    key_id: str | None
    user_id: str | None
    issuer_id: str | None
    accounts: list[CallerAccountAccess]
    organizations: list[CallerOrganizationAccess]
