"""The account's webhooks: list, create, get, update, delete (§B.2 rows 39-43)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query
from fastapi.responses import Response

from authpi.http import unit_of_work
from authpi.http.auth import require, runtime
from authpi.http.envelopes import Envelope, Page, no_content, page, single
from authpi.http.pagination import PageRequest, keyset, page_request
from authpi.http.routes._deps import AccountId, IdempotencyKey, IfMatch, Session
from authpi.http.schemas.common import ERRORS
from authpi.http.schemas.webhooks import (
    WebhookCreate,
    WebhookListItemOut,
    WebhookOut,
    WebhookStatus,
    WebhookUpdate,
    WebhookWithSecretsOut,
)
from authpi.runtime import Runtime
from authpi.services import webhooks
from authpi.services.principal import Principal
from authpi.storage.tables.webhooks import Webhook

router = unit_of_work.router(prefix="/v1/accounts/{account_id}/webhooks", tags=["webhooks"])
WebhookId = Annotated[str, Path(max_length=64, description="The webhook ID")]
Reader = Annotated[Principal, Depends(require("webhooks:read"))]
Manager = Annotated[Principal, Depends(require("webhooks:manage"))]
Rt = Annotated[Runtime, Depends(runtime)]


@router.get("", response_model=Page[WebhookListItemOut], responses=ERRORS, summary="List Webhooks")
async def list_webhooks(
    account_id: AccountId,
    _: Reader,
    session: Session,
    paging: Annotated[PageRequest, Depends(page_request)],
    status: Annotated[
        WebhookStatus | None, Query(description="Only webhooks in this status; default: all but deleted")
    ] = None,
) -> Response:
    found = await keyset(session, webhooks.list_statement(account_id, status), Webhook.id, paging)
    return page([WebhookListItemOut.of(row[0]) for row in found.rows], found.has_more, found.next_cursor)


@router.post(
    "",
    status_code=201,
    response_model=Envelope[WebhookWithSecretsOut],
    responses=ERRORS,
    summary="Create Webhook",
)
async def create_webhook(
    account_id: AccountId,
    body: WebhookCreate,
    _: Manager,
    session: Session,
    rt: Rt,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    saved = await webhooks.create_webhook(
        session,
        rt.secretbox,
        account_id,
        body.model_dump(exclude_unset=True),
        allow_private=rt.settings.allow_private_networks,
    )
    return single(WebhookWithSecretsOut.payload(saved.webhook, saved.secrets), saved.webhook.etag, status=201)


@router.get("/{webhook_id}", response_model=Envelope[WebhookOut], responses=ERRORS, summary="Get Webhook")
async def get_webhook(account_id: AccountId, webhook_id: WebhookId, _: Reader, session: Session) -> Response:
    row = await webhooks.get_webhook(session, account_id, webhook_id)
    return single(WebhookOut.of(row), row.etag)


@router.patch(
    "/{webhook_id}",
    response_model=Envelope[WebhookWithSecretsOut],
    responses=ERRORS,
    summary="Update Webhook",
)
async def update_webhook(
    account_id: AccountId,
    webhook_id: WebhookId,
    body: WebhookUpdate,
    _: Manager,
    session: Session,
    rt: Rt,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    saved = await webhooks.update_webhook(
        session,
        rt.secretbox,
        account_id,
        webhook_id,
        body.model_dump(exclude_unset=True),
        if_match,
        allow_private=rt.settings.allow_private_networks,
    )
    return single(WebhookWithSecretsOut.payload(saved.webhook, saved.secrets), saved.webhook.etag)


@router.delete("/{webhook_id}", status_code=204, responses=ERRORS, summary="Delete Webhook")
async def delete_webhook(
    account_id: AccountId,
    webhook_id: WebhookId,
    _: Manager,
    session: Session,
    if_match: IfMatch = None,
) -> Response:
    await webhooks.delete_webhook(session, account_id, webhook_id, if_match)
    return no_content()
