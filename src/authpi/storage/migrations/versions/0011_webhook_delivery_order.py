"""the webhook sender's per-subject order index

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 18:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_webhook_deliveries_webhook_id_subject_key_status_event_id",
        "webhook_deliveries",
        ["webhook_id", "subject_key", "status", "event_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_webhook_id_subject_key_status_event_id", "webhook_deliveries")
