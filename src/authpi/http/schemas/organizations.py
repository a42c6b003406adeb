from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from authpi.http.schemas.common import Metadata, StrictInput
from authpi.services import invitations, organizations, sso_connections
from authpi.services.organizations import Member
from authpi.storage.tables.organizations import Group, Invitation, Organization

Scopes = list[str]
OrgStatus = Literal["active", "suspended", "deleting"]


class _OrgFields(StrictInput):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    logo_url: str | None = Field(default=None, max_length=2000)
    org_type: str | None = Field(default=None, min_length=1, max_length=32)
    max_members: int | None = Field(default=None, ge=1, le=1_000_000)
    default_member_scopes: Scopes | None = Field(default=None, max_length=200)
    invitation_enabled: bool | None = None
    invitation_message: str | None = Field(default=None, max_length=2000)
    address: dict[str, Any] | None = None
    business_details: dict[str, Any] | None = None
    contact: dict[str, Any] | None = None
    social_links: list[dict[str, Any]] | None = Field(default=None, max_length=50)
    scopes: Scopes | None = Field(default=None, max_length=500)
    security: dict[str, Any] | None = None
    # The SSO connection (``services/sso_connections``): enabled, sso_only, issuer_url, client_id,
    # client_secret (write-only), scopes; merged into the stored block, null removes a member.
    sso: dict[str, Any] | None = None
    # ``enforce_2fa``: members must sign in with a second factor (decision 29).
    settings: dict[str, Any] | None = None
    custom_fields: dict[str, Any] | None = None
    metadata: Metadata | None = None


class OrganizationCreate(_OrgFields):
    name: str = Field(min_length=1, max_length=200)


class OrganizationUpdate(_OrgFields):
    status: Literal["active", "suspended"] | None = None
    status_reason: str | None = Field(default=None, max_length=1000)
    status_by: str | None = Field(default=None, max_length=200)


class OrganizationOut(BaseModel):
    id: str
    issuer_id: str
    status: str
    status_at: int | None
    status_reason: str | None
    status_by: str | None
    name: str | None
    description: str | None
    logo_url: str | None
    org_type: str
    max_members: int | None
    default_member_scopes: list[str] | None
    invitation_enabled: bool | None
    invitation_message: str | None
    address: dict[str, Any] | None
    business_details: dict[str, Any] | None
    contact: dict[str, Any] | None
    social_links: list[dict[str, Any]] | None
    scopes: list[str] | None
    security: dict[str, Any] | None
    sso: dict[str, Any] | None
    settings: dict[str, Any]
    custom_fields: dict[str, Any] | None
    stats: dict[str, Any] | None
    metadata: Metadata | None
    created_at: int
    updated_at: int | None

    @classmethod
    def of(cls, org: Organization, public_url_base: str) -> OrganizationOut:
        return cls(
            id=org.id,
            issuer_id=org.issuer_id,
            status=org.status,
            status_at=org.status_at,
            status_reason=org.status_reason,
            status_by=org.status_by,
            name=org.name,
            description=org.description,
            logo_url=org.logo_url,
            org_type=org.org_type,
            max_members=org.max_members,
            default_member_scopes=org.default_member_scopes,
            invitation_enabled=org.invitation_enabled,
            invitation_message=org.invitation_message,
            address=org.address,
            business_details=org.business_details,
            contact=org.contact,
            social_links=org.social_links,
            scopes=org.scopes,
            security=org.security,
            sso=sso_connections.describe(org, public_url_base),
            settings=org.settings,
            custom_fields=org.custom_fields,
            stats=organizations.stats(org),
            metadata=org.metadata_,
            created_at=org.created_at,
            updated_at=org.updated_at,
        )


class OrganizationListItemOut(BaseModel):
    id: str
    issuer_id: str
    name: str | None
    logo_url: str | None
    status: str
    org_type: str
    stats: dict[str, Any] | None
    sso: dict[str, Any] | None
    security: dict[str, Any] | None
    scopes: list[str] | None
    invitation_enabled: bool | None
    max_members: int | None
    default_member_scopes: list[str] | None
    created_at: int
    updated_at: int | None

    @classmethod
    def of(cls, org: Organization, public_url_base: str) -> OrganizationListItemOut:
        return cls(
            id=org.id,
            issuer_id=org.issuer_id,
            name=org.name,
            logo_url=org.logo_url,
            status=org.status,
            org_type=org.org_type,
            stats=organizations.stats(org),
            sso=sso_connections.describe(org, public_url_base),
            security=org.security,
            scopes=org.scopes,
            invitation_enabled=org.invitation_enabled,
            max_members=org.max_members,
            default_member_scopes=org.default_member_scopes,
            created_at=org.created_at,
            updated_at=org.updated_at,
        )


