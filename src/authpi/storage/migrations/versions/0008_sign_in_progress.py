"""sign-in progress on pending authorization requests

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 17:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("authorization_requests") as batch:
        batch.add_column(sa.Column("sign_in", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("authorization_requests") as batch:
        batch.drop_column("sign_in")
