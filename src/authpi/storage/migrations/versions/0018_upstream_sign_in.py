"""sign-in through upstream identity providers: linked identities and pending upstream requests

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-29 21:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "upstream_identities",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("issuer_id", sa.String(length=40), nullable=False),
        sa.Column("method_id", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("sealed_tokens", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("last_used_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["issuer_id"],
            ["issuers.id"],
            name=op.f("fk_upstream_identities_issuer_id_issuers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["method_id"],
            ["auth_methods.id"],
            name=op.f("fk_upstream_identities_method_id_auth_methods"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_upstream_identities_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upstream_identities")),
        sa.UniqueConstraint("method_id", "subject", name=op.f("uq_upstream_identities_method_id_subject")),
    )
    op.create_index("ix_upstream_identities_user_id", "upstream_identities", ["user_id"], unique=False)
    op.create_index(
        "ix_upstream_identities_issuer_id_id", "upstream_identities", ["issuer_id", "id"], unique=False
    )
    op.create_table(
        "upstream_requests",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("state_digest", sa.String(length=64), nullable=False),
        sa.Column("issuer_id", sa.String(length=40), nullable=False),
        sa.Column("method_id", sa.String(length=40), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("browser", sa.String(length=64), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["issuer_id"],
            ["issuers.id"],
            name=op.f("fk_upstream_requests_issuer_id_issuers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["method_id"],
            ["auth_methods.id"],
            name=op.f("fk_upstream_requests_method_id_auth_methods"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["authorization_requests.id"],
            name=op.f("fk_upstream_requests_request_id_authorization_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upstream_requests")),
        sa.UniqueConstraint("state_digest", name=op.f("uq_upstream_requests_state_digest")),
    )
    op.create_index("ix_upstream_requests_expires_at", "upstream_requests", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_table("upstream_requests")
    op.drop_table("upstream_identities")
