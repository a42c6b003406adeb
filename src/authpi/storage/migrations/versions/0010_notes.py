"""account notes with their parsed mentions and references

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORDER = ["pinned", "created_at", "id"]


def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("issuer_id", sa.String(length=64), nullable=True),
        sa.Column("subject_type", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_notes_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notes")),
    )
    for name, columns in (
        ("ix_notes_account_order", ["account_id", *ORDER]),
        ("ix_notes_subject_order", ["account_id", "subject_type", "subject_id", *ORDER]),
        ("ix_notes_issuer_order", ["account_id", "issuer_id", *ORDER]),
        ("ix_notes_created_by_order", ["account_id", "created_by", *ORDER]),
    ):
        op.create_index(name, "notes", columns, unique=False)
    op.create_table(
        "note_mentions",
        sa.Column("note_id", sa.String(length=40), nullable=False),
        sa.Column("mentioned_user_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["note_id"], ["notes.id"], name=op.f("fk_note_mentions_note_id_notes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("note_id", "mentioned_user_id", name=op.f("pk_note_mentions")),
    )
    op.create_index(
        "ix_note_mentions_account_user",
        "note_mentions",
        ["account_id", "mentioned_user_id", "note_id"],
        unique=False,
    )
    op.create_table(
        "note_references",
        sa.Column("note_id", sa.String(length=40), nullable=False),
        sa.Column("ref_type", sa.String(length=16), nullable=False),
        sa.Column("ref_id", sa.String(length=64), nullable=False),
        sa.Column("ref_issuer_id", sa.String(length=64), nullable=True),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["note_id"], ["notes.id"], name=op.f("fk_note_references_note_id_notes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("note_id", "ref_type", "ref_id", name=op.f("pk_note_references")),
    )
    op.create_index(
        "ix_note_references_account_ref",
        "note_references",
        ["account_id", "ref_type", "ref_id", "note_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("note_references")
    op.drop_table("note_mentions")
    op.drop_table("notes")
