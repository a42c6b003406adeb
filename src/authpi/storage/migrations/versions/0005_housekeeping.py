"""one active signing key per issuer and algorithm; indexes and a lease for housekeeping

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 15:00:00.000000

Workers that raced to create an issuer's first keys left several active keys per algorithm. All
but the newest are retired here (still published for 45 days, as a rotation would leave them), so
the unique index that now prevents the race can be built.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PUBLISH_RETIRED_MS = 45 * 86400 * 1000
ACTIVE_KEY = sa.text("retired_at IS NULL")
IDLE_DEADLINE = sa.text("(coalesce(last_activity_at, created_at) + CAST(idle_timeout AS BIGINT) * 1000)")
DELETED_AT = ("users", "clients", "issuers")


def _retire_duplicate_keys() -> None:
    now = int(time.time() * 1000)
    op.execute(
        sa.text(
            "UPDATE signing_keys SET retired_at = :now, unpublish_at = :unpublish "
            "WHERE retired_at IS NULL AND EXISTS (SELECT 1 FROM signing_keys AS newer "
            "WHERE newer.issuer_id = signing_keys.issuer_id AND newer.alg = signing_keys.alg "
            "AND newer.retired_at IS NULL AND (newer.created_at > signing_keys.created_at "
            "OR (newer.created_at = signing_keys.created_at AND newer.kid > signing_keys.kid)))"
        ).bindparams(now=now, unpublish=now + PUBLISH_RETIRED_MS)
    )


def upgrade() -> None:
    _retire_duplicate_keys()
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.create_index(
            "uq_signing_keys_active_issuer_id_alg",
            ["issuer_id", "alg"],
            unique=True,
            sqlite_where=ACTIVE_KEY,
            postgresql_where=ACTIVE_KEY,
        )
        batch_op.create_index(batch_op.f("ix_signing_keys_unpublish_at"), ["unpublish_at"], unique=False)
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sessions_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_sessions_status_status_at"), ["status", "status_at"], unique=False
        )
    op.create_index(
        "ix_sessions_status_idle_deadline", "sessions", [sa.text("status"), IDLE_DEADLINE], unique=False
    )
    for table in DELETED_AT:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(batch_op.f(f"ix_{table}_deleted_at"), ["deleted_at"], unique=False)
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consents_client_id"), ["client_id"], unique=False)
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("last_run_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    # The hourly lease of earlier versions; the new one lives in ``leases``.
    op.execute(sa.text("DELETE FROM system_values WHERE key = 'housekeeping_lease'"))


def downgrade() -> None:
    op.drop_table("leases")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consents_client_id"))
    for table in DELETED_AT:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_deleted_at"))
    op.drop_index("ix_sessions_status_idle_deadline", table_name="sessions")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sessions_status_status_at"))
        batch_op.drop_index(batch_op.f("ix_sessions_expires_at"))
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signing_keys_unpublish_at"))
        batch_op.drop_index("uq_signing_keys_active_issuer_id_alg")
