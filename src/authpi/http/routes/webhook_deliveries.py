"""A webhook's deliveries: list them, attempt one again now, make failed ones owed again."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Path, Query, Request
from fastapi.responses import Response

from authpi.http import unit_of_work
from authpi.http.auth import require, runtime
from authpi.http.envelopes import Envelope, Page, page, single
from authpi.http.pagination import PageRequest, keyset, page_request
from authpi.http.routes._deps import AccountId, IdempotencyKey, IfMatch, Session
from authpi.http.schemas.common import ERRORS
from authpi.http.schemas.webhook_deliveries import (
    BulkRedeliverIn,
    BulkRedeliverOut,
    RedeliveredOut,
    WebhookDeliveryOut,
)
from authpi.outbound.webhook_sender import WebhookSender, wake_all
from authpi.services import webhook_deliveries as deliveries
from authpi.services import webhooks
from authpi.services.principal import Principal
from authpi.storage.after_commit import after_commit
from authpi.storage.tables.webhooks import WebhookDelivery

router = unit_of_work.router(prefix="/v1/accounts/{account_id}/webhooks/{webhook_id}", tags=["webhooks"])
WebhookId = Annotated[str, Path(max_length=64, description="The webhook ID")]
DeliveryId = Annotated[str, Path(max_length=64, description="The delivery ID")]
Reader = Annotated[Principal, Depends(require("webhooks:read"))]
Manager = Annotated[Principal, Depends(require("webhooks:manage"))]
Millis = Annotated[float | None, Query(ge=0, le=1e15, description="Unix milliseconds (exclusive)")]


def _sender(request: Request) -> WebhookSender:
    sender: WebhookSender = request.app.state.webhook_sender
    return sender


@router.get(
    "/deliveries",
    response_model=Page[WebhookDeliveryOut],
    responses=ERRORS,
    summary="List Webhook Deliveries",
)
async def list_deliveries(
    account_id: AccountId,
    webhook_id: WebhookId,
    _: Reader,
    session: Session,
    paging: Annotated[PageRequest, Depends(page_request)],
    event_type: Annotated[str | None, Query(max_length=64)] = None,
    status: Literal["pending", "retrying", "succeeded", "failed"] | None = None,
    after: Millis = None,
    before: Millis = None,
) -> Response:
    await webhooks.get_webhook(session, account_id, webhook_id)
    where = deliveries.Filters(event_type, status, after, before)
    found = await keyset(session, deliveries.list_statement(webhook_id, where), WebhookDelivery.id, paging)
    return page([WebhookDeliveryOut.of(row[0]) for row in found.rows], found.has_more, found.next_cursor)


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    response_model=Envelope[RedeliveredOut],
    responses=ERRORS,
    summary="Redeliver a Webhook Delivery",
)
async def redeliver_one(
    request: Request,
    account_id: AccountId,
    webhook_id: WebhookId,
    delivery_id: DeliveryId,
    _: Manager,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Attempts the delivery now, whatever its status, and answers with the result. The attempt
    runs with no transaction of this request open (a receiver may take up to
    AUTHPI_WEBHOOK_TIMEOUT)."""
    sender = _sender(request)
    async with runtime(request).sessions() as own:
        lease = await deliveries.take_for_redelivery(
            own, account_id, webhook_id, delivery_id, if_match, sender.owner, sender.lease_ms
        )
    outcome = await sender.attempt(lease)
    row = await deliveries.get(session, webhook_id, delivery_id)
    out = RedeliveredOut(**WebhookDeliveryOut.of(row).model_dump(), success=bool(outcome and outcome.success))
    return single(out, deliveries.etag(row))


@router.post(
    "/redeliver",
    response_model=Envelope[BulkRedeliverOut],
    responses=ERRORS,
    summary="Redeliver Failed Webhook Deliveries",
)
async def redeliver_failed(
    account_id: AccountId,
    webhook_id: WebhookId,
    body: BulkRedeliverIn,
    _: Manager,
    session: Session,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Makes the failed deliveries created in (after, before), or those listed, owed again with a
    fresh attempt budget: at most 10,000 per call, oldest first (``has_more``: call again)."""
    webhook = await webhooks.get_webhook(session, account_id, webhook_id)
    done = await deliveries.redeliver_failed(
        session, webhook, after=body.after, before=body.before, delivery_ids=body.delivery_ids
    )
    if done.redelivered:
        after_commit(session, wake_all)
    return single(BulkRedeliverOut(redelivered=done.redelivered, has_more=done.has_more), None)
