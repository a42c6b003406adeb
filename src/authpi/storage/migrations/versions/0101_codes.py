"""one-time codes and links sent by email or SMS (sign-in codes, password reset, verification)

Revision ID: 0101_codes
Revises: 0013
Create Date: 2026-11-29 20:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0101_codes"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "one_time_codes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("issuer_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=True),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("browser", sa.String(length=64), nullable=True),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("link_hash", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("consumed_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["issuer_id"],
            ["issuers.id"],
            name=op.f("fk_one_time_codes_issuer_id_issuers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_one_time_codes_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["authorization_requests.id"],
            name=op.f("fk_one_time_codes_request_id_authorization_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_one_time_codes")),
        sa.UniqueConstraint("link_hash", name=op.f("uq_one_time_codes_link_hash")),
    )
    op.create_index(
        "ix_one_time_codes_issuer_id_purpose_recipient",
        "one_time_codes",
        ["issuer_id", "purpose", "recipient"],
        unique=False,
    )
    op.create_index(
        "ix_one_time_codes_user_id_purpose", "one_time_codes", ["user_id", "purpose"], unique=False
    )
    op.create_index("ix_one_time_codes_request_id", "one_time_codes", ["request_id"], unique=False)
    op.create_index("ix_one_time_codes_expires_at", "one_time_codes", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_table("one_time_codes")
