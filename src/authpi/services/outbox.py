"""What every outbox shares (webhook deliveries, messages): who holds a row, how rows are taken,
and when a failed attempt is tried again.

A row is attempted by whoever holds its lease (``lease_owner`` = a per-process name, ``lease_until``
= the end of the attempt's time plus a margin). Taking leases is one statement the database
arbitrates: ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING`` on PostgreSQL, the
same ``UPDATE … RETURNING`` on SQLite inside its one write transaction at a time. An outcome is
recorded only under the exact lease it was attempted with (``held``), so an attempt that overran its
lease (and was taken over) never counts twice. A process that dies holding leases loses them when
they run out: the rows are due again, which is what makes a kill -9 lose nothing.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

LEASE_MARGIN_MS = 5_000


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to, in words an operator can read (never a secret)."""

    success: bool
    status: int | None = None  # the receiver's HTTP status, when there was one
    error: str | None = None
    final: bool = False  # nothing to retry (the event is gone, the address is refused for good)


def new_owner() -> str:
    """This process's name in ``lease_owner`` (host and pid for operators, plus a random part)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


def backoff_ms(initial_s: float, max_s: float, attempt: int) -> int:
    """Exponential backoff with full jitter: uniform in [0, min(max, initial · 2^(attempt-1))]."""
    ceiling = min(max_s, initial_s * 2 ** min(attempt - 1, 30))
    return int(random.uniform(0, ceiling) * 1000)  # noqa: S311 (jitter, not a secret)


def free(model: Any, now: int) -> ColumnElement[bool]:
    """Nobody holds the row (never leased, or the lease ran out)."""
    return or_(model.lease_until.is_(None), model.lease_until <= now)


async def take_leases(
    session: AsyncSession,
    model: Any,
    chosen: Select[Any],
    *,
    owner: str,
    now: int,
    until: int,
    returning: Sequence[Any],
    values: dict[str, Any] | None = None,
) -> Sequence[Any]:
    """Lease the rows ``chosen`` selects (their IDs) that are still free; the caller commits.

    ``values`` are set together with the lease (a status showing the attempt, say)."""
    if session.get_bind().dialect.name == "postgresql":
        chosen = chosen.with_for_update(of=model, skip_locked=True)
    return (
        await session.execute(
            update(model)
            .where(model.id.in_(chosen.scalar_subquery()), free(model, now))
            .values(lease_owner=owner, lease_until=until, **(values or {}))
            .returning(*returning)
            .execution_options(synchronize_session=False)
        )
    ).all()


def held(model: Any, row_id: str, owner: str, until: int) -> tuple[ColumnElement[bool], ...]:
    """The row is still under this exact lease."""
    return (model.id == row_id, model.lease_owner == owner, model.lease_until == until)


async def release(
    session: AsyncSession, model: Any, owner: str, owed: Sequence[str], values: dict[str, Any] | None = None
) -> None:
    """Give back every lease ``owner`` holds on rows still owed (at shutdown), and commit: they are
    due again at once for another process."""
    await session.execute(
        update(model)
        .where(model.lease_owner == owner, model.status.in_(owed))
        .values(lease_owner=None, lease_until=None, **(values or {}))
        .execution_options(synchronize_session=False)
    )
    await session.commit()
