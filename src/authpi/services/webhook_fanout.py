"""Fan-out: one delivery row per webhook subscribed to an event, in the event's own transaction.

The outbox rows commit (or roll back) with the change the event records, so the sender can never
announce a change that did not happen, nor miss one that did. The subscriptions are read from the
database on every event (one range of the index ``ix_webhooks_account_id_status_id``), never from a
per-process copy: a webhook created through one worker gets the events another worker emits right
after.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.services.webhook_rules import RETRY_DEFAULTS
from authpi.storage.tables.events import Event
from authpi.storage.tables.webhooks import Webhook, WebhookDelivery

DELIVERY_PREFIX = "dlv_"
# Deliveries of one subject are sent in ID order: IDs made in one process keep their creation order.
_delivery_id = ids.MonotonicUlid(DELIVERY_PREFIX)
# Failing webhooks keep receiving rows: they queue up behind the circuit breaker.
DELIVERING = ("active", "failing")


def subject_key(subject: Mapping[str, Any] | None) -> str | None:
    if not subject:
        return None
    return f"{subject.get('type')}:{subject.get('id')}"


def matches(subjects: Iterable[Mapping[str, Any]] | None, event: Event) -> bool:
    """Whether an event passes a webhook's subject filters: no filter, its subject, or a filter
    naming its issuer, user or client (so an issuer filter takes everything of that issuer)."""
    filters = list(subjects or ())
    if not filters:
        return True
    subject = event.subject or {}
    related = {event.issuer_id, event.user_id, event.client_id} - {None}
    return any(
        (f.get("type") == subject.get("type") and f.get("id") == subject.get("id")) or f.get("id") in related
        for f in filters
    )


async def enqueue(session: AsyncSession, event: Event) -> int:
    """Adds the deliveries owed for ``event`` to the session; returns how many."""
    if event.account_id is None:
        return 0
    subscribed = (
        await session.execute(
            select(Webhook.id, Webhook.events, Webhook.subjects, Webhook.retry).where(
                Webhook.account_id == event.account_id, Webhook.status.in_(DELIVERING)
            )
        )
    ).all()
    key = subject_key(event.subject)
    added = 0
    for webhook_id, types, subjects, retry in subscribed:
        if event.type not in (types or ()) or not matches(subjects, event):
            continue
        budget = (retry or {}).get("max_attempts", RETRY_DEFAULTS["max_attempts"])
        session.add(
            WebhookDelivery(
                id=_delivery_id(event.timestamp),
                account_id=event.account_id,
                webhook_id=webhook_id,
                event_id=event.id,
                event_type=event.type,
                subject_key=key,
                status="pending",
                attempt_count=0,
                attempt_budget=budget,
                next_attempt_at=event.timestamp,
                created_at=event.timestamp,
                updated_at=event.timestamp,
            )
        )
        added += 1
    return added
