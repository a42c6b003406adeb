"""The webhook delivery outbox (§C.12): which deliveries are due, who attempts them, what an attempt
changes, the circuit breaker, and the deliveries API's reads and redeliveries.

Leases, claims and backoff are the ones every outbox shares (``services.outbox``): a delivery is
attempted by whoever holds its lease, and its outcome recorded only under that exact lease.

Order per subject: a delivery is not due while an earlier event (lower event ID, the order of the
events API) of the same subject is still owed to the same webhook.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from authpi import ids
from authpi.clock import next_version, now_ms
from authpi.services import events, outbox, webhooks
from authpi.services.errors import Conflict, InvalidInput, NotFound, check_etag
from authpi.storage.tables.webhooks import Webhook, WebhookDelivery

OWED = ("pending", "retrying")
STATUSES = ("pending", "retrying", "succeeded", "failed")
ID_PREFIX = "dlv_"
LEASE_MARGIN_MS = outbox.LEASE_MARGIN_MS
MAX_BULK = 10_000  # deliveries one bulk redeliver resets (the answer says whether more are left)
MAX_BULK_IDS = 1_000
SYSTEM_BY = "system"

DEFAULT_RETRY = {"max_attempts": 10, "initial_delay_seconds": 5, "max_delay_seconds": 3600}
DEFAULT_BREAKER = {"enabled": True, "failure_threshold": 20, "probe_interval_seconds": 60}


new_owner = outbox.new_owner


def retry_settings(webhook: Webhook) -> dict[str, int]:
    return {**DEFAULT_RETRY, **(webhook.retry or {})}


def breaker_settings(webhook: Webhook) -> dict[str, Any]:
    return {**DEFAULT_BREAKER, **(webhook.circuit_breaker or {})}


def backoff_ms(retry: dict[str, int], attempt: int) -> int:
    return outbox.backoff_ms(retry["initial_delay_seconds"], retry["max_delay_seconds"], attempt)


@dataclass(frozen=True)
class Lease:
    """One delivery taken for one attempt."""

    delivery_id: str
    webhook_id: str
    event_id: str
    owner: str
    until: int
    attempt_count: int  # before this attempt
    attempt_budget: int | None
    updated_at: int | None
    status: str  # when taken
    manual: bool = False  # a redelivery asked for through the API (one attempt, no schedule)


class DeliveryBusy(Conflict):
    retryable = True


Outcome = outbox.Outcome


# --- which deliveries are due ------------------------------------------------------------------------


def _due(now: int) -> list[ColumnElement[bool]]:
    earlier = aliased(WebhookDelivery)
    blocked = (
        exists()
        .where(
            earlier.webhook_id == WebhookDelivery.webhook_id,
            earlier.subject_key == WebhookDelivery.subject_key,
            earlier.status.in_(OWED),
            earlier.event_id < WebhookDelivery.event_id,
        )
        .correlate(WebhookDelivery)
    )
    sendable = or_(
        Webhook.status == "active",
        and_(Webhook.status == "failing", or_(Webhook.probe_at.is_(None), Webhook.probe_at <= now)),
    )
    return [
        WebhookDelivery.next_attempt_at <= now,
        WebhookDelivery.status.in_(OWED),
        outbox.free(WebhookDelivery, now),
        sendable,
        ~blocked,
    ]


def _due_ids(now: int, limit: int) -> Select[Any]:
    return (
        select(WebhookDelivery.id)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(*_due(now))
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )


async def any_due(session: AsyncSession, now: int) -> bool:
    """A plain read first, so an idle poll never takes a lock (or SQLite's write turn)."""
    return (await session.scalar(_due_ids(now, 1))) is not None


async def claim_due(session: AsyncSession, owner: str, lease_ms: int, limit: int) -> list[Lease]:
    """Lease up to ``limit`` due deliveries for ``owner`` and commit; a failing webhook lets one
    through (its probe) when its ``probe_at`` has come, and moves ``probe_at`` on."""
    now = now_ms()
    if not await any_due(session, now):
        await session.rollback()
        return []
    until = now + lease_ms
    taken = await outbox.take_leases(
        session,
        WebhookDelivery,
        _due_ids(now, limit),
        owner=owner,
        now=now,
        until=until,
        returning=(
            WebhookDelivery.id,
            WebhookDelivery.webhook_id,
            WebhookDelivery.event_id,
            WebhookDelivery.attempt_count,
            WebhookDelivery.attempt_budget,
            WebhookDelivery.updated_at,
            WebhookDelivery.status,
        ),
    )
    leases = [Lease(r[0], r[1], r[2], owner, until, r[3], r[4], r[5], r[6]) for r in taken]
    leases = await _one_probe_per_failing_webhook(session, leases, now)
    await session.commit()
    return leases


async def _one_probe_per_failing_webhook(session: AsyncSession, leases: list[Lease], now: int) -> list[Lease]:
    webhook_ids = {lease.webhook_id for lease in leases}
    if not webhook_ids:
        return leases
    failing = {
        row.id: row
        for row in await session.scalars(
            select(Webhook).where(Webhook.id.in_(webhook_ids), Webhook.status == "failing")
        )
    }
    if not failing:
        return leases
    kept: list[Lease] = []
    returned: list[str] = []
    probing: set[str] = set()
    for lease in sorted(leases, key=lambda item: item.event_id):
        webhook = failing.get(lease.webhook_id)
        if webhook is None:
            kept.append(lease)
            continue
        if lease.webhook_id not in probing and await _take_probe(session, webhook, now):
            probing.add(lease.webhook_id)
            kept.append(lease)
        else:
            returned.append(lease.delivery_id)
    if returned:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(returned))
            .values(lease_owner=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )
    return kept


