"""organizations' SSO connections: the sealed client secret, and upstream requests and identities
that belong to an organization's connection instead of an auth method

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-29 23:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sso_secret_sealed", sa.Text(), nullable=True))
    with op.batch_alter_table("upstream_requests", schema=None) as batch_op:
        batch_op.alter_column("method_id", existing_type=sa.String(length=40), nullable=True)
        batch_op.add_column(sa.Column("org_id", sa.String(length=40), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_upstream_requests_org_id_organizations"),
            "organizations",
            ["org_id"],
            ["id"],
            ondelete="CASCADE",
        )
    with op.batch_alter_table("upstream_identities", schema=None) as batch_op:
        batch_op.alter_column("method_id", existing_type=sa.String(length=40), nullable=True)
        batch_op.add_column(sa.Column("org_id", sa.String(length=40), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_upstream_identities_org_id_organizations"),
            "organizations",
            ["org_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_upstream_identities_org_id_subject"), ["org_id", "subject"]
        )


def downgrade() -> None:
    op.execute("DELETE FROM upstream_identities WHERE method_id IS NULL")
    op.execute("DELETE FROM upstream_requests WHERE method_id IS NULL")
    with op.batch_alter_table("upstream_identities", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_upstream_identities_org_id_subject"), type_="unique")
        batch_op.drop_constraint(
            batch_op.f("fk_upstream_identities_org_id_organizations"), type_="foreignkey"
        )
        batch_op.drop_column("org_id")
        batch_op.alter_column("method_id", existing_type=sa.String(length=40), nullable=False)
    with op.batch_alter_table("upstream_requests", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_upstream_requests_org_id_organizations"), type_="foreignkey")
        batch_op.drop_column("org_id")
        batch_op.alter_column("method_id", existing_type=sa.String(length=40), nullable=False)
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("sso_secret_sealed")
