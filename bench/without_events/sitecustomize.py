"""Loaded by ``authpi serve`` only when the bench runs with ``--without-events``: replaces the
emission point (``events.prepare``, which builds an event, and ``events.record``, which writes it;
``emit`` is the two in one) with functions that build a bare event and write nothing (no scrubbing,
no event row, no subscription read, no delivery), so a run against the same code tells what emission
costs.
Never part of the product: it lives in bench/ and needs this directory on PYTHONPATH."""

from __future__ import annotations

import os
from typing import Any

if os.environ.get("BENCH_WITHOUT_EVENTS") == "1":
    from authpi import ids
    from authpi.clock import now_ms
    from authpi.services import events
    from authpi.storage.tables.events import Event

    async def _not_built(_session: Any, type: str, *, subject: Any, **fields: Any) -> Event:
        return Event(
            id=ids.ulid(events.ID_PREFIX),
            account_id=fields.get("account_id"),
            type=type,
            issuer_id=fields.get("issuer_id"),
            user_id=fields.get("user_id"),
            client_id=fields.get("client_id"),
            timestamp=now_ms(),
            subject=dict(subject),
        )

    async def _not_written(_session: Any, row: Event, **_: Any) -> Event:
        return row

    events.prepare = _not_built  # type: ignore[assignment]
    events.record = _not_written  # type: ignore[assignment]