async def _take_probe(session: AsyncSession, webhook: Webhook, now: int) -> bool:
    """Move the webhook's ``probe_at`` on, unless another process just did (then it probes)."""
    interval_ms = int(breaker_settings(webhook)["probe_interval_seconds"]) * 1000
    moved = await session.execute(
        update(Webhook)
        .where(
            Webhook.id == webhook.id,
            Webhook.status == "failing",
            Webhook.probe_at.is_(None) if webhook.probe_at is None else Webhook.probe_at == webhook.probe_at,
        )
        .values(probe_at=now + interval_ms)
        .execution_options(synchronize_session=False)
    )
    return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


async def release(session: AsyncSession, owner: str) -> None:
    """Give back every lease ``owner`` holds (at shutdown): the deliveries are due again at once."""
    await outbox.release(session, WebhookDelivery, owner, OWED)


async def drop_lease(session: AsyncSession, lease: Lease) -> None:
    """Give one lease back without an attempt (the webhook was paused or deleted meanwhile)."""
    await session.execute(
        update(WebhookDelivery)
        .where(*_held(lease))
        .values(lease_owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    await session.commit()


def _held(lease: Lease) -> tuple[ColumnElement[bool], ...]:
    return outbox.held(WebhookDelivery, lease.delivery_id, lease.owner, lease.until)


# --- recording an attempt ----------------------------------------------------------------------------


async def record(session: AsyncSession, lease: Lease, webhook: Webhook, outcome: Outcome) -> bool:
    """Record ``outcome`` if ``lease`` is still held (False otherwise: nothing is written), update
    the webhook's circuit breaker, and commit."""
    now = now_ms()
    attempts = lease.attempt_count + 1
    budget = lease.attempt_budget or retry_settings(webhook)["max_attempts"]
    values: dict[str, Any] = {
        "attempt_count": attempts,
        "first_attempted_at": func.coalesce(WebhookDelivery.first_attempted_at, now),
        "last_attempted_at": now,
        "last_response_status": outcome.status,
        "last_error": None if outcome.success else outcome.error,
        "lease_owner": None,
        "lease_until": None,
        "updated_at": next_version(lease.updated_at),
    }
    status = _status_after(lease, outcome, attempts, budget)
    values["status"] = status
    values["next_attempt_at"] = (
        now + backoff_ms(retry_settings(webhook), attempts) if status == "retrying" else None
    )
    written = await session.execute(
        update(WebhookDelivery)
        .where(*_held(lease))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if written.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        return False
    if not outcome.final:
        await _breaker(session, webhook.id, outcome.success, now)
    await session.commit()
    return True


def _status_after(lease: Lease, outcome: Outcome, attempts: int, budget: int) -> str:
    """Success ends a delivery; a failure leaves it owed (``retrying``) while attempts are left.
    A redelivery asked for by hand of a finished delivery is one attempt: failed, it stays failed."""
    if outcome.success:
        return "succeeded"
    if outcome.final or attempts >= budget or (lease.manual and lease.status not in OWED):
        return "failed"
    return "retrying"


async def _breaker(session: AsyncSession, webhook_id: str, success: bool, now: int) -> None:
    webhook = await session.scalar(
        select(Webhook).where(Webhook.id == webhook_id).execution_options(populate_existing=True)
    )
    if webhook is None:
        return
    if success:
        if webhook.consecutive_failures or webhook.status == "failing":
            await session.execute(
                update(Webhook)
                .where(Webhook.id == webhook_id)
                .values(consecutive_failures=0)
                .execution_options(synchronize_session=False)
            )
        if webhook.status == "failing":
            await _set_status(session, webhook, "active", None, now)
        return
    failures = (
        await session.execute(
            update(Webhook)
            .where(Webhook.id == webhook_id)
            .values(consecutive_failures=Webhook.consecutive_failures + 1)
            .returning(Webhook.consecutive_failures)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one()
    breaker = breaker_settings(webhook)
    if webhook.status == "active" and breaker["enabled"] and failures >= int(breaker["failure_threshold"]):
        reason = f"circuit breaker: {failures} consecutive failures"
        probe_at = now + int(breaker["probe_interval_seconds"]) * 1000
        await _set_status(session, webhook, "failing", reason, now, probe_at=probe_at)


async def _set_status(
    session: AsyncSession,
    webhook: Webhook,
    status: str,
    reason: str | None,
    now: int,
    *,
    probe_at: int | None = None,
) -> None:
    """The breaker's status change, made only from the status it was decided on, with its event."""
    previous = webhook.status
    version = next_version(webhook.updated_at)
    changed = await session.execute(
        update(Webhook)
        .where(Webhook.id == webhook.id, Webhook.status == previous)
        .values(
            status=status,
            status_at=now,
            status_reason=reason,
            status_by=SYSTEM_BY,
            probe_at=probe_at,
            updated_at=version,
        )
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        return
    fresh = await session.scalar(
        select(Webhook).where(Webhook.id == webhook.id).execution_options(populate_existing=True)
    )
    assert fresh is not None
    await events.emit(
        session,
        "webhook.paused" if status == "failing" else "webhook.resumed",
        subject={"type": "webhook", "id": fresh.id},
        data=event_data(fresh),
        account_id=fresh.account_id,
        trigger="system",
    )


def event_data(webhook: Webhook) -> dict[str, Any]:
    """The webhook as its other events show it (the public view: never a secret)."""
    return webhooks.describe(webhook)


# --- the deliveries API ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    event_type: str | None = None
    status: str | None = None
    after: float | None = None  # ms, exclusive, on the delivery's creation
    before: float | None = None


def _time_bounds(after: float | None, before: float | None) -> list[ColumnElement[bool]]:
    """Time as ID bounds: delivery IDs are ULIDs of the millisecond they were created in."""
    clauses: list[ColumnElement[bool]] = []
    if after is not None:
        clauses.append(WebhookDelivery.id >= ids.ulid(ID_PREFIX, max(0, math.floor(after) + 1), lowest=True))
    if before is not None:
        clauses.append(WebhookDelivery.id < ids.ulid(ID_PREFIX, max(0, math.ceil(before)), lowest=True))
    return clauses


def list_statement(webhook_id: str, f: Filters) -> Select[Any]:
    clauses: list[ColumnElement[bool]] = [WebhookDelivery.webhook_id == webhook_id]
    if f.event_type is not None:
        clauses.append(WebhookDelivery.event_type == f.event_type)
    if f.status is not None:
        if f.status not in STATUSES:
            raise InvalidInput.on("status", "invalid_choice", f"status must be one of: {', '.join(STATUSES)}")
        clauses.append(WebhookDelivery.status == f.status)
    clauses.extend(_time_bounds(f.after, f.before))
    return select(WebhookDelivery).where(*clauses)


async def get(session: AsyncSession, webhook_id: str, delivery_id: str) -> WebhookDelivery:
    row = await session.scalar(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.webhook_id == webhook_id)
        .execution_options(populate_existing=True)
    )
    if row is None:
        raise NotFound("Webhook delivery")
    return row


def etag(row: WebhookDelivery) -> str:
    return f'"{row.updated_at or row.created_at}"'


async def take_for_redelivery(
    session: AsyncSession,
    account_id: str,
    webhook_id: str,
    delivery_id: str,
    if_match: str | None,
    owner: str,
    lease_ms: int,
) -> Lease:
    """Lease one delivery for an attempt asked for through the API (whatever its status), in a
    transaction of its own: the attempt itself runs with no transaction open."""
    await webhooks.get_webhook(session, account_id, webhook_id)
    row = await get(session, webhook_id, delivery_id)
    check_etag("Webhook delivery", if_match, etag(row))
    now = now_ms()
    until = now + lease_ms
    taken = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until <= now),
            WebhookDelivery.updated_at.is_(None)
            if row.updated_at is None
            else WebhookDelivery.updated_at == row.updated_at,
        )
        .values(lease_owner=owner, lease_until=until)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        raise DeliveryBusy("The delivery is being attempted right now; retry in a moment")
    await session.commit()
    return Lease(
        row.id,
        row.webhook_id,
        row.event_id,
        owner,
        until,
        row.attempt_count,
        row.attempt_budget,
        row.updated_at,
        row.status,
        manual=True,
    )


@dataclass(frozen=True)
class BulkRedelivery:
    redelivered: int
    has_more: bool


async def redeliver_failed(
    session: AsyncSession,
    webhook: Webhook,
    *,
    after: float | None,
    before: float | None,
    delivery_ids: Sequence[str] | None,
) -> BulkRedelivery:
    """Make failed deliveries of ``webhook`` (created in the time range, or among ``delivery_ids``)
    owed again, with a fresh attempt budget; at most ``MAX_BULK`` per call, oldest first."""
    now = now_ms()
    clauses: list[ColumnElement[bool]] = [
        WebhookDelivery.webhook_id == webhook.id,
        WebhookDelivery.status == "failed",
        *_time_bounds(after, before),
    ]
    if delivery_ids is not None:
        clauses.append(WebhookDelivery.id.in_(list(delivery_ids)))
    chosen = select(WebhookDelivery.id).where(*clauses).order_by(WebhookDelivery.id).limit(MAX_BULK)
    fresh = retry_settings(webhook)["max_attempts"]
    reset = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(chosen.scalar_subquery()), WebhookDelivery.status == "failed")
        .values(
            status="pending",
            next_attempt_at=now,
            attempt_budget=WebhookDelivery.attempt_count + fresh,
            lease_owner=None,
            lease_until=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    count = int(reset.rowcount)  # type: ignore[attr-defined]
    more = count >= MAX_BULK and (await session.scalar(select(WebhookDelivery.id).where(*clauses).limit(1)))
    return BulkRedelivery(count, bool(more))
