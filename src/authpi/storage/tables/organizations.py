"""Organizations of an issuer (core-api §C.9): memberships, groups, invitations, organization API
keys and SSO domains. Everything below an organization goes with it (``ON DELETE CASCADE``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base, Versioned


class Organization(Versioned, Base):
    __tablename__ = "organizations"
    __table_args__ = (
        Index("ix_organizations_issuer_id_id", "issuer_id", "id"),
        Index("ix_organizations_issuer_id_status_id", "issuer_id", "status", "id"),
        # One index per boolean list filter (core-api §B.3), each ending in the paging key.
        Index("ix_organizations_issuer_id_sso_enabled_id", "issuer_id", "sso_enabled", "id"),
        Index("ix_organizations_issuer_id_sso_only_id", "issuer_id", "sso_only", "id"),
        Index("ix_organizations_issuer_id_mfa_required_id", "issuer_id", "mfa_required", "id"),
        Index("ix_organizations_issuer_id_invitation_enabled_id", "issuer_id", "invitation_enabled", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    logo_url: Mapped[str | None] = mapped_column(String(2000))
    org_type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # active | suspended | deleting
    status_at: Mapped[int | None] = mapped_column(BigInteger)
    status_reason: Mapped[str | None] = mapped_column(Text)
    status_by: Mapped[str | None] = mapped_column(String(200))
    max_members: Mapped[int | None] = mapped_column(Integer)
    # Every membership, whatever its status: the one number the guarded add compares and bumps.
    member_count: Mapped[int] = mapped_column(Integer, default=0)
    default_member_scopes: Mapped[list[Any] | None] = mapped_column()
    invitation_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    invitation_message: Mapped[str | None] = mapped_column(Text)
    # Derived from ``sso`` and ``security``/``settings`` for the list filters.
    sso_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    sso_only: Mapped[bool] = mapped_column(Boolean, default=False)
    mfa_required: Mapped[bool] = mapped_column(Boolean, default=False)
    address: Mapped[dict[str, Any] | None] = mapped_column()
    business_details: Mapped[dict[str, Any] | None] = mapped_column()
    contact: Mapped[dict[str, Any] | None] = mapped_column()
    social_links: Mapped[list[Any] | None] = mapped_column()
    scopes: Mapped[list[Any] | None] = mapped_column()
    security: Mapped[dict[str, Any] | None] = mapped_column()
    # The SSO connection's public settings (``services/sso_connections``); its client secret is
    # kept apart, sealed with the master key, so no copy of ``sso`` (GET, events) can carry it.
    sso: Mapped[dict[str, Any] | None] = mapped_column()
    sso_secret_sealed: Mapped[str | None] = mapped_column(Text)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    custom_fields: Mapped[dict[str, Any] | None] = mapped_column()
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)


class Membership(Versioned, Base):
    """A user (later: an agent) in an organization; ``created_at`` is ``joined_at``."""

    __tablename__ = "organization_memberships"
    __table_args__ = (
        UniqueConstraint("org_id", "member_id"),
        Index("ix_organization_memberships_org_id_id", "org_id", "id"),
        Index("ix_organization_memberships_org_id_status_id", "org_id", "status", "id"),
        # Token issuance: every membership of one user.
        Index("ix_organization_memberships_member_id_status", "member_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id", ondelete="CASCADE"))
    member_id: Mapped[str] = mapped_column(String(40))
    member_type: Mapped[str] = mapped_column(String(16))  # user | agent
    status: Mapped[str] = mapped_column(String(16))  # active | suspended
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    user_title: Mapped[str | None] = mapped_column(String(200))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)


class Group(Versioned, Base):
    __tablename__ = "organization_groups"
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        Index("ix_organization_groups_org_id_id", "org_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)


class MembershipGroup(Base):
    __tablename__ = "organization_membership_groups"
    __table_args__ = (Index("ix_organization_membership_groups_group_id", "group_id"),)

    membership_id: Mapped[str] = mapped_column(
        ForeignKey("organization_memberships.id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[str] = mapped_column(
        ForeignKey("organization_groups.id", ondelete="CASCADE"), primary_key=True
    )


class MemberRemoval(Base):
    """A user an administrator removed from an organization (DELETE of the membership): the
    organization's SSO connection does not make them a member again just in time. Gone when the
    user is added back (the API or an accepted invitation) or deleted."""

    __tablename__ = "organization_member_removals"

    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id", ondelete="CASCADE"))
    removed_at: Mapped[int] = mapped_column(BigInteger)


class Invitation(Versioned, Base):
    __tablename__ = "organization_invitations"
    __table_args__ = (
        Index("ix_organization_invitations_org_id_id", "org_id", "id"),
        Index("ix_organization_invitations_org_id_status_id", "org_id", "status", "id"),
        Index("ix_organization_invitations_expires_at", "expires_at"),  # the purge
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))  # pending | accepted | declined | revoked
    email_invited: Mapped[str] = mapped_column(String(320))
    user_id_invited: Mapped[str | None] = mapped_column(String(40))
    user_title: Mapped[str | None] = mapped_column(String(200))
    message: Mapped[str | None] = mapped_column(Text)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    inviter: Mapped[dict[str, Any] | None] = mapped_column()
    # SHA-256 of the link's secret; a resend replaces it (the old link stops working).
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    accepted_at: Mapped[int | None] = mapped_column(BigInteger)
    declined_at: Mapped[int | None] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)
    last_email_sent_at: Mapped[int | None] = mapped_column(BigInteger)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)


class OrganizationApiKey(Versioned, Base):
    """An organization's API key: the same rules as account keys (services/api_keys.py), with
    app-defined scopes checked by the application through ``/{issuer_id}/keyinfo``."""

    __tablename__ = "organization_api_keys"
    __table_args__ = (
        Index("ix_organization_api_keys_org_id_id", "org_id", "id"),
        Index("ix_organization_api_keys_org_id_status_id", "org_id", "status", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[Any] | None] = mapped_column()
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    ip_allowlist: Mapped[list[Any] | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="active")
    status_at: Mapped[int | None] = mapped_column(BigInteger)
    status_reason: Mapped[str | None] = mapped_column(Text)
    status_by: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    secret_digest: Mapped[str] = mapped_column(String(64))
    secret_hint: Mapped[str | None] = mapped_column(String(16))
    last_rotated_at: Mapped[int | None] = mapped_column(BigInteger)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)


class SsoDomain(Base):
    """A domain an organization claims for enterprise SSO (verified by a DNS TXT record)."""

    __tablename__ = "organization_sso_domains"
    __table_args__ = (
        UniqueConstraint("org_id", "domain"),
        Index("ix_organization_sso_domains_issuer_id_domain", "issuer_id", "domain"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id", ondelete="CASCADE"))
    domain: Mapped[str] = mapped_column(String(253))
    txt_record_value: Mapped[str] = mapped_column(String(128))
    verified_at: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
