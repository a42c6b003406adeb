"""webhooks and their delivery outbox

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 17:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_at", sa.BigInteger(), nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("status_by", sa.String(length=200), nullable=True),
        sa.Column("auth_type", sa.String(length=24), nullable=False),
        sa.Column("signature_algorithm", sa.String(length=24), nullable=True),
        sa.Column("signature_secret_sealed", sa.Text(), nullable=True),
        sa.Column("signature_secret_hint", sa.String(length=16), nullable=True),
        sa.Column("bearer_token_sealed", sa.Text(), nullable=True),
        sa.Column("bearer_token_hint", sa.String(length=16), nullable=True),
        sa.Column("events", JSON, nullable=False),
        sa.Column("subjects", JSON, nullable=True),
        sa.Column("retry", JSON, nullable=True),
        sa.Column("circuit_breaker", JSON, nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("probe_at", sa.BigInteger(), nullable=True),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_webhooks_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    op.create_index("ix_webhooks_account_id_id", "webhooks", ["account_id", "id"], unique=False)
    op.create_index(
        "ix_webhooks_account_id_status_id", "webhooks", ["account_id", "status", "id"], unique=False
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("webhook_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("subject_key", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("attempt_budget", sa.Integer(), nullable=True),
        sa.Column("first_attempted_at", sa.BigInteger(), nullable=True),
        sa.Column("last_attempted_at", sa.BigInteger(), nullable=True),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_response_status", sa.Integer(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name=op.f("fk_webhook_deliveries_webhook_id_webhooks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    for name, columns in (
        ("ix_webhook_deliveries_webhook_id_id", ["webhook_id", "id"]),
        ("ix_webhook_deliveries_webhook_id_status_id", ["webhook_id", "status", "id"]),
        ("ix_webhook_deliveries_webhook_id_event_type_id", ["webhook_id", "event_type", "id"]),
        ("ix_webhook_deliveries_webhook_id_subject_key_id", ["webhook_id", "subject_key", "id"]),
        ("ix_webhook_deliveries_next_attempt_at", ["next_attempt_at"]),
        ("ix_webhook_deliveries_created_at", ["created_at"]),
    ):
        op.create_index(name, "webhook_deliveries", columns, unique=False)


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
