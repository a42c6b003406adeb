"""cache invalidations polled by the workers of a SQLite instance

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cache_invalidations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cache_invalidations")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_cache_invalidations_created_at"), "cache_invalidations", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_cache_invalidations_created_at"), table_name="cache_invalidations")
    op.drop_table("cache_invalidations")
