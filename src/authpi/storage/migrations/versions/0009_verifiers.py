"""second factors, passkeys, backup codes and trusted devices

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 17:05:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _owner_keys(table: str) -> list[sa.ForeignKeyConstraint]:
    return [
        sa.ForeignKeyConstraint(
            ["issuer_id"], ["issuers.id"], name=op.f(f"fk_{table}_issuer_id_issuers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f(f"fk_{table}_user_id_users"), ondelete="CASCADE"
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "verifiers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("issuer_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("primary", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("last_used_at", sa.BigInteger(), nullable=True),
        sa.Column("secret_sealed", sa.Text(), nullable=True),
        sa.Column("last_used_step", sa.BigInteger(), nullable=True),
        sa.Column("credential_id", sa.String(length=1400), nullable=True),
        sa.Column("public_key", sa.Text(), nullable=True),
        sa.Column("sign_count", sa.BigInteger(), nullable=False),
        sa.Column("transports", JSON, nullable=True),
        sa.Column("aaguid", sa.String(length=36), nullable=True),
        sa.Column("backup_eligible", sa.Boolean(), nullable=True),
        sa.Column("backed_up", sa.Boolean(), nullable=True),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        *_owner_keys("verifiers"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verifiers")),
        sa.UniqueConstraint("issuer_id", "credential_id", name=op.f("uq_verifiers_issuer_id_credential_id")),
    )
    op.create_index("ix_verifiers_user_id_id", "verifiers", ["user_id", "id"], unique=False)
    op.create_index("ix_verifiers_expires_at", "verifiers", ["expires_at"], unique=False)
    op.create_table(
        "backup_codes",
        sa.Column("verifier_id", sa.String(length=40), nullable=False),
        sa.Column("code_digest", sa.String(length=64), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["verifier_id"],
            ["verifiers.id"],
            name=op.f("fk_backup_codes_verifier_id_verifiers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("verifier_id", "code_digest", name=op.f("pk_backup_codes")),
    )
    op.create_table(
        "trusted_devices",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("issuer_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("user_agent", sa.String(length=500), nullable=True),
        sa.Column("trusted_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("last_used_at", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        *_owner_keys("trusted_devices"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trusted_devices")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_trusted_devices_fingerprint")),
    )
    op.create_index("ix_trusted_devices_user_id_id", "trusted_devices", ["user_id", "id"], unique=False)
    op.create_index("ix_trusted_devices_expires_at", "trusted_devices", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_table("trusted_devices")
    op.drop_table("backup_codes")
    op.drop_table("verifiers")
