"""webhook subscription versions kept by triggers; the event purge goes by ID

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29 21:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What a webhook receives: a change to any of these columns changes the account's subscriptions.
_WATCHED = "account_id, events, subjects, retry, status"
_BUMP = (
    "INSERT INTO webhook_subscription_versions (account_id, version) VALUES ({account}, 1) "
    "ON CONFLICT (account_id) DO UPDATE SET version = webhook_subscription_versions.version + 1"
)
_SQLITE_TRIGGERS = {
    "webhooks_subscriptions_inserted": ("AFTER INSERT ON webhooks", "NEW.account_id"),
    "webhooks_subscriptions_deleted": ("AFTER DELETE ON webhooks", "OLD.account_id"),
    "webhooks_subscriptions_updated": (f"AFTER UPDATE OF {_WATCHED} ON webhooks", "NEW.account_id"),
}
_POSTGRES_FUNCTION = f"""
CREATE FUNCTION authpi_webhook_subscriptions_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        {_BUMP.format(account="OLD.account_id")};
        RETURN OLD;
    END IF;
    {_BUMP.format(account="NEW.account_id")};
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "webhook_subscription_versions",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_webhook_subscription_versions")),
    )
    # Accounts that already have webhooks start with a version, so no process trusts "none".
    op.execute(
        "INSERT INTO webhook_subscription_versions (account_id, version) "
        "SELECT DISTINCT account_id, 1 FROM webhooks"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_POSTGRES_FUNCTION)
        op.execute(
            "CREATE TRIGGER webhooks_subscriptions_changed "
            f"AFTER INSERT OR DELETE OR UPDATE OF {_WATCHED} ON webhooks "
            "FOR EACH ROW EXECUTE FUNCTION authpi_webhook_subscriptions_changed()"
        )
    else:
        for name, (when, account) in _SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {when} BEGIN {_BUMP.format(account=account)}; END")
    # Retention purges by ID (ULIDs are time-ordered): the primary key serves it, so the timestamp
    # index is one less index to maintain on every event insert.
    op.drop_index("ix_events_timestamp", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_timestamp", "events", ["timestamp"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS webhooks_subscriptions_changed ON webhooks")
        op.execute("DROP FUNCTION IF EXISTS authpi_webhook_subscriptions_changed()")
    else:
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("webhook_subscription_versions")