class MemberCreate(StrictInput):
    member_id: str = Field(min_length=1, max_length=64)
    member_type: Literal["user", "agent"] = "user"
    scopes: Scopes | None = Field(default=None, max_length=500)
    groups: list[str] | None = Field(default=None, max_length=50)
    user_title: str | None = Field(default=None, max_length=200)
    metadata: Metadata | None = None


class MemberUpdate(StrictInput):
    scopes: Scopes | None = Field(default=None, max_length=500)
    groups: list[str] | None = Field(default=None, max_length=50)
    user_title: str | None = Field(default=None, max_length=200)
    status: Literal["active", "suspended"] | None = None
    metadata: Metadata | None = None


class MemberOut(BaseModel):
    org_id: str
    member_id: str
    member_type: str
    issuer_id: str
    status: str
    scopes: list[str]
    # The union of ``scopes`` and the groups' scopes: what tokens carry.
    effective_scopes: list[str]
    groups: list[str] | None
    user_title: str | None
    metadata: Metadata | None
    joined_at: int
    updated_at: int | None

    @classmethod
    def of(cls, member: Member) -> MemberOut:
        row = member.row
        return cls(
            org_id=row.org_id,
            member_id=row.member_id,
            member_type=row.member_type,
            issuer_id=row.issuer_id,
            status=row.status,
            scopes=list(row.scopes),
            effective_scopes=member.effective_scopes,
            groups=member.group_ids,
            user_title=row.user_title,
            metadata=row.metadata_,
            joined_at=row.created_at,
            updated_at=row.updated_at,
        )


class GroupCreate(StrictInput):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    scopes: Scopes = Field(default_factory=list, max_length=500)
    metadata: Metadata | None = None


class GroupUpdate(StrictInput):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    scopes: Scopes | None = Field(default=None, max_length=500)
    metadata: Metadata | None = None


class GroupOut(BaseModel):
    id: str
    org_id: str
    issuer_id: str
    name: str
    description: str | None
    scopes: list[str]
    metadata: Metadata | None
    created_at: int
    updated_at: int | None

    @classmethod
    def of(cls, group: Group) -> GroupOut:
        return cls(
            id=group.id,
            org_id=group.org_id,
            issuer_id=group.issuer_id,
            name=group.name,
            description=group.description,
            scopes=list(group.scopes),
            metadata=group.metadata_,
            created_at=group.created_at,
            updated_at=group.updated_at,
        )


class InviterIn(StrictInput):
    id: str | None = Field(default=None, max_length=64)
    name: str | None = Field(default=None, max_length=200)


class InvitationCreate(StrictInput):
    email_invited: str = Field(min_length=3, max_length=320)
    scopes: Scopes = Field(min_length=1, max_length=500)
    user_title: str | None = Field(default=None, max_length=200)
    message: str | None = Field(default=None, max_length=2000)
    inviter: InviterIn | None = None
    expires_in_seconds: int | None = Field(default=None, ge=300, le=90 * 86400)
    user_id_invited: str | None = Field(default=None, max_length=64)
    metadata: Metadata | None = None


class InvitationUpdate(StrictInput):
    scopes: Scopes | None = Field(default=None, min_length=1, max_length=500)
    user_title: str | None = Field(default=None, max_length=200)
    message: str | None = Field(default=None, max_length=2000)
    expires_in_seconds: int | None = Field(default=None, ge=300, le=90 * 86400)
    metadata: Metadata | None = None


class InvitationOut(BaseModel):
    id: str
    org_id: str
    issuer_id: str
    status: str
    email_invited: str
    user_id_invited: str | None
    user_title: str | None
    message: str | None
    scopes: list[str]
    inviter: dict[str, Any] | None
    created_at: int
    expires_at: int
    accepted_at: int | None
    declined_at: int | None
    revoked_at: int | None
    last_email_sent_at: int | None
    metadata: Metadata | None
    updated_at: int | None

    @classmethod
    def of(cls, invitation: Invitation) -> InvitationOut:
        return cls(
            id=invitation.id,
            org_id=invitation.org_id,
            issuer_id=invitation.issuer_id,
            status=invitations.effective_status(invitation),
            email_invited=invitation.email_invited,
            user_id_invited=invitation.user_id_invited,
            user_title=invitation.user_title,
            message=invitation.message,
            scopes=list(invitation.scopes),
            inviter=invitation.inviter,
            created_at=invitation.created_at,
            expires_at=invitation.expires_at,
            accepted_at=invitation.accepted_at,
            declined_at=invitation.declined_at,
            revoked_at=invitation.revoked_at,
            last_email_sent_at=invitation.last_email_sent_at,
            metadata=invitation.metadata_,
            updated_at=invitation.updated_at,
        )
