"""organizations: memberships, groups, invitations, organization API keys, SSO domains

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-29 20:20:42.565005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column(
                "approval",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
    op.create_table(
        "organizations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("issuer_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("logo_url", sa.String(length=2000), nullable=True),
        sa.Column("org_type", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_at", sa.BigInteger(), nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("status_by", sa.String(length=200), nullable=True),
        sa.Column("max_members", sa.Integer(), nullable=True),
        sa.Column("member_count", sa.Integer(), nullable=False),
        sa.Column(
            "default_member_scopes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("invitation_enabled", sa.Boolean(), nullable=False),
        sa.Column("invitation_message", sa.Text(), nullable=True),
        sa.Column("sso_enabled", sa.Boolean(), nullable=False),
        sa.Column("sso_only", sa.Boolean(), nullable=False),
        sa.Column("mfa_required", sa.Boolean(), nullable=False),
        sa.Column(
            "address",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "business_details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "contact",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "social_links",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "scopes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "security",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "sso",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "settings",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "custom_fields",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["issuer_id"], ["issuers.id"], name=op.f("fk_organizations_issuer_id_issuers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
    )
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.create_index("ix_organizations_issuer_id_id", ["issuer_id", "id"], unique=False)
        batch_op.create_index(
            "ix_organizations_issuer_id_invitation_enabled_id",
            ["issuer_id", "invitation_enabled", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_organizations_issuer_id_mfa_required_id", ["issuer_id", "mfa_required", "id"], unique=False
        )
        batch_op.create_index(
            "ix_organizations_issuer_id_sso_enabled_id", ["issuer_id", "sso_enabled", "id"], unique=False
        )
        batch_op.create_index(
            "ix_organizations_issuer_id_sso_only_id", ["issuer_id", "sso_only", "id"], unique=False
        )
        batch_op.create_index(
            "ix_organizations_issuer_id_status_id", ["issuer_id", "status", "id"], unique=False
        )

    op.create_table(
        "organization_api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("issuer_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "scopes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "ip_allowlist",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_at", sa.BigInteger(), nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("status_by", sa.String(length=200), nullable=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("secret_digest", sa.String(length=64), nullable=False),
        sa.Column("secret_hint", sa.String(length=16), nullable=True),
        sa.Column("last_rotated_at", sa.BigInteger(), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["issuer_id"],
            ["issuers.id"],
            name=op.f("fk_organization_api_keys_issuer_id_issuers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_organization_api_keys_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organization_api_keys")),
    )
    with op.batch_alter_table("organization_api_keys", schema=None) as batch_op:
        batch_op.create_index("ix_organization_api_keys_org_id_id", ["org_id", "id"], unique=False)
        batch_op.create_index(
            "ix_organization_api_keys_org_id_status_id", ["org_id", "status", "id"], unique=False
        )

    op.create_table(
        "organization_groups",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("issuer_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "scopes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["issuer_id"],
            ["issuers.id"],
            name=op.f("fk_organization_groups_issuer_id_issuers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_organization_groups_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organization_groups")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_organization_groups_org_id_name")),
    )
    with op.batch_alter_table("organization_groups", schema=None) as batch_op:
        batch_op.create_index("ix_organization_groups_org_id_id", ["org_id", "id"], unique=False)

    op.create_table(
        "organization_invitations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("issuer_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("email_invited", sa.String(length=320), nullable=False),
        sa.Column("user_id_invited", sa.String(length=40), nullable=True),
        sa.Column("user_title", sa.String(length=200), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column(
            "scopes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "inviter",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("accepted_at", sa.BigInteger(), nullable=True),
        sa.Column("declined_at", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.Column("last_email_sent_at", sa.BigInteger(), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["issuer_id"],
            ["issuers.id"],
            name=op.f("fk_organization_invitations_issuer_id_issuers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_organization_invitations_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organization_invitations")),
        sa.UniqueConstraint("token_digest", name=op.f("uq_organization_invitations_token_digest")),
    )
    with op.batch_alter_table("organization_invitations", schema=None) as batch_op:
        batch_op.create_index("ix_organization_invitations_expires_at", ["expires_at"], unique=False)
        batch_op.create_index("ix_organization_invitations_org_id_id", ["org_id", "id"], unique=False)
        batch_op.create_index(
            "ix_organization_invitations_org_id_status_id", ["org_id", "status", "id"], unique=False
        )

    op.create_table(
        "organization_memberships",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("issuer_id", sa.String(length=40), nullable=False),
        sa.Column("member_id", sa.String(length=40), nullable=False),
        sa.Column("member_type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "scopes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("user_title", sa.String(length=200), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["issuer_id"],
            ["issuers.id"],
            name=op.f("fk_organization_memberships_issuer_id_issuers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_organization_memberships_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organization_memberships")),
        sa.UniqueConstraint("org_id", "member_id", name=op.f("uq_organization_memberships_org_id_member_id")),
    )
    with op.batch_alter_table("organization_memberships", schema=None) as batch_op:
        batch_op.create_index(
            "ix_organization_memberships_member_id_status", ["member_id", "status"], unique=False
        )
        batch_op.create_index("ix_organization_memberships_org_id_id", ["org_id", "id"], unique=False)
        batch_op.create_index(
            "ix_organization_memberships_org_id_status_id", ["org_id", "status", "id"], unique=False
        )

    op.create_table(
        "organization_sso_domains",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("issuer_id", sa.String(length=40), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("txt_record_value", sa.String(length=128), nullable=False),
        sa.Column("verified_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["issuer_id"],
            ["issuers.id"],
            name=op.f("fk_organization_sso_domains_issuer_id_issuers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_organization_sso_domains_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organization_sso_domains")),
        sa.UniqueConstraint("org_id", "domain", name=op.f("uq_organization_sso_domains_org_id_domain")),
    )
    with op.batch_alter_table("organization_sso_domains", schema=None) as batch_op:
        batch_op.create_index(
            "ix_organization_sso_domains_issuer_id_domain", ["issuer_id", "domain"], unique=False
        )

    op.create_table(
        "organization_membership_groups",
        sa.Column("membership_id", sa.String(length=40), nullable=False),
        sa.Column("group_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["organization_groups.id"],
            name=op.f("fk_organization_membership_groups_group_id_organization_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["membership_id"],
            ["organization_memberships.id"],
            name=op.f("fk_organization_membership_groups_membership_id_organization_memberships"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("membership_id", "group_id", name=op.f("pk_organization_membership_groups")),
    )
    with op.batch_alter_table("organization_membership_groups", schema=None) as batch_op:
        batch_op.create_index("ix_organization_membership_groups_group_id", ["group_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("approval")
    with op.batch_alter_table("organization_membership_groups", schema=None) as batch_op:
        batch_op.drop_index("ix_organization_membership_groups_group_id")

    op.drop_table("organization_membership_groups")
    with op.batch_alter_table("organization_sso_domains", schema=None) as batch_op:
        batch_op.drop_index("ix_organization_sso_domains_issuer_id_domain")

    op.drop_table("organization_sso_domains")
    with op.batch_alter_table("organization_memberships", schema=None) as batch_op:
        batch_op.drop_index("ix_organization_memberships_org_id_status_id")
        batch_op.drop_index("ix_organization_memberships_org_id_id")
        batch_op.drop_index("ix_organization_memberships_member_id_status")

    op.drop_table("organization_memberships")
    with op.batch_alter_table("organization_invitations", schema=None) as batch_op:
        batch_op.drop_index("ix_organization_invitations_org_id_status_id")
        batch_op.drop_index("ix_organization_invitations_org_id_id")
        batch_op.drop_index("ix_organization_invitations_expires_at")

    op.drop_table("organization_invitations")
    with op.batch_alter_table("organization_groups", schema=None) as batch_op:
        batch_op.drop_index("ix_organization_groups_org_id_id")

    op.drop_table("organization_groups")
    with op.batch_alter_table("organization_api_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_organization_api_keys_org_id_status_id")
        batch_op.drop_index("ix_organization_api_keys_org_id_id")

    op.drop_table("organization_api_keys")
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_index("ix_organizations_issuer_id_status_id")
        batch_op.drop_index("ix_organizations_issuer_id_sso_only_id")
        batch_op.drop_index("ix_organizations_issuer_id_sso_enabled_id")
        batch_op.drop_index("ix_organizations_issuer_id_mfa_required_id")
        batch_op.drop_index("ix_organizations_issuer_id_invitation_enabled_id")
        batch_op.drop_index("ix_organizations_issuer_id_id")

    op.drop_table("organizations")
