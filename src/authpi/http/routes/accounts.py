from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.responses import Response

from authpi.http import unit_of_work
from authpi.http.auth import require
from authpi.http.envelopes import Envelope, Page, page, single
from authpi.http.pagination import PageRequest, page_request
from authpi.http.routes._deps import AccountId, IdempotencyKey, IfMatch, Session
from authpi.http.schemas.accounts import AccountOut, AccountUpdate
from authpi.http.schemas.common import ERRORS
from authpi.services import accounts
from authpi.services.principal import Principal

router = unit_of_work.router(tags=["accounts"])


@router.get("/v1/accounts", response_model=Page[AccountOut], responses=ERRORS, summary="List Accounts")
async def list_accounts(
    principal: Annotated[Principal, Depends(require("accounts:read"))],
    session: Session,
    paging: Annotated[PageRequest, Depends(page_request)],
) -> Response:
    # An API key sees exactly its own account.
    if paging.cursor is not None and paging.cursor >= principal.account_id:
        return page([], False, None)
    account = await accounts.get_account(session, principal.account_id)
    return page([AccountOut.of(account, await accounts.platform_issuer_id(session))], False, None)


@router.get(
    "/v1/accounts/{account_id}", response_model=Envelope[AccountOut], responses=ERRORS, summary="Get Account"
)
async def get_account(
    account_id: AccountId,
    _: Annotated[Principal, Depends(require("accounts:read"))],
    session: Session,
) -> Response:
    account = await accounts.get_account(session, account_id)
    return single(AccountOut.of(account, await accounts.platform_issuer_id(session)), account.etag)


@router.patch(
    "/v1/accounts/{account_id}",
    response_model=Envelope[AccountOut],
    responses=ERRORS,
    summary="Update Account",
)
async def update_account(
    account_id: AccountId,
    body: AccountUpdate,
    _: Annotated[Principal, Depends(require("accounts:write"))],
    session: Session,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    changes = body.model_dump(exclude_unset=True)
    account = await accounts.update_account(session, account_id, changes, if_match)
    return single(AccountOut.of(account, await accounts.platform_issuer_id(session)), account.etag)
