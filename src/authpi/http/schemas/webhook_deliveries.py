from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from authpi.http.schemas.common import MAX_TIMESTAMP_MS, StrictInput
from authpi.services.webhook_deliveries import MAX_BULK, MAX_BULK_IDS
from authpi.storage.tables.webhooks import WebhookDelivery


class WebhookDeliveryOut(BaseModel):
    """``WebhookDeliveriesListItem`` (§C.12)."""

    id: str
    webhook_id: str
    event_id: str
    event_type: str
    status: str
    attempt_count: int
    first_attempted_at: int | None
    last_attempted_at: int | None
    next_attempt_at: int | None
    retry_workflow_id: str | None = None  # no workflow engine: always null
    attempt_budget: int | None
    last_error: str | None
    last_response_status: int | None
    created_at: int
    updated_at: int | None

    @classmethod
    def of(cls, row: WebhookDelivery) -> WebhookDeliveryOut:
        return cls(
            id=row.id,
            webhook_id=row.webhook_id,
            event_id=row.event_id,
            event_type=row.event_type,
            status=row.status,
            attempt_count=row.attempt_count,
            first_attempted_at=row.first_attempted_at,
            last_attempted_at=row.last_attempted_at,
            next_attempt_at=row.next_attempt_at,
            attempt_budget=row.attempt_budget,
            last_error=row.last_error,
            last_response_status=row.last_response_status,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class RedeliveredOut(WebhookDeliveryOut):
    """``WebhookDeliveriesRedeliverResponse``: the delivery after the attempt, and its result."""

    success: bool


class BulkRedeliverIn(StrictInput):
    """Failed deliveries to attempt again: those created in (after, before), or the listed ones."""

    status: Literal["failed"] = Field(description="Only failed deliveries are redelivered")
    after: float | None = Field(
        default=None, ge=0, le=MAX_TIMESTAMP_MS, description="Unix ms (exclusive): created after"
    )
    before: float | None = Field(
        default=None, ge=0, le=MAX_TIMESTAMP_MS, description="Unix ms (exclusive): created before"
    )
    delivery_ids: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=MAX_BULK_IDS
    )


class BulkRedeliverOut(BaseModel):
    redelivered: int = Field(description=f"Deliveries made owed again (at most {MAX_BULK} per call)")
    has_more: bool = Field(description="More failed deliveries match: call again")
