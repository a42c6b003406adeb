"""Fan-out: one delivery row per webhook subscribed to an event, in the event's own transaction.

The outbox rows commit (or roll back) with the change the event records, so the sender can never
announce a change that did not happen, nor miss one that did.

Which webhooks are subscribed is decided in that transaction too, without a query per event: the
statement that inserts the event also reads the account's subscription version
(``WebhookSubscriptionVersion``, raised by database triggers whenever a webhook is added, removed or
changes what it receives). Each process keeps the subscriptions it last read per account with the
version they were read at, and reads them again (one range of ``ix_webhooks_account_id_status_id``)
only when the version moved. So a webhook created through one worker still gets the very next event
another worker emits, and an account without webhooks (no version at all) costs nothing here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import ScalarSelect, select
from sqlalchemy.ext.asyncio import AsyncSession

from authpi import ids
from authpi.services import event_types
from authpi.services.webhook_rules import RETRY_DEFAULTS
from authpi.storage.tables.events import Event
from authpi.storage.tables.webhooks import Webhook, WebhookDelivery, WebhookSubscriptionVersion

DELIVERY_PREFIX = "dlv_"
# Deliveries of one subject are sent in ID order: IDs made in one process keep their creation order.
_delivery_id = ids.MonotonicUlid(DELIVERY_PREFIX)
# Failing webhooks keep receiving rows: they queue up behind the circuit breaker.
DELIVERING = ("active", "failing")
# Subscriptions per account as last read, with the version they were read at. Bounded: past this
# many accounts the copy starts over (each account then costs one read at its next event).
MAX_ACCOUNTS = 10_000
Subscription = tuple[str, list[Any] | None, list[Any] | None, dict[str, Any] | None]
_subscriptions: dict[str, tuple[int, list[Subscription]]] = {}


def version_of(account_id: str) -> ScalarSelect[Any]:
    """The account's subscription version, as a subquery for the event's INSERT … RETURNING
    (NULL while the account never had a webhook)."""
    return (
        select(WebhookSubscriptionVersion.version)
        .where(WebhookSubscriptionVersion.account_id == account_id)
        .scalar_subquery()
    )


async def read_version(session: AsyncSession, account_id: str) -> int | None:
    """The version on its own, for writers that insert events in batches."""
    return await session.scalar(
        select(WebhookSubscriptionVersion.version).where(WebhookSubscriptionVersion.account_id == account_id)
    )


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


async def subscriptions(session: AsyncSession, account_id: str, version: int | None) -> list[Subscription]:
    """The account's delivering webhooks as of ``version`` (read in the caller's transaction)."""
    if version is None:
        return []
    known = _subscriptions.get(account_id)
    if known is not None and known[0] == version:
        return known[1]
    rows = (
        await session.execute(
            select(Webhook.id, Webhook.events, Webhook.subjects, Webhook.retry).where(
                Webhook.account_id == account_id, Webhook.status.in_(DELIVERING)
            )
        )
    ).all()
    # Read after the version in the same transaction, so never older than it; if newer, the next
    # event sees a higher version and reads again.
    subscribed: list[Subscription] = [tuple(row) for row in rows]  # type: ignore[misc]
    if len(_subscriptions) >= MAX_ACCOUNTS:
        _subscriptions.clear()
    _subscriptions[account_id] = (version, subscribed)
    return subscribed


async def enqueue(session: AsyncSession, event: Event, version: int | None) -> int:
    """Adds the deliveries owed for ``event`` to the session, given the account's subscription
    ``version`` read in this transaction; returns how many."""
    if event.account_id is None or not event_types.deliverable(event.type):
        return 0  # log-only types (notes) are never delivered
    subscribed = await subscriptions(session, event.account_id, version)
    if not subscribed:
        return 0
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
