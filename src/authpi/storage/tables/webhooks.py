from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from authpi.storage.tables.base import Base, Versioned


class Webhook(Versioned, Base):
    """An account's subscription to event types (§C.12).

    The bearer token and signature secret are sealed under the master key (the sender needs them
    back to sign and authenticate); only their hints are ever shown after they are created.
    ``consecutive_failures`` and ``probe_at`` are the circuit breaker's state: the webhook turns
    ``failing`` past the threshold, and the sender lets one delivery through at ``probe_at``.
    """

    __tablename__ = "webhooks"
    __table_args__ = (
        Index("ix_webhooks_account_id_id", "account_id", "id"),
        Index("ix_webhooks_account_id_status_id", "account_id", "status", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="active")
    status_at: Mapped[int | None] = mapped_column(BigInteger)
    status_reason: Mapped[str | None] = mapped_column(Text)
    status_by: Mapped[str | None] = mapped_column(String(200))
    auth_type: Mapped[str] = mapped_column(String(24), default="signature")
    signature_algorithm: Mapped[str | None] = mapped_column(String(24))
    signature_secret_sealed: Mapped[str | None] = mapped_column(Text)
    signature_secret_hint: Mapped[str | None] = mapped_column(String(16))
    bearer_token_sealed: Mapped[str | None] = mapped_column(Text)
    bearer_token_hint: Mapped[str | None] = mapped_column(String(16))
    events: Mapped[list[Any]] = mapped_column(default=list)
    subjects: Mapped[list[Any] | None] = mapped_column()
    retry: Mapped[dict[str, Any] | None] = mapped_column()
    circuit_breaker: Mapped[dict[str, Any] | None] = mapped_column()
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    probe_at: Mapped[int | None] = mapped_column(BigInteger)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)


class WebhookDelivery(Base):
    """One event owed to one webhook: the durable outbox row the sender works from.

    Created in the transaction of the event. ``next_attempt_at`` is set while the delivery is owed
    (``pending``/``retrying``) and cleared when it ends (``succeeded``/``failed``); a sender claims a
    due row by setting ``lease_owner``/``lease_until``, so a crashed sender's claim simply expires.
    ``subject_key`` (the event subject's ``type:id``) keeps deliveries in order per subject.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_webhook_id_id", "webhook_id", "id"),
        Index("ix_webhook_deliveries_webhook_id_status_id", "webhook_id", "status", "id"),
        Index("ix_webhook_deliveries_webhook_id_event_type_id", "webhook_id", "event_type", "id"),
        Index("ix_webhook_deliveries_webhook_id_subject_key_id", "webhook_id", "subject_key", "id"),
        # The sender's order check: is an earlier event of this subject still owed to this webhook?
        Index(
            "ix_webhook_deliveries_webhook_id_subject_key_status_event_id",
            "webhook_id",
            "subject_key",
            "status",
            "event_id",
        ),
        Index("ix_webhook_deliveries_next_attempt_at", "next_attempt_at"),
        Index("ix_webhook_deliveries_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40))
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(64))
    subject_key: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    attempt_budget: Mapped[int | None] = mapped_column(Integer)
    first_attempted_at: Mapped[int | None] = mapped_column(BigInteger)
    last_attempted_at: Mapped[int | None] = mapped_column(BigInteger)
    next_attempt_at: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_response_status: Mapped[int | None] = mapped_column(Integer)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int | None] = mapped_column(BigInteger)


class WebhookSubscriptionVersion(Base):
    """How many times an account's webhook subscriptions changed: a counter that database triggers
    on ``webhooks`` raise in the transaction of every insert, delete or change of what a webhook
    receives (migration 0014), whatever code path writes it.

    Emitting an event reads it in the same statement that inserts the event, so a process can keep
    the subscriptions it last read and trust them while the counter is unchanged: no per-event
    subscription query, yet a webhook created through one worker is seen by every other worker's
    next event. An account that never had a webhook has no row. No foreign key: the triggers also
    fire while an account's webhooks are deleted with it."""

    __tablename__ = "webhook_subscription_versions"

    account_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
