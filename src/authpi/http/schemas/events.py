from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from authpi.services.events import SPEC
from authpi.storage.tables.events import Event


class EventOut(BaseModel):
    """The event envelope of §C.12."""

    spec: str
    id: str
    trace: str | None
    type: str
    source: str
    trigger: str | None
    auth: dict[str, Any] | None
    subject: dict[str, Any] | None
    timestamp: int
    data: dict[str, Any] | None

    @classmethod
    def of(cls, row: Event) -> EventOut:
        return cls(
            spec=SPEC,
            id=row.id,
            trace=row.trace,
            type=row.type,
            source=row.source,
            trigger=row.trigger,
            auth=row.auth,
            subject=row.subject,
            timestamp=row.timestamp,
            data=row.data,
        )


class EventsAggregateOut(BaseModel):
    interval: str | None
    group_by: str | None
    buckets: list[dict[str, Any]]
