"""credential lockouts shared by known and unknown identifiers

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 14:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "credential_lockouts",
        sa.Column("issuer_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["issuer_id"],
            ["issuers.id"],
            name=op.f("fk_credential_lockouts_issuer_id_issuers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("issuer_id", "kind", "subject", name=op.f("pk_credential_lockouts")),
    )
    with op.batch_alter_table("credential_lockouts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credential_lockouts_expires_at"), ["expires_at"], unique=False)
    # The per-user counters are replaced by the table above (one store for every identifier).
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("password_locked_until")
        batch_op.drop_column("password_failures")


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("password_failures", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.add_column(sa.Column("password_locked_until", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("credential_lockouts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credential_lockouts_expires_at"))
    op.drop_table("credential_lockouts")
