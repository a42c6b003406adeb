"""the account event log

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 15:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
FILTERS = ("issuer_id", "user_id", "client_id", "type")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("issuer_id", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("trace", sa.String(length=128), nullable=True),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=True),
        sa.Column("auth", JSON, nullable=True),
        sa.Column("subject", JSON, nullable=True),
        sa.Column("data", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_account_id_id", "events", ["account_id", "id"], unique=False)
    for column in FILTERS:
        op.create_index(
            f"ix_events_account_id_{column}_id", "events", ["account_id", column, "id"], unique=False
        )
    op.create_index(op.f("ix_events_timestamp"), "events", ["timestamp"], unique=False)


def downgrade() -> None:
    op.drop_table("events")
