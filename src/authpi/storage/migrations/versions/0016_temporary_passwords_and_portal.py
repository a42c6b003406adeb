"""temporary passwords, and passkey ceremonies of the account portal

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29 21:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_temporary_until", sa.BigInteger(), nullable=True))
    # A ceremony of the account portal belongs to no authorization request, only to the browser.
    with op.batch_alter_table("passkey_challenges", schema=None) as batch_op:
        batch_op.alter_column("request_id", existing_type=sa.String(length=64), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM passkey_challenges WHERE request_id IS NULL")
    with op.batch_alter_table("passkey_challenges", schema=None) as batch_op:
        batch_op.alter_column("request_id", existing_type=sa.String(length=64), nullable=False)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("password_temporary_until")
