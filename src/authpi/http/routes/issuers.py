from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query
from fastapi.responses import Response

from authpi.http import unit_of_work
from authpi.http.auth import require
from authpi.http.envelopes import Envelope, Page, no_content, page, single
from authpi.http.pagination import PageRequest, keyset, page_request
from authpi.http.routes._deps import AccountId, IdempotencyKey, IfMatch, IssuerId, Session
from authpi.http.schemas.common import ERRORS
from authpi.http.schemas.issuers import (
    AccessMode,
    IssuerCreate,
    IssuerListItemOut,
    IssuerOut,
    IssuerStatus,
    IssuerUpdate,
    Readiness,
)
from authpi.services import issuers
from authpi.services.principal import Principal
from authpi.storage.tables.issuers import Issuer

router = unit_of_work.router(prefix="/v1/accounts/{account_id}/issuers", tags=["issuers"])
Reader = Annotated[Principal, Depends(require("issuers:read"))]
Writer = Annotated[Principal, Depends(require("issuers:write"))]


@router.get("", response_model=Page[IssuerListItemOut], responses=ERRORS, summary="List Issuers")
async def list_issuers(
    account_id: AccountId,
    _: Reader,
    session: Session,
    paging: Annotated[PageRequest, Depends(page_request)],
    q: Annotated[str | None, Query(max_length=200, description="Matches the name or the exact ID")] = None,
    status: IssuerStatus | None = None,
    access_mode: AccessMode | None = None,
    readiness: Readiness | None = None,
) -> Response:
    stmt = issuers.list_statement(
        account_id, q=q, status=status, access_mode=access_mode, readiness=readiness
    )
    found = await keyset(session, stmt, Issuer.id, paging)
    items = [IssuerListItemOut.of_summary(issuers.summarize(row)) for row in found.rows]
    return page(items, found.has_more, found.next_cursor)


@router.post(
    "", status_code=201, response_model=Envelope[IssuerOut], responses=ERRORS, summary="Create Issuer"
)
async def create_issuer(
    account_id: AccountId,
    body: IssuerCreate,
    _: Writer,
    session: Session,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    issuer = await issuers.create_issuer(session, account_id, body.model_dump(exclude_unset=True))
    return single(IssuerOut.of(issuer), issuer.etag, status=201)


@router.get("/{issuer_id}", response_model=Envelope[IssuerOut], responses=ERRORS, summary="Get Issuer")
async def get_issuer(account_id: AccountId, issuer_id: IssuerId, _: Reader, session: Session) -> Response:
    issuer = await issuers.get_issuer(session, account_id, issuer_id)
    return single(IssuerOut.of(issuer), issuer.etag)


@router.patch("/{issuer_id}", response_model=Envelope[IssuerOut], responses=ERRORS, summary="Update Issuer")
async def update_issuer(
    account_id: AccountId,
    issuer_id: IssuerId,
    body: IssuerUpdate,
    _: Writer,
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    changes = body.model_dump(exclude_unset=True)
    issuer = await issuers.update_issuer(session, account_id, issuer_id, changes, if_match)
    return single(IssuerOut.of(issuer), issuer.etag)


@router.delete("/{issuer_id}", status_code=204, responses=ERRORS, summary="Delete Issuer (soft)")
async def delete_issuer(
    account_id: AccountId, issuer_id: IssuerId, _: Writer, session: Session, if_match: IfMatch = None
) -> Response:
    await issuers.delete_issuer(session, account_id, issuer_id, if_match)
    return no_content()
