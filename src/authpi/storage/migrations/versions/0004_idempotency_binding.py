"""idempotency records bound to the calling API key, bodies sealed

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 14:00:00.000000

Idempotency records are a 24-hour replay cache. The old rows cannot be bound to the API key that
made them and hold response bodies (with new secrets) in clear, so they are dropped rather than
converted: a retry that straddles the upgrade runs again instead of replaying.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _drop() -> None:
    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_records_expires_at"))
    op.drop_table("idempotency_records")


def _shared_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=256), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("lease_until", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("etag", sa.Text(), nullable=True),
    ]


def _create(primary_key: list[str], *columns: sa.Column[Any]) -> None:
    op.create_table(
        "idempotency_records",
        *_shared_columns(),
        *columns,
        sa.PrimaryKeyConstraint(*primary_key, name=op.f("pk_idempotency_records")),
    )
    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_idempotency_records_expires_at"), ["expires_at"], unique=False)


def upgrade() -> None:
    _drop()
    _create(
        ["account_id", "principal_id", "key"],
        sa.Column("principal_id", sa.String(length=40), nullable=False),
        sa.Column("authority", sa.String(length=64), nullable=False),
        sa.Column("sealed_body", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    _drop()
    _create(["account_id", "key"], sa.Column("body", sa.LargeBinary(), nullable=True))
